"""Callers lost at awkward moments: before any worker has taken their session, or while their session's
worker dies or is asked to close. The session must be kept for a reattach within its grace, and ended once
the grace is over (its keys deleted, its admission lease given back), whoever owns it by then."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2

from livegate.redis import keys
from livegate.admission.control import scope_of
from livegate.v1 import gateway_pb2 as gw
from livegate.v1 import gateway_pb2_grpc
from tests.durability.procs import ProcStack, emulator_server
from tests.durability.test_reattach import assert_reattach_refused, read_until, text_msg

MODEL = "gemini-live-2.5-flash"
SCOPE = scope_of("default", MODEL)
ADMISSION = json.dumps({"scopes": {SCOPE: {"cap": 5}}, "lease_ttl_s": 60})


def setup_msg(grace_s: float) -> gw.ClientMessage:
    m = gw.ClientMessage()
    m.setup.model = MODEL
    m.setup.generation_config.response_modalities.append(1)  # TEXT
    m.options.reattach_grace.CopyFrom(duration_pb2.Duration(seconds=int(grace_s), nanos=int(grace_s % 1 * 1e9)))
    return m


async def wait_for(check: Any, what: str, timeout_s: float = 20.0) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            while not await check():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"not within {timeout_s}s: {what}") from None


def meta_field(redis: Any, sid: str, name: str) -> Any:
    async def read() -> str:
        v = await redis.hget(keys.session_meta(sid), name)
        return v.decode() if v else ""
    return read


async def session_gone(redis: Any, sid: str) -> bool:
    return not await redis.exists(*keys.session_keys(sid))


async def leases_held(redis: Any) -> int:
    return int(await redis.zcard(keys.admission_keys(SCOPE)[0]))


async def no_leases(redis: Any) -> bool:
    """Given back after the session's keys are deleted (a separate step: the lease also expires by TTL)."""
    return await leases_held(redis) == 0


# -- a caller lost before any worker took its session (in-process stack, workers started by the test) ------


@pytest.fixture
async def workerless(redis: Any, redis_url: str, emulator_config: Any) -> AsyncIterator[dict[str, Any]]:
    """A front and the emulator, no worker: sessions stay pending until the test starts one."""
    from livegate.cli.devstack import dev_stack
    from livegate.settings import Settings
    from workers.worker import Worker

    settings = Settings(redis_url=redis_url, front_listen="127.0.0.1:0", setup_timeout_s=30.0, log_json=False,
                        upstream_api_key="test-upstream-key", admission_json=ADMISSION)
    async with contextlib.AsyncExitStack() as stack:
        parts = await stack.enter_async_context(dev_stack(settings, workers=0, emulator_config=emulator_config,
                                                          start_redis=False))

        async def start_worker() -> Worker:
            w = Worker(parts["settings"].model_copy(update={"worker_id": ""}))
            await w.start()
            stack.push_async_callback(w.aclose)
            return w

        parts["start_worker"] = start_worker
        parts["channel"] = channel = await stack.enter_async_context(grpc.aio.insecure_channel(parts["front"].address))
        parts["stub"] = gateway_pb2_grpc.LiveGatewayStub(channel)
        yield parts


async def open_and_lose(stub: Any, redis: Any, grace_s: float) -> gw.SessionInfo:
    """Open a session, then break the stream before any worker has taken it; returns its info once the
    front has marked it detached."""
    call = stub.Connect()
    await call.write(setup_msg(grace_s))
    info = (await call.read()).session
    call.cancel()
    await wait_for(lambda: _is(meta_field(redis, info.session_id, "state"), "detached"), "the session is detached")
    assert await meta_field(redis, info.session_id, "worker")() == ""
    return info


async def _is(read: Any, value: str) -> bool:
    return await read() == value


