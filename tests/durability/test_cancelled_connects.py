"""A caller cancelled at any point of Connect (a new session) or of a reattach leaves nothing behind: once the
reattach grace is over there is no session record or log, no admission lease, no entry in the front's
sessions or timers and no relay on a worker. The server-side handler is cancelled after k event-loop steps,
for every k from the moment the front starts reading the first message until the stream is relaying: every
await of Connect gets its cancellation (gRPC cancels the handler the same way when the caller cancels)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from livegate.admission.control import scope_of
from livegate.redis import keys
from livegate.v1 import gateway_pb2 as gw
from livegate.v1 import gateway_pb2_grpc
from tests.durability.test_lost_callers import no_leases, setup_msg, wait_for

MODEL = "gemini-live-2.5-flash"
SCOPE = scope_of("default", MODEL)
GRACE_S = 0.3
STEPS = 80  # more event-loop steps than a Connect takes to reach the relay in-process


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # a short lease_ttl_s bounds the test should a lease ever be held by nobody (the heartbeat's own race with a
    # session's end is fixed and tested below)
    return {"reattach_grace_s": GRACE_S, "setup_timeout_s": 5.0,
            "admission_json": json.dumps({"scopes": {SCOPE: {"cap": 1000}}, "lease_ttl_s": 2})}


@pytest.fixture
async def stub(stack: dict[str, Any]) -> AsyncIterator[Any]:
    async with grpc.aio.insecure_channel(stack["front"].address) as channel:
        yield gateway_pb2_grpc.LiveGatewayStub(channel)


async def cancel_after(stack: dict[str, Any], stub: Any, first: gw.ClientMessage, steps: int) -> None:
    """Open a Connect, send ``first``, and cancel the front's handler ``steps`` loop turns after it started."""
    front = stack["front"]
    before = set(front.calls)
    call = stub.Connect()
    await call.write(first)
    async with asyncio.timeout(5):
        while not (set(front.calls) - before):
            await asyncio.sleep(0)
    (handler,) = set(front.calls) - before
    for _ in range(steps):
        await asyncio.sleep(0)
    handler.cancel()
    call.cancel()
    async with asyncio.timeout(5):
        while handler in front.calls:
            await asyncio.sleep(0.001)


async def left_behind(stack: dict[str, Any]) -> list[str]:
    redis = stack["redis"]
    front = stack["front"]
    left = [k.decode() for k in await redis.keys("lg:{s-*")]
    if await redis.zcard(keys.tenant_sessions("default")):
        left.append("tenant sessions")
    if not await no_leases_in(redis):
        left.append("leases")
    left += [f"front session {sid}" for sid in front.sessions] + [f"timer {t}" for t in front._grace_timers]
    left += [f"relay {sid}" for w in stack["workers"] for sid in w.sessions]
    return left


async def nothing_left(stack: dict[str, Any]) -> bool:
    return not await left_behind(stack)


async def assert_nothing_left(stack: dict[str, Any]) -> None:
    """Bounded: the grace, plus a worker noticing it (a session created last is claimed, then ends)."""
    try:
        await wait_for(lambda: nothing_left(stack), "no session, lease, front entry or relay is left", timeout_s=15)
    except AssertionError:
        raise AssertionError(f"left behind: {await left_behind(stack)}") from None


async def no_leases_in(redis: Any) -> bool:
    return int(await redis.zcard(keys.admission_keys(SCOPE)[0])) == 0


async def test_a_connect_cancelled_at_any_point_leaves_nothing_behind(stack: dict[str, Any], stub: Any) -> None:
    for steps in range(STEPS):
        await cancel_after(stack, stub, setup_msg(GRACE_S), steps)
    await assert_nothing_left(stack)
    assert await no_leases(stack["redis"])


async def test_connects_whose_deadline_expires_at_any_point_leave_nothing_behind(stack: dict[str, Any],
                                                                                 stub: Any) -> None:
    """The same through the caller's own deadline (an ordinary client timeout), from 1 ms to 100 ms."""
    for ms in range(1, 101, 3):
        call = stub.Connect(timeout=ms / 1000)
        try:
            await call.write(setup_msg(GRACE_S))
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            pass  # the deadline was over before the write
        assert await call.code() in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.OK)
    await assert_nothing_left(stack)


async def test_a_reattach_cancelled_at_any_point_leaves_nothing_behind(stack: dict[str, Any], stub: Any) -> None:
    call = stub.Connect()
    await call.write(setup_msg(2.0))  # each lost reattach starts this grace again
    info = (await call.read()).session
    async with asyncio.timeout(10):
        while not (await call.read()).HasField("setup_complete"):
            pass
    call.cancel()
    redis = stack["redis"]
    await wait_for(lambda: _detached(redis, info.session_id), "the first caller is detached")
    reattach = gw.ClientMessage(reattach=gw.Reattach(session_id=info.session_id, reattach_token=info.reattach_token,
                                                     last_seq=1))
    for steps in range(STEPS):
        await cancel_after(stack, stub, reattach, steps)
        # the next reattach finds it detached again, or the test is over (it ended: nothing can be left)
        await wait_for(lambda: _detached_or_gone(redis, info.session_id), f"detached again after {steps} steps",
                       timeout_s=5)
    assert await _detached(redis, info.session_id), "the reattaches kept the session (the loop covered them)"
    await assert_nothing_left(stack)


async def _detached(redis: Any, sid: str) -> bool:
    return await redis.hget(keys.session_meta(sid), "state") == b"detached"


async def _detached_or_gone(redis: Any, sid: str) -> bool:
    state = await redis.hget(keys.session_meta(sid), "state")
    return state in (None, b"detached")


async def test_a_lease_given_back_as_the_heartbeat_renews_it_stays_given_back(stack: dict[str, Any],
                                                                             stub: Any) -> None:
    """A session gives its lease back before its relay leaves the worker; a heartbeat renewal that runs in
    between used to put the lease back, holding a slot for lease_ttl_s with nobody there."""
    from livegate.admission import Lease

    call = stub.Connect()
    m = gw.ClientMessage()
    m.setup.model = MODEL
    await call.write(m)
    sid = (await call.read()).session.session_id
    await call.read()  # setup_complete: a worker relays it
    [(worker, relay)] = [(w, w.sessions[sid]) for w in stack["workers"] if sid in w.sessions]
    lease = Lease.parse(relay.record.lease)
    await worker.end_session(relay, None)  # keys deleted, lease given back; the relay is still listed
    assert relay.sid in worker.sessions and await no_leases_in(stack["redis"])
    await worker.heartbeat.beat()  # renews the leases of the listed sessions
    assert await no_leases_in(stack["redis"]), f"lease {lease.id} put back by the renewal"
    call.cancel()
