"""Upstream routing per tenant: which upstream (flavour, endpoint, credentials) a session uses, and which routes
and models each tenant may use (livegate/routes.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from livegate.client import APIError, Client
from livegate.cli.devstack import dev_stack
from livegate.settings import Settings
from livegate.v1 import gateway_pb2 as gw
from service.auth import hash_key
from tests.e2e.helpers import collect_turn, text_of

MODEL = "gemini-live-2.5-flash"


@pytest.fixture
async def routed(redis: Any, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[dict[str, Any]]:
    from emulator.config import EmulatorConfig
    from emulator.server import EmulatorServer

    emu = EmulatorServer(EmulatorConfig(port=0, pacing=0.0, api_keys=frozenset({"k-gemini", "k-vertex"}),
                                        cert_dir=str(tmp_path / "cert")))
    await emu.start()
    monkeypatch.setenv("LG_TEST_K_GEMINI", "k-gemini")  # secrets come from the environment, not the document
    monkeypatch.setenv("LG_TEST_K_VERTEX", "k-vertex")
    doc = {"routes": {
        "gemini-emu": {"url": emu.url, "flavour": "gemini", "api_key_env": "LG_TEST_K_GEMINI", "ca_file": str(emu.cert_path)},
        "vertex-emu": {"url": emu.url, "flavour": "vertex", "api_key_env": "LG_TEST_K_VERTEX", "ca_file": str(emu.cert_path),
                       "vertex_project": "acme-prod", "vertex_location": "europe-west4"}},
        "default_route": "gemini-emu",
        "tenants": {"acme": {"routes": ["gemini-emu", "vertex-emu"], "default_route": "vertex-emu"},
                    "beta": {"routes": ["gemini-emu"], "models": [MODEL]}}}
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"keys": [{"tenant": "acme", "sha256": hash_key("acme-key"), "name": "a"},
                                         {"tenant": "beta", "sha256": hash_key("beta-key"), "name": "b"}]}))
    settings = Settings(redis_url=redis_url, front_listen="127.0.0.1:0", log_json=False, upstreams_json=json.dumps(doc),
                        auth_modes=("api_key",), caller_keys_file=str(keys))
    try:
        async with dev_stack(settings, workers=1, start_redis=False, emulator=emu) as parts:
            yield parts
    finally:
        await emu.aclose()


async def talk(address: str, key: str, route: str = "", model: str = MODEL) -> tuple[str, Any]:
    async with Client(address, metadata=[("x-api-key", key)]) as client, client.aio.live.connect(
            model=model, config={"response_modalities": ["TEXT"]}, options=gw.SessionOptions(upstream=route)) as s:
        await s.send_client_content(turns={"role": "user", "parts": [{"text": "Which upstream?"}]})
        return text_of(await collect_turn(s)), s


async def test_tenants_use_their_routes(routed: dict[str, Any]) -> None:
    front, emu = routed["front"].address, routed["emulator"]
    assert (await talk(front, "acme-key"))[0] == 'You said: "Which upstream?"'
    assert emu.conversations[-1]["flavour"] == "vertex"  # acme's default route
    await talk(front, "acme-key", route="gemini-emu")
    assert emu.conversations[-1]["flavour"] == "gemini"
    await talk(front, "beta-key")
    assert emu.conversations[-1]["flavour"] == "gemini"


@pytest.mark.parametrize(("key", "route", "model", "code", "reason"), [
    ("beta-key", "vertex-emu", MODEL, grpc.StatusCode.PERMISSION_DENIED, "ROUTE_NOT_ALLOWED"),
    ("beta-key", "", "gemini-2.0-flash-live-001", grpc.StatusCode.PERMISSION_DENIED, "MODEL_NOT_ALLOWED"),
    ("acme-key", "nope", MODEL, grpc.StatusCode.NOT_FOUND, "ROUTE_NOT_FOUND"),
])
async def test_routes_and_models_are_enforced(routed: dict[str, Any], key: str, route: str, model: str,
                                              code: grpc.StatusCode, reason: str) -> None:
    with pytest.raises(APIError) as raised:  # the client raises google-genai's errors
        await talk(routed["front"].address, key, route=route, model=model)
    err = raised.value.rpc_error
    assert err.code() == code
    from grpc_status import rpc_status
    from google.rpc import error_details_pb2

    info = error_details_pb2.ErrorInfo()
    status = rpc_status.from_call(err)
    assert status is not None and status.details[0].Unpack(info) and info.reason == reason


async def test_worker_with_an_unreadable_upstream_ca_file_fails_at_start(redis_url: str, tmp_path: Any) -> None:
    """TLS contexts are built when the worker starts: a wrong CA path stops it with a message naming the
    route and the file, instead of failing every session later."""
    from workers.worker import Worker

    missing = tmp_path / "no-such-ca.pem"
    w = Worker(Settings(redis_url=redis_url, upstream_url="wss://127.0.0.1:1", upstream_ca_file=str(missing)))
    try:
        with pytest.raises(ValueError, match=r"cannot load the CA file .*no-such-ca\.pem"):
            await w.start()
    finally:
        await w.aclose()
