"""Vertex AI through google-auth, offline: a service-account file whose token_uri is a local token endpoint.
The worker signs the JWT assertion, gets a bearer token, and refreshes it before it expires."""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.e2e.helpers import collect_turn, text_of

MODEL = "gemini-live-2.5-flash"
TOKENS = tuple(f"tok-{i}" for i in range(1, 20))


class TokenEndpoint:
    """A minimal OAuth2 token endpoint: verifies the service account's signed assertion, mints tokens."""

    def __init__(self, public_cert_pem: bytes, expires_in_s: int) -> None:
        self.cert = public_cert_pem
        self.expires_in_s = expires_in_s
        self.issued: list[str] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def aclose(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        from google.auth import jwt

        head = await reader.readuntil(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
        form = urllib.parse.parse_qs((await reader.readexactly(length)).decode())
        assert form["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
        # google-auth signs the assertion for Google's token audience whatever the token_uri is
        claims = jwt.decode(form["assertion"][0], certs={"k1": self.cert.decode()},
                            audience="https://oauth2.googleapis.com/token")
        assert claims["iss"] == "livegate@test-project.iam.gserviceaccount.com"
        token = TOKENS[len(self.issued)]
        self.issued.append(token)
        body = json.dumps({"access_token": token, "expires_in": self.expires_in_s, "token_type": "Bearer"}).encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()


def service_account(tmp: Path, token_port: int) -> tuple[Path, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "livegate-test")])
    import datetime

    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path = tmp / "sa.json"
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "test-project", "private_key_id": "k1", "private_key": pem.decode(),
        "client_email": "livegate@test-project.iam.gserviceaccount.com", "client_id": "1",
        "token_uri": f"http://127.0.0.1:{token_port}/token"}))
    return path, cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
async def token_endpoint(tmp_path: Path) -> AsyncIterator[tuple[TokenEndpoint, Path]]:
    # a token that expires in 301 s is inside the worker's 300 s refresh margin one second later
    ep = TokenEndpoint(b"", expires_in_s=301)
    await ep.start()
    path, cert = service_account(tmp_path, ep.port)
    ep.cert = cert
    try:
        yield ep, path
    finally:
        await ep.aclose()


@pytest.fixture
def emulator_config(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from emulator.config import EmulatorConfig

    # only the tokens the endpoint mints are valid upstream credentials
    return EmulatorConfig(port=0, pacing=0.0, bearer_tokens=frozenset(TOKENS),
                          cert_dir=str(tmp_path_factory.getbasetemp() / "emulator-cert"))


@pytest.fixture
def flavour() -> str:
    return "vertex"


@pytest.fixture
def settings_overrides(token_endpoint: tuple[TokenEndpoint, Path]) -> dict[str, Any]:
    return {"upstream_api_key": None, "google_credentials_file": str(token_endpoint[1])}


async def test_service_account_token_is_fetched_and_refreshed(client: Any, stack: dict[str, Any],
                                                               token_endpoint: tuple[TokenEndpoint, Path]) -> None:
    endpoint, _ = token_endpoint
    async with client.aio.live.connect(model=MODEL, config={"response_modalities": ["TEXT"]}) as s:
        await s.send_client_content(turns={"role": "user", "parts": [{"text": "Hello Vertex?"}]})
        assert text_of(await collect_turn(s)) == 'You said: "Hello Vertex?"'
    assert endpoint.issued == ["tok-1"]
    await asyncio.sleep(1.2)  # tok-1 now expires within the refresh margin
    async with client.aio.live.connect(model=MODEL, config={"response_modalities": ["TEXT"]}) as s:
        await s.send_client_content(turns={"role": "user", "parts": [{"text": "Again?"}]})
        assert text_of(await collect_turn(s)) == 'You said: "Again?"'
    assert endpoint.issued[:2] == ["tok-1", "tok-2"]  # refreshed before it expired, and accepted upstream
    assert {c["credential_kind"] for c in stack["emulator"].conversations} == {"bearer"}
