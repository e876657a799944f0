"""A worker or a front paused past its heartbeat TTL (a long GC, CPU throttling, a VM stall: here SIGSTOP) is
declared dead by the fleet, then wakes up. It must not carry on half-alive: it rejoins under a new identity
with working streams, its sessions continue (with their new owner, or re-attached), sessions created after
it woke get every turn and end on a half-close, its readiness says "not ready" until it has rejoined, and the
event is counted and logged."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from livegate.client import Client
from livegate.redis import keys
from livegate.v1 import gateway_pb2 as gw
from tests.durability.procs import Proc, ProcStack, emulator_server
from tests.durability.test_paused_worker import _turn
from tests.e2e.test_metrics import http_get

MODEL = "gemini-live-2.5-flash"
TEXT = {"response_modalities": ["TEXT"]}


@pytest.fixture
async def emulator(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Any]:
    async with emulator_server(tmp_path_factory, pacing=0.0) as emu:
        yield emu


async def _until(what: str, check: Any, timeout_s: float = 15.0) -> Any:
    """Poll the async ``check`` until it returns something truthy (bounded)."""
    try:
        async with asyncio.timeout(timeout_s):
            while not (value := await check()):
                await asyncio.sleep(0.05)
            return value
    except TimeoutError:
        raise AssertionError(f"not within {timeout_s}s: {what}") from None


async def _wake_and_probe(p: Proc) -> int:
    """SIGCONT ``p`` with a readiness probe already waiting in its socket: the status it answers as it wakes,
    before its first beat after the pause (which learns it was declared dead)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", p.metrics_port)  # the kernel accepts it
    writer.write(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    p.kill(signal.SIGCONT)
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return int(data.split()[1])


async def _metric(p: Proc, line_start: str) -> float:
    _, body = await http_get(p.metrics_port, "/metrics")
    for line in body.decode().splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def _members(redis: Any, registry: str) -> set[str]:
    return {m.decode() for m in await redis.zrange(registry, 0, -1)}


async def _conversation(client: Any, redis: Any, n_turns: int = 2) -> tuple[str, str]:
    """A new session: every turn answered, then a half-close; returns its id and the worker that relayed it."""
    async with client.aio.live.connect(model=MODEL, config=TEXT) as s:
        for i in range(n_turns):
            assert await _turn(s, f"turn {i}: tell me something") > 1
        return str(s.session_id), (await redis.hget(keys.session_meta(s.session_id), "worker")).decode()


async def _ended(redis: Any, emulator: Any, sids: list[str], upstreams_left: int) -> None:
    """The sessions ended after their half-close (no record left, none stuck CLOSING) and no upstream socket
    is left open but ``upstreams_left``."""
    async def done() -> bool:
        return not any([await redis.exists(keys.session_meta(sid)) for sid in sids]) \
            and len(emulator.sessions) <= upstreams_left
    await _until(f"sessions {sids} ended and their upstream sockets closed", done)


async def test_a_worker_paused_past_its_ttl_rejoins_and_relays_every_session(redis: Any, redis_url: str, emulator: Any,
                                                                           tmp_path: Path) -> None:
    procs = ProcStack(redis_url, emulator, logs_dir=str(tmp_path))
    try:
        # the other worker is the reaper; kept full by one session, so every later session is the paused one's
        other = await procs.worker(capacity=1)
        front = await procs.front()
        async with Client(front.address) as client, client.aio.live.connect(model=MODEL, config=TEXT) as held:
            await _turn(held, "I keep the other worker busy")
            paused = await procs.worker()
            async with client.aio.live.connect(model=MODEL, config=TEXT) as before:
                await _turn(before, "hello before the pause")
                assert (await redis.hget(keys.session_meta(before.session_id), "worker")).decode() == paused.id
                paused.kill(signal.SIGSTOP)
                await _until("the paused worker is reaped",
                             lambda: _absent(redis, keys.WORKERS, paused.id))
                # (3) readiness: not ready as it wakes (it may have been declared dead), ready once it rejoined
                assert await _wake_and_probe(paused) == 503
                await _until("the woken worker is ready again",
                             lambda: _ready(paused))
                # its session from before the pause continues with its new owner (the other worker is full)
                assert await _turn(before, "are you still there?") > 1
                before_sid = str(before.session_id)
                before_owner = (await redis.hget(keys.session_meta(before_sid), "worker")).decode()
            # (2) sessions created after the wake: every turn answered, and the half-close ends them
            new = [await _conversation(client, redis) for _ in range(3)]
            await _ended(redis, emulator, [before_sid, *[sid for sid, _ in new]], upstreams_left=1)  # the held one's
            # (1) it took them under a new identity, with a working inbox; the old identity is gone for good
            rejoined = f"{paused.id}-r2"
            assert before_owner == rejoined and {worker for _, worker in new} == {rejoined}
            assert await _members(redis, keys.WORKERS) == {other.id, rejoined}
            assert await redis.exists(keys.worker_inbox(rejoined))
            assert not await redis.exists(keys.worker_inbox(paused.id))
        # (4) counted and logged
        assert await _metric(paused, 'livegate_membership_lost_total{role="worker"}') == 1.0
        log = paused.log()
        assert f"worker {paused.id}: declared dead by the fleet" in log
        assert f"rejoined the fleet as {rejoined}" in log
        assert "event loop stalled for" in log and "the whole process was paused" in log  # livegate/looplag.py
        assert await _metric(paused, 'livegate_heartbeat_age_seconds{peer_role="front",role="worker"}') < 1.0
    finally:
        await procs.aclose()


async def test_a_front_paused_past_its_ttl_rejoins_and_keeps_its_callers(redis: Any, redis_url: str, emulator: Any,
                                                                       tmp_path: Path) -> None:
    procs = ProcStack(redis_url, emulator, logs_dir=str(tmp_path))
    try:
        await procs.worker()
        front = await procs.front()
        async with Client(front.address) as client, client.aio.live.connect(model=MODEL, config=TEXT) as s:
            sid = str(s.session_id)
            await _turn(s, "hello before the pause")
            front.kill(signal.SIGSTOP)
            # the workers find it dead, and the session of its caller is detached (waiting for a reattach)
            await _until("its session is detached", lambda: _state_is(redis, sid, b"detached"))
            assert await _wake_and_probe(front) == 503
            await _until("the woken front is ready again", lambda: _ready(front))
            # it re-attached its caller's stream: the session is active again (not left to end with its grace)
            await _until("the session is re-attached to the woken front", lambda: _state_is(redis, sid, b"active"))
            # under a new identity: the session is delivered to the new identity's outbox
            rejoined = f"{front.id}-r2"
            assert (await redis.hget(keys.session_meta(sid), "front")).decode() == rejoined
            assert await _members(redis, keys.FRONTS) == {rejoined}
            assert await _turn(s, "are you still there?") > 1
            new_sid, _ = await _conversation(client, redis)  # a session created after the wake
        await _ended(redis, emulator, [sid, new_sid], upstreams_left=0)
        assert await _metric(front, 'livegate_membership_lost_total{role="front"}') == 1.0
        log = front.log()
        assert f"front {front.id}: declared dead by the fleet" in log
        assert f"rejoined the fleet as {rejoined}: 1 streams re-attached, 0 ended (SESSION_LOST), 0 reattached" in log
    finally:
        await procs.aclose()


async def test_a_paused_front_leaves_a_session_its_caller_took_elsewhere(redis: Any, redis_url: str, emulator: Any,
                                                                        tmp_path: Path) -> None:
    """While the front is paused its caller reattaches through another front: on waking, the front rejoins but
    does not take the session back."""
    procs = ProcStack(redis_url, emulator, logs_dir=str(tmp_path))
    try:
        await procs.worker()
        paused, other = await procs.front(), await procs.front()
        async with Client(paused.address) as client, client.aio.live.connect(model=MODEL, config=TEXT) as s:
            await _turn(s, "hello before the pause")
            sid, token, seq = str(s.session_id), s.reattach_token, s.last_seq
            paused.kill(signal.SIGSTOP)
            await _until("its session is detached", lambda: _state_is(redis, sid, b"detached"))
            async with Client(other.address) as elsewhere:
                call = elsewhere.stub().Connect()
                await call.write(gw.ClientMessage(reattach=gw.Reattach(session_id=sid, reattach_token=token,
                                                                       last_seq=seq)))
                assert (await call.read()).session.session_id == sid
                await _until("the session is the other front's", lambda: _state_is(redis, sid, b"active"))
                paused.kill(signal.SIGCONT)
                await _until("the woken front is ready again", lambda: _ready(paused))
                assert (await redis.hget(keys.session_meta(sid), "front")).decode() == other.id
                # the conversation goes on through the other front
                turn = gw.ClientMessage()
                turn.client_content.turns.add(role="user").parts.add(text="are you still there?")
                turn.client_content.turn_complete = True
                await call.write(turn)
                async with asyncio.timeout(10):
                    while not (await call.read()).server_content.turn_complete:
                        pass
                await call.done_writing()
            log = paused.log()
            assert f"rejoined the fleet as {paused.id}-r2: 0 streams re-attached, 0 ended (SESSION_LOST), 1 " \
                   "reattached elsewhere" in log
    finally:
        await procs.aclose()


async def _absent(redis: Any, registry: str, member: str) -> bool:
    return await redis.zscore(registry, member) is None


async def _state_is(redis: Any, sid: str, state: bytes) -> bool:
    return bool(await redis.hget(keys.session_meta(sid), "state") == state)


async def _ready(p: Proc) -> bool:
    return (await http_get(p.metrics_port, "/readyz"))[0] == 200
