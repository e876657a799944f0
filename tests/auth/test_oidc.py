"""OIDC ID tokens signed by a locally generated RSA key, published as a JWKS file (and served over HTTP to test
the URL source): the right token is accepted, every wrong one refused with its reason."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2

from livegate.v1 import gateway_pb2 as gw
from service.auth import key_line
from service.oidc import OidcAuth, parse_certs
from tests.auth.conftest import (channel, connect_refusal, error_reason, finish, health_check, jwt_fragments, open_session,
                                 pem_fragments, refused, stub)
from tests.auth.pki import CA, TokenIssuer

AUD = "https://livegate.internal.example"


@pytest.fixture(scope="module")
def issuer() -> TokenIssuer:
    return TokenIssuer("kid-1")


def oidc_settings(jwks: str) -> dict[str, Any]:
    return {"auth_modes": ("oidc",), "oidc_audience": AUD, "oidc_jwks": jwks, "oidc_tenant_claim": "email"}


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def test_tokens_accepted_and_refused(gateway: Any, issuer: TokenIssuer, tmp_path: Path,
                                           secrets_used: list[str]) -> None:
    jwks = issuer.write_jwks(tmp_path / "jwks.json")
    forger = TokenIssuer("kid-1")  # another key claiming the trusted key id
    good = issuer.token(aud=AUD, email="acme@example.com")
    refusals = {
        "TOKEN_AUDIENCE": issuer.token(aud="https://someone-else.example"),
        "TOKEN_ISSUER": issuer.token(aud=AUD, iss="https://evil.example"),
        "TOKEN_EXPIRED": issuer.token(aud=AUD, iat=int(time.time()) - 7200, lifetime_s=3600),
        "TOKEN_SIGNATURE": forger.token(aud=AUD),
        "TOKEN_TENANT_CLAIM": issuer.token(aud=AUD, email=None),
        "TOKEN_NOT_YET_VALID": issuer.token(aud=AUD, iat=int(time.time()) + 3600),
    }
    unknown_kid = issuer.token(aud=AUD, kid="kid-unknown")
    for t in (good, unknown_kid, *refusals.values()):
        secrets_used += jwt_fragments(t)
    secrets_used += pem_fragments(issuer.private_pem) + pem_fragments(forger.private_pem)
    async with gateway(**oidc_settings(str(jwks))) as g, channel(g["address"]) as ch:
        call, info = await open_session(ch, bearer(good))
        view = await stub(ch).GetSession(gw.GetSessionRequest(session_id=info.session_id), metadata=bearer(good))
        assert view.tenant == "acme@example.com"
        await finish(call)
        for reason, token in {**refusals, "TOKEN_SIGNATURE ": unknown_kid}.items():
            for err in (await refused(stub(ch).ListSessions(gw.ListSessionsRequest(), metadata=bearer(token))),
                        await connect_refusal(ch, bearer(token))):
                assert err.code() == grpc.StatusCode.UNAUTHENTICATED, (reason, err)
                assert error_reason(err) == reason.strip(), err.details()
                assert token.rsplit(".", 1)[-1] not in (err.details() or "")
        # no token, and a bearer that is no JWT
        for md, reason in (((), "CREDENTIALS_MISSING"), (bearer("not-a-jwt"), "TOKEN_MALFORMED")):
            err = await refused(stub(ch).ListSessions(gw.ListSessionsRequest(), metadata=md))
            assert err.code() == grpc.StatusCode.UNAUTHENTICATED and error_reason(err) == reason
        assert await health_check(ch) == health_pb2.HealthCheckResponse.SERVING


async def test_chain_api_key_then_oidc(gateway: Any, issuer: TokenIssuer, tmp_path: Path,
                                       secrets_used: list[str]) -> None:
    key, wrong = "lgk_chain-key-aaaaaaaaaaaaaaaaaaaaaaaaaaaa", "lgk_chain-wrong-bbbbbbbbbbbbbbbbbbbbbbbbbb"
    token = issuer.token(aud=AUD, email="beta@example.com")
    secrets_used += [key, wrong, *jwt_fragments(token)]
    keys = tmp_path / "keys.json"
    keys.write_text(f'{{"keys": [{json.dumps(key_line(key, "acme"))}]}}')
    jwks = issuer.write_jwks(tmp_path / "jwks.json")
    async with gateway(**{**oidc_settings(str(jwks)), "auth_modes": ("api_key", "oidc"),
                          "caller_keys_file": str(keys)}) as g, channel(g["address"]) as ch:
        ls = stub(ch).ListSessions
        await ls(gw.ListSessionsRequest(), metadata=(("x-api-key", key),))
        await ls(gw.ListSessionsRequest(), metadata=bearer(token))
        # a present but wrong key is refused by api_key, not passed on to oidc
        err = await refused(ls(gw.ListSessionsRequest(), metadata=(("x-api-key", wrong),)))
        assert error_reason(err) == "API_KEY_INVALID"
        err = await refused(ls(gw.ListSessionsRequest()))
        assert error_reason(err) == "CREDENTIALS_MISSING"
        assert "API key" in err.details() and "ID token" in err.details()
        assert await health_check(ch) == health_pb2.HealthCheckResponse.SERVING


class _JwksHandler(http.server.BaseHTTPRequestHandler):
    body = b""
    hits = 0

    def do_GET(self) -> None:  # noqa: N802
        type(self).hits += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "public, max-age=3600")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def jwks_server(issuer: TokenIssuer, tmp_path: Path) -> Iterator[tuple[str, type[_JwksHandler]]]:
    handler = type("H", (_JwksHandler,), {"body": issuer.write_jwks(tmp_path / "served.json").read_bytes(), "hits": 0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/oauth2/v3/certs", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


async def test_jwks_fetched_from_url_and_cached(gateway: Any, issuer: TokenIssuer, jwks_server: Any,
                                                secrets_used: list[str]) -> None:
    url, handler = jwks_server
    token = issuer.token(aud=AUD)
    secrets_used += jwt_fragments(token)
    async with gateway(**oidc_settings(url)) as g, channel(g["address"]) as ch:
        for _ in range(3):
            await stub(ch).ListSessions(gw.ListSessionsRequest(), metadata=bearer(token))
        assert handler.hits == 1  # Cache-Control: max-age=3600
    with pytest.raises(ValueError, match="https"):
        OidcAuth(AUD, "http://jwks.example.com/certs", ["x"], "email")


def test_google_pem_map_and_jwks_both_parse(issuer: TokenIssuer, tmp_path: Path) -> None:
    ca = CA(tmp_path / "ca")
    cert = ca.client("signer", "signer").cert_pem.decode()
    assert parse_certs(f'{{"abc": {json.dumps(cert)}}}') == {"abc": cert}
    pem = parse_certs(issuer.write_jwks(tmp_path / "j.json").read_text())["kid-1"]
    assert pem.startswith("-----BEGIN PUBLIC KEY-----")
    with pytest.raises(ValueError):
        parse_certs('{"keys": []}')


async def test_url_keys_refreshed_when_stale_and_on_unknown_kid(issuer: TokenIssuer, jwks_server: Any,
                                                                tmp_path: Path) -> None:
    import asyncio

    from service import oidc

    url, handler = jwks_server
    now = [1000.0]
    certs = oidc.UrlCerts(url, clock=lambda: now[0])
    assert set(certs.get("kid-1")) == {"kid-1"} and handler.hits == 1
    assert set(certs.get("kid-1")) == {"kid-1"} and handler.hits == 1  # fresh: cached
    # the issuer rotates: a new key id appears at the URL
    rotated = TokenIssuer("kid-2")
    handler.body = rotated.write_jwks(tmp_path / "rotated.json", issuer).read_bytes()
    now[0] += oidc.MIN_REFETCH_S
    assert set(certs.get("kid-2")) == {"kid-1", "kid-2"} and handler.hits == 2  # unknown kid: fetched at once
    assert certs.get("kid-3") and handler.hits == 2  # another unknown kid right after: rate-limited
    # stale after max-age: served from the cache while one background fetch refreshes it
    handler.body = rotated.write_jwks(tmp_path / "only2.json").read_bytes()
    now[0] += 3600
    assert set(certs.get("kid-1")) == {"kid-1", "kid-2"}
    async with asyncio.timeout(5):
        while set(certs.get("kid-2")) != {"kid-2"}:
            await asyncio.sleep(0.02)
    assert handler.hits == 3