async def test_a_caller_lost_before_any_worker_took_its_session_can_reattach(workerless: dict[str, Any],
                                                                             redis: Any) -> None:
    stub = workerless["stub"]
    info = await open_and_lose(stub, redis, grace_s=30)
    worker = await workerless["start_worker"]()
    again = stub.Connect()
    await again.write(gw.ClientMessage(reattach=gw.Reattach(session_id=info.session_id,
                                                           reattach_token=info.reattach_token, last_seq=0)))
    assert (await again.read()).session.session_id == info.session_id
    first = await read_until(again, lambda m: m.HasField("setup_complete"))
    assert first[-1].seq == 1
    await again.write(text_msg("Are you there?"))
    turn = await read_until(again, lambda m: m.server_content.turn_complete)
    assert "Are you there?" in "".join(p.text for m in turn for p in m.server_content.model_turn.parts)
    view = await stub.GetSession(gw.GetSessionRequest(session_id=info.session_id))
    assert view.state == gw.Session.ACTIVE and view.worker_id == worker.id and view.counters.reattaches == 1
    await again.done_writing()
    async with asyncio.timeout(10):
        while await again.read() is not grpc.aio.EOF:
            pass
    await wait_for(lambda: session_gone(redis, info.session_id), "the closed session's keys are deleted")
    await wait_for(lambda: no_leases(redis), "the admission lease is given back")


async def test_a_reattached_caller_of_an_unclaimed_session_gets_no_worker_in_time(workerless: dict[str, Any],
                                                                                 redis: Any) -> None:
    """Reattached to a session no worker takes: the caller waits setup_timeout_s like a new one, then gets
    UNAVAILABLE NO_WORKER, and the session ends (keys deleted, lease given back)."""
    from service.server import Front

    info = await open_and_lose(workerless["stub"], redis, grace_s=30)
    impatient = Front(workerless["settings"].model_copy(update={"setup_timeout_s": 1.0}))
    await impatient.start()
    try:
        async with grpc.aio.insecure_channel(impatient.address) as channel:
            call = gateway_pb2_grpc.LiveGatewayStub(channel).Connect()
            await call.write(gw.ClientMessage(reattach=gw.Reattach(session_id=info.session_id,
                                                                  reattach_token=info.reattach_token)))
            assert (await call.read()).session.session_id == info.session_id
            with pytest.raises(grpc.aio.AioRpcError) as err:
                async with asyncio.timeout(20):
                    await call.read()
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE and "no worker" in (err.value.details() or "")
        await wait_for(lambda: session_gone(redis, info.session_id), "the unclaimed session is ended")
        await wait_for(lambda: no_leases(redis), "the admission lease is given back")
    finally:
        await impatient.aclose(0.0)


async def test_an_unclaimed_session_whose_caller_is_lost_ends_with_its_grace(workerless: dict[str, Any],
                                                                            redis: Any) -> None:
    stub = workerless["stub"]
    info = await open_and_lose(stub, redis, grace_s=0.5)
    assert await leases_held(redis) == 1
    await wait_for(lambda: session_gone(redis, info.session_id), "the front ends the session at the grace's end")
    await wait_for(lambda: no_leases(redis), "the admission lease is given back")
    assert not await redis.zscore(keys.tenant_sessions("default"), info.session_id)
    await assert_reattach_refused(stub, info, grpc.StatusCode.NOT_FOUND)
    # the allocation entry is still queued: a worker that reads it finds the session gone and takes nothing
    worker = await workerless["start_worker"]()
    await wait_for(lambda: _alloc_empty(redis), "the worker consumed the allocation entry")
    assert worker.stats.taken == 0


async def _alloc_empty(redis: Any) -> bool:
    return int(await redis.xlen(keys.ALLOC_STREAM)) == 0


async def test_after_its_grace_a_session_refuses_a_reattach_and_its_claimer_ends_it(workerless: dict[str, Any],
                                                                                   redis: Any) -> None:
    stub = workerless["stub"]
    info = await open_and_lose(stub, redis, grace_s=0.5)
    until_ms = int(await meta_field(redis, info.session_id, "grace_until_ms")())
    await workerless["front"].aclose()  # the front that would have ended it is gone (its timer with it)
    # the deadline is the condition under test: wait for it by Redis's clock, the one the worker compares with
    await wait_for(lambda: _redis_ms_past(redis, until_ms), "the grace is over")
    assert not await session_gone(redis, info.session_id), "nobody ended it yet"
    # a caller back after its grace is refused, even through another front and before anyone ended it
    from service.server import Front

    other = Front(workerless["settings"])
    await other.start()
    try:
        async with grpc.aio.insecure_channel(other.address) as channel:
            await assert_reattach_refused(gateway_pb2_grpc.LiveGatewayStub(channel), info, grpc.StatusCode.NOT_FOUND)
    finally:
        await other.aclose(0.0)
    assert await meta_field(redis, info.session_id, "state")() == "detached"
    worker = await workerless["start_worker"]()
    await wait_for(lambda: session_gone(redis, info.session_id), "the claiming worker ends the session")
    assert worker.stats.taken == 1 and worker.stats.s2c == 0, "no upstream connection for a session nobody awaits"
    await wait_for(lambda: _ended(worker), "the relay ended")
    await wait_for(lambda: no_leases(redis), "the admission lease is given back")


