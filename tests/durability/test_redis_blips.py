"""A dropped Redis connection (CLIENT KILL) does not end sessions: readers resume, writers retry."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.e2e.helpers import collect_turn, text_of

MODEL = "gemini-live-2.5-flash"
SILENCE_20MS = b"\x00\x00" * 320


async def test_client_kill_all_connections_mid_conversation(client: Any, stack: dict[str, Any]) -> None:
    redis = stack["redis"]
    async with client.aio.live.connect(model=MODEL, config={"response_modalities": ["TEXT"]}) as s:
        await s.send_client_content(turns={"role": "user", "parts": [{"text": "Is Redis up?"}]})
        assert text_of(await collect_turn(s)) == 'You said: "Is Redis up?"'
        for round_ in range(3):
            # every connection of the front and the workers (blocking readers, pipelines) is cut
            killed = await redis.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
            assert killed >= 4
            for _ in range(10):
                await s.send_realtime_input(audio={"data": SILENCE_20MS, "mime_type": "audio/pcm;rate=16000"})
            await s.send_client_content(turns={"role": "user", "parts": [{"text": f"Round {round_}: still here?"}]})
            assert text_of(await collect_turn(s)) == f'You said: "Round {round_}: still here?"'
        await s.send_client_content(turns={"role": "user", "parts": [{"text": "What was the last question I asked?"}]})
        assert text_of(await collect_turn(s)) == 'You asked: "Round 2: still here?"'
    # new sessions are allocated after the blips too
    async with client.aio.live.connect(model=MODEL, config={"response_modalities": ["TEXT"]}) as s:
        await s.send_client_content(turns={"role": "user", "parts": [{"text": "New session?"}]})
        assert text_of(await collect_turn(s)) == 'You said: "New session?"'
    emulator = stack["emulator"]
    first = emulator.conversations[0]
    texts = [m["text"] for m in first["messages"] if m["kind"] == "clientContent"]
    # each client message reached the upstream exactly once despite the retried writes
    assert texts == ["Is Redis up?", "Round 0: still here?", "Round 1: still here?", "Round 2: still here?",
                     "What was the last question I asked?"]
    assert sum(1 for m in first["messages"] if m["kind"] == "realtimeInput.audio") == 30
