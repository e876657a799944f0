"""Front TLS and mTLS (service/tls.py): the tenant comes from the verified client certificate; a caller without
one, or with one from another CA, does not get in. TLS without client certificates keeps health open."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2

from livegate.settings import Settings
from livegate.v1 import gateway_pb2 as gw
from service.auth import build_authenticator, key_line
from service.tls import server_credentials
from tests.auth.conftest import (channel, error_reason, finish, health_check, open_session, pem_fragments, refused,
                                 stub)
from tests.auth.pki import CA


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Any]:
    ca = CA(tmp_path / "ca")
    other = CA(tmp_path / "other", "another CA")
    return {"ca": ca, "server": ca.server(), "acme": ca.client("acme", "acme"),
            "beta_san": ca.client("beta", "ignored-cn", sans=["beta"]),
            "stranger": other.client("stranger", "acme")}


def mtls_settings(pki: dict[str, Any], mode: str = "mtls") -> dict[str, Any]:
    return {"auth_modes": (mode,), "front_tls_cert_file": str(pki["server"].cert),
            "front_tls_key_file": str(pki["server"].key), "front_client_ca_file": str(pki["ca"].path)}


def client_creds(pki: dict[str, Any], who: str | None) -> grpc.ChannelCredentials:
    if who is None:
        return grpc.ssl_channel_credentials(root_certificates=pki["ca"].pem)
    return grpc.ssl_channel_credentials(root_certificates=pki["ca"].pem, private_key=pki[who].key_pem,
                                        certificate_chain=pki[who].cert_pem)


async def test_tenant_from_client_certificate(gateway: Any, pki: dict[str, Any], secrets_used: list[str]) -> None:
    secrets_used += pem_fragments(pki["acme"].key_pem) + pem_fragments(pki["server"].key_pem)
    async with gateway(**mtls_settings(pki)) as g:
        async with channel(g["address"], client_creds(pki, "acme")) as ch:
            call, info = await open_session(ch)
            view = await stub(ch).GetSession(gw.GetSessionRequest(session_id=info.session_id))
            assert view.tenant == "acme"
            assert await health_check(ch) == health_pb2.HealthCheckResponse.SERVING
            await finish(call)
        # no client certificate, or one from another CA: the handshake fails (grpc reports UNAVAILABLE)
        for who in (None, "stranger"):
            async with channel(g["address"], client_creds(pki, who)) as ch:
                err = await refused(stub(ch).ListSessions(gw.ListSessionsRequest(), timeout=5))
                assert err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED), err
                # health too: grpc's Python server cannot ask for a certificate without requiring it
                err = await refused(health_check(ch))
                assert err.code() == grpc.StatusCode.UNAVAILABLE
        # plaintext against the TLS port
        async with channel(g["address"]) as ch:
            err = await refused(health_check(ch))
            assert err.code() == grpc.StatusCode.UNAVAILABLE


async def test_tenant_from_san(gateway: Any, pki: dict[str, Any], secrets_used: list[str]) -> None:
    secrets_used += pem_fragments(pki["beta_san"].key_pem)
    async with gateway(**mtls_settings(pki, "mtls:san")) as g:
        async with channel(g["address"], client_creds(pki, "beta_san")) as ch:
            call, info = await open_session(ch)
            view = await stub(ch).GetSession(gw.GetSessionRequest(session_id=info.session_id))
            assert view.tenant == "beta"
            await finish(call)
        async with channel(g["address"], client_creds(pki, "acme")) as ch:  # no SAN
            err = await refused(stub(ch).ListSessions(gw.ListSessionsRequest()))
            assert err.code() == grpc.StatusCode.UNAUTHENTICATED and error_reason(err) == "CLIENT_CERT_NO_TENANT"


async def test_tls_with_api_keys_keeps_health_open(gateway: Any, pki: dict[str, Any], tmp_path: Path,
                                                   secrets_used: list[str]) -> None:
    key = "lgk_tls-key-cccccccccccccccccccccccccccccc"
    secrets_used += [key, *pem_fragments(pki["server"].key_pem)]
    keys = tmp_path / "keys.json"
    keys.write_text('{"keys": [%s]}' % json.dumps(key_line(key, "acme")))
    s = {**mtls_settings(pki), "auth_modes": ("api_key",), "caller_keys_file": str(keys), "front_client_ca_file": ""}
    async with gateway(**s) as g, channel(g["address"], client_creds(pki, None)) as ch:
        assert await health_check(ch, "livegate.v1.LiveGateway") == health_pb2.HealthCheckResponse.SERVING
        await stub(ch).ListSessions(gw.ListSessionsRequest(), metadata=(("x-api-key", key),))
        err = await refused(stub(ch).ListSessions(gw.ListSessionsRequest()))
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED and error_reason(err) == "CREDENTIALS_MISSING"


def test_configurations_that_cannot_work_fail_at_startup(pki: dict[str, Any], tmp_path: Path) -> None:
    base = Settings(front_listen="127.0.0.1:0")
    cases = [
        ({"front_tls_cert_file": str(pki["server"].cert)}, "both"),
        ({"front_client_ca_file": str(pki["ca"].path)}, "needs front_tls_cert_file"),
        ({"front_tls_cert_file": str(tmp_path / "nope.crt"), "front_tls_key_file": str(pki["server"].key)}, "nope"),
    ]
    for update, match in cases:
        with pytest.raises(ValueError, match=match):
            server_credentials(base.model_copy(update=update))
    for update, match in [({"auth_modes": ("mtls",)}, "front_client_ca_file"),
                          ({"auth_modes": ("api_key",)}, "caller_keys_file"),
                          ({"auth_modes": ("api_key",), "caller_keys_file": str(tmp_path / "missing")}, "missing"),
                          ({"auth_modes": ("oidc",)}, "oidc_audience"),
                          ({"auth_modes": ("open", "api_key")}, "last"),
                          ({"auth_modes": ("kerberos",)}, "unknown auth mode")]:
        with pytest.raises(ValueError, match=match):
            build_authenticator(base.model_copy(update=update))
