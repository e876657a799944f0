"""A real stack (the run's redis-server, the emulator over TLS, two workers, a front) whose front also serves the
Live API WebSocket protocol (``ws_listen``), over TLS with a self-signed certificate (google-genai's Python SDK
only speaks ``wss://``), or over plain ``ws://`` where a test asks for it (``ws_tls`` False)."""

from __future__ import annotations

import ssl
from typing import Any

import pytest


@pytest.fixture
def ws_tls() -> bool:
    return True


@pytest.fixture
def ws_cert(emulator_config: Any) -> tuple[str, str]:
    """The emulator's own self-signed pair (127.0.0.1, localhost): one certificate to trust (``SSL_CERT_FILE``)
    for the gateway's endpoint and, in the workers, the upstream."""
    from emulator.tls import ensure_self_signed

    return ensure_self_signed(emulator_config.cert_dir)


@pytest.fixture
def ws_settings() -> dict[str, Any]:
    """More settings for a test's stack (e.g. auth modes, admission caps)."""
    return {}


@pytest.fixture
def settings_overrides(ws_tls: bool, ws_cert: tuple[str, str], ws_settings: dict[str, Any]) -> dict[str, Any]:
    tls = {"front_tls_cert_file": ws_cert[0], "front_tls_key_file": ws_cert[1]} if ws_tls else {}
    return {"ws_listen": "127.0.0.1:0", **tls, **ws_settings}


@pytest.fixture
def ws_url(stack: dict[str, Any]) -> str:
    """``wss://127.0.0.1:PORT`` (or ``ws://``): the gateway's Live API base URL."""
    return str(stack["front"].websocket.url)


@pytest.fixture
def ssl_ctx(ws_cert: tuple[str, str]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ws_cert[0])


@pytest.fixture
def base_url(ws_url: str) -> str:
    """What an SDK takes as ``base_url``: the scheme is https/http (the SDKs make it wss/ws themselves)."""
    return ws_url.replace("wss://", "https://").replace("ws://", "http://")