async def _redis_ms_past(redis: Any, ms: int) -> bool:
    sec, usec = await redis.time()
    return sec * 1000 + usec // 1000 > ms


async def _ended(worker: Any) -> bool:
    return bool(worker.stats.ended == worker.stats.taken)


# -- the session's worker dies while its caller is away, or after a close was asked of it (processes) --------


@pytest.fixture
async def procs(redis: Any, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ProcStack]:
    async with emulator_server(tmp_path_factory, pacing=0.0) as emu:
        stack = ProcStack(redis_url, emu, admission_json=ADMISSION)
        try:
            yield stack
        finally:
            await stack.aclose()


async def owned_session(procs: ProcStack, grace_s: float) -> tuple[Any, Any, gw.SessionInfo, Any, Any]:
    workers = [await procs.worker(), await procs.worker()]
    front = await procs.front()
    channel = grpc.aio.insecure_channel(front.address)
    stub = gateway_pb2_grpc.LiveGatewayStub(channel)
    call = stub.Connect()
    await call.write(setup_msg(grace_s))
    info = (await call.read()).session
    await call.write(text_msg("Hello, is this thing on?"))  # a turn: the upstream has given a handle
    await read_until(call, lambda m: m.server_content.turn_complete)
    view = await stub.GetSession(gw.GetSessionRequest(session_id=info.session_id))
    owner = next(w for w in workers if w.id == view.worker_id)
    return channel, call, info, owner, stub


async def test_a_detached_session_taken_over_still_ends_with_its_grace(procs: ProcStack, redis: Any) -> None:
    channel, call, info, owner, _ = await owned_session(procs, grace_s=3)
    sid = info.session_id
    try:
        call.cancel()  # the caller is lost: the session waits 3 s for it
        await wait_for(lambda: _is(meta_field(redis, sid, "state"), "detached"), "the session is detached")
        owner.kill(signal.SIGKILL)
        # the takeover comes ~1 s later (heartbeat TTL): within the grace, unless this machine is very slow, in
        # which case the new owner ends the session at once (the grace is over) and there is nothing to see
        await wait_for(lambda: _taken_over_or_gone(redis, sid, owner.id), "another worker took it over")
        if not await session_gone(redis, sid):
            assert await meta_field(redis, sid, "state")() == "detached", "a takeover keeps the caller's absence"
        # on the code before the fix the new owner made the session active and kept it for good
        await wait_for(lambda: session_gone(redis, sid), "the new owner ends it when the grace is over")
        await wait_for(lambda: no_leases(redis), "the admission lease is given back")
    finally:
        await channel.close()


async def _taken_over_or_gone(redis: Any, sid: str, dead: str) -> bool:
    owner = await meta_field(redis, sid, "worker")()
    return (bool(owner) and owner != dead) or await session_gone(redis, sid)


async def test_a_close_asked_of_a_worker_that_then_dies_is_done_by_the_next_owner(procs: ProcStack,
                                                                                  redis: Any) -> None:
    channel, call, info, owner, _ = await owned_session(procs, grace_s=30)
    sid = info.session_id
    try:
        owner.kill(signal.SIGSTOP)  # it cannot act on the close below
        await call.done_writing()  # the caller is done: the front asks the owner to close the session
        await wait_for(lambda: _is(meta_field(redis, sid, "state"), "closing"), "the session is closing")
        owner.kill(signal.SIGKILL)
        # only a new owner can end it now: the front has done its part (the caller's stream ends with it)
        await wait_for(lambda: session_gone(redis, sid), "the new owner closes it")
        await wait_for(lambda: no_leases(redis), "the admission lease is given back")
    finally:
        await channel.close()
