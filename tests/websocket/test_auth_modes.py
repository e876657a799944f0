"""Caller auth on the Live API WebSocket is the gRPC modes' own code (``service.auth.presented``): the tenant of a
verified TLS client certificate (mTLS), of a Google-signed OIDC ID token in ``Authorization: Bearer``; a
certificate from another CA fails the handshake, a bad token closes 1007 with its reason."""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from tests.auth.pki import CA, TokenIssuer

PATH = "/ws/google.cloud.aiplatform.v1.LlmBidiService/BidiGenerateContent"
SETUP = json.dumps({"setup": {"model": "projects/p/locations/l/publishers/google/models/gemini-live-2.5-flash",
                              "generationConfig": {"responseModalities": ["TEXT"]}}})
AUD = "https://livegate.example"


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Any]:
    ca = CA(tmp_path / "ca")
    return {"ca": ca, "server": ca.server(), "acme": ca.client("acme", "acme"),
            "stranger": CA(tmp_path / "other", "another CA").client("stranger", "acme")}


@pytest.fixture
def issuer() -> TokenIssuer:
    return TokenIssuer("kid-1")


@pytest.fixture
def ws_tls() -> bool:
    return False  # the front's certificate comes from ws_settings


@pytest.fixture
def auth_mode() -> str:
    return "oidc"


@pytest.fixture
def ws_settings(auth_mode: str, pki: dict[str, Any], issuer: TokenIssuer, tmp_path: Path) -> dict[str, Any]:
    tls = {"front_tls_cert_file": str(pki["server"].cert), "front_tls_key_file": str(pki["server"].key)}
    if auth_mode == "mtls":
        return {"auth_modes": ("mtls",), "front_client_ca_file": str(pki["ca"].path), **tls}
    return {"auth_modes": ("oidc",), "oidc_audience": AUD, "oidc_jwks": str(issuer.write_jwks(tmp_path / "jwks.json")),
            "oidc_tenant_claim": "email", **tls}


def client_ctx(pki: dict[str, Any], who: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki["ca"].path))
    ctx.load_cert_chain(str(pki[who].cert), str(pki[who].key))
    return ctx


async def vertex_session_tenant(url: str, stack: dict[str, Any], **kw: Any) -> str:
    async with connect(url + PATH, **kw) as ws:
        await ws.send(SETUP)
        sid = json.loads(await ws.recv())["setupComplete"]["sessionId"]
        return stack["front"].sessions[sid].tenant


@pytest.mark.parametrize("auth_mode", ["mtls"])
async def test_mtls_tenant_is_the_client_certificate(ws_url: str, pki: dict[str, Any], stack: dict[str, Any]) -> None:
    assert ws_url.startswith("wss://")
    assert await vertex_session_tenant(ws_url, stack, ssl=client_ctx(pki, "acme")) == "acme"
    with pytest.raises((ssl.SSLError, OSError, InvalidHandshake)):  # another CA: the handshake fails
        async with connect(ws_url + PATH, ssl=client_ctx(pki, "stranger")) as ws:
            await ws.send(SETUP)
            await ws.recv()


async def test_oidc_tenant_is_the_token_email(ws_url: str, pki: dict[str, Any], issuer: TokenIssuer,
                                               stack: dict[str, Any]) -> None:
    ctx = ssl.create_default_context(cafile=str(pki["ca"].path))
    token = issuer.token(aud=AUD, email="acme@example.com")
    tenant = await vertex_session_tenant(ws_url, stack, ssl=ctx, additional_headers={"Authorization": f"Bearer {token}"})
    assert tenant == "acme@example.com"
    async with connect(ws_url + PATH, ssl=ctx,
                       additional_headers={"Authorization": f"Bearer {issuer.token(aud='https://other.example')}"}) as ws:
        await ws.send(SETUP)
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1007
    assert closed.value.rcvd.reason.startswith("TOKEN_AUDIENCE: ")
