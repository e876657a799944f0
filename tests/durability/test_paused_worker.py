"""A worker presumed dead that still runs: SIGSTOP the owner of a talking session until another worker has
claimed it, then SIGCONT it. The woken worker still holds upstream frames it had not relayed; none of them
may reach the session's log, and the new owner must go on relaying (the conversation continues)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from typing import Any

import pytest

from livegate.redis import keys
from livegate.client import Client
from livegate.v1 import gateway_pb2 as gw
from tests.durability.procs import ProcStack, emulator_server

MODEL = "gemini-live-2.5-flash"


@pytest.fixture
async def emulator(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Any]:
    # real-time pacing: the paused worker's socket fills with model audio it has not relayed yet
    async with emulator_server(tmp_path_factory, pacing=1.0) as emu:
        yield emu


async def _turn(s: Any, text: str) -> int:
    await s.send_client_content(turns={"role": "user", "parts": [{"text": text}]})
    n = 0
    async with asyncio.timeout(60):
        async for m in s.receive_raw():
            n += 1
            if m.server_content.turn_complete:
                return n
    raise AssertionError("the stream ended before turn_complete")


async def test_a_paused_owner_that_wakes_after_the_takeover_writes_nothing(redis: Any, redis_url: str,
                                                                          emulator: Any) -> None:
    procs = ProcStack(redis_url, emulator)
    try:
        workers = [await procs.worker(), await procs.worker()]
        front = await procs.front()
        async with Client(front.address) as client, client.aio.live.connect(
                model=MODEL, config={"response_modalities": ["AUDIO"]}) as s:
            stub = client.stub()
            sid = s.session_id
            await _turn(s, "Hello, is this thing on?")  # the upstream has given a resumption handle
            await s.send_client_content(turns={"role": "user", "parts": [{"text": "say: " + "many words " * 15}]})
            paused = None
            async with asyncio.timeout(60):
                async for m in s.receive_raw():
                    if paused is None and m.server_content.model_turn.parts:
                        info = await stub.GetSession(gw.GetSessionRequest(session_id=sid))
                        paused = next(w for w in workers if w.id == info.worker_id)
                        paused.kill(signal.SIGSTOP)
                        # its heartbeat expires; the other worker claims the session (epoch 2): wake it then
                        async with asyncio.timeout(20):
                            while int(await redis.hget(keys.session_meta(sid), "epoch") or 0) < 2:
                                await asyncio.sleep(0.01)
                        paused.kill(signal.SIGCONT)
                    if m.server_content.turn_complete:
                        break
            assert paused is not None
            # the conversation goes on, on the other worker
            assert await _turn(s, "Are you still there?") > 1
            info = await stub.GetSession(gw.GetSessionRequest(session_id=sid))
            assert info.worker_id != paused.id
            assert paused.proc.poll() is None  # woken, and alive

            # Every server message logged after the claim is the new owner's: its outbox entries carry its
            # epoch, and the first of them (its announcement) names the last seq logged before it took over.
            entries = [f for _, f in await redis.xrange(keys.front_outbox(front.id)) if f.get(b"s") == sid.encode()]
            new = [f for f in entries if int(f.get(b"ep", 0)) >= 2]
            claimed_at = int(new[0][b"q"])
            by_new_owner = {int(f[b"q"]): f[b"m"] for f in new if b"m" in f}
            logged = [(keys.stream_seq(eid), f[b"m"]) for eid, f in await redis.xrange(keys.session_s2c(sid))]
            after = [(seq, m) for seq, m in logged if seq > claimed_at]
            assert after, "nothing logged after the takeover"
            assert all(by_new_owner.get(seq) == m for seq, m in after), \
                "a server message of the paused worker reached the session's log after the takeover"
    finally:
        await procs.aclose()
