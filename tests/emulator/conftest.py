"""Fixtures: a real EmulatorServer over TLS on 127.0.0.1:0, the SDK client, raw WebSocket helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from emulator.config import EmulatorConfig
from emulator.server import EmulatorServer


@pytest.fixture
def make_config(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., EmulatorConfig]:
    cert_dir = str(tmp_path_factory.getbasetemp() / "emulator-cert")

    def make(**changes: Any) -> EmulatorConfig:
        base = dict(port=0, pacing=0.0, cert_dir=cert_dir, speech_engine="synthetic", transcribe_engine="convention")
        base.update(changes)
        return EmulatorConfig(**base)  # type: ignore[arg-type]

    return make


@pytest.fixture
async def start_server(make_config: Callable[..., EmulatorConfig]) -> AsyncIterator[Callable[..., Any]]:
    servers: list[EmulatorServer] = []

    async def start(**changes: Any) -> EmulatorServer:
        server = EmulatorServer(make_config(**changes))
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.aclose()


@pytest.fixture
async def server(start_server: Callable[..., Any]) -> EmulatorServer:
    return await start_server()


