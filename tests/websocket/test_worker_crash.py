"""A worker SIGKILLed under a Live API WebSocket caller's session, with real processes (two workers, one front
serving ``ws_listen``): another worker takes the session over from its stored handle, and the caller's
connection goes on, with its history, without seeing a close or a ``goAway``."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from livegate.cli.devstack import free_port
from livegate.redis import keys
from tests.durability.procs import ProcStack, emulator_server

PATH = "/ws/google.cloud.aiplatform.v1beta1.LlmBidiService/BidiGenerateContent"


@pytest.fixture
async def emulator(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Any]:
    async with emulator_server(tmp_path_factory, pacing=0.0) as emu:
        yield emu


async def ask(ws: ClientConnection, text: str) -> tuple[str, list[dict[str, Any]]]:
    await ws.send(json.dumps({"client_content": {"turns": [{"role": "user", "parts": [{"text": text}]}],
                                                 "turn_complete": True}}))
    frames: list[dict[str, Any]] = []
    async with asyncio.timeout(30):
        while not frames or not frames[-1].get("serverContent", {}).get("turnComplete"):
            frames.append(json.loads(await ws.recv()))
    parts = [p for f in frames for p in f.get("serverContent", {}).get("modelTurn", {}).get("parts", [])]
    return "".join(p.get("text", "") for p in parts), frames


async def test_sigkill_owner_the_websocket_caller_goes_on(redis: Any, redis_url: str, emulator: Any) -> None:
    ws_port = free_port()
    procs = ProcStack(redis_url, emulator, ws_listen=f"127.0.0.1:{ws_port}")
    try:
        workers = [await procs.worker(), await procs.worker()]
        await procs.front()
        async with connect(f"ws://127.0.0.1:{ws_port}{PATH}?key=k") as ws:
            await ws.send(json.dumps({"setup": {"model": "gemini-live-2.5-flash",
                                                "generation_config": {"response_modalities": ["TEXT"]}}}))
            sid = json.loads(await ws.recv())["setupComplete"]["sessionId"]
            assert (await ask(ws, "Is the sky blue?"))[0] == 'You said: "Is the sky blue?"'
            owner_id = (await redis.hget(keys.session_meta(sid), "worker")).decode()
            owner = next(w for w in workers if w.id == owner_id)
            owner.kill(signal.SIGKILL)
            assert await owner.wait(5) == -signal.SIGKILL
            reply, frames = await ask(ws, "What was the last question I asked?")
            assert reply == 'You asked: "Is the sky blue?"'
            assert not [f for f in frames if "goAway" in f]
            new_owner = (await redis.hget(keys.session_meta(sid), "worker")).decode()
            assert new_owner != owner_id and new_owner in {w.id for w in workers}
        (conv,) = emulator.conversations
        assert conv["connections"] == 2  # resumed from the stored handle on the other worker
    finally:
        await procs.aclose()
