"""The cap, waiting, the deadline, and leases that free themselves."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2

from livegate.errors import GatewayError
from livegate.admission.control import ACQUIRE, GIVE_UP, Admission, admission_keys, retry_after_s
from service.status import to_status
from tests.admission.helpers import cancel_all, has_waiting, live, queue_keys_gone, wait_until, waiting

S = "gemini:models/gemini-live-2.5-flash"


async def test_waiter_is_admitted_when_a_lease_is_released(make: Callable[..., Admission], redis: Any) -> None:
    adm = make({"scopes": {S: {"cap": 3}}})
    leases = [await adm.acquire("acme", S, 0) for _ in range(3)]
    assert await live(redis, S) == 3 and await adm.headroom(S) == 0
    fourth = asyncio.create_task(adm.acquire("acme", S, 10))
    await wait_until(has_waiting(adm, S, 1), what="the 4th to queue")
    assert not fourth.done()
    assert await adm.release(leases[0]) is True
    lease = await asyncio.wait_for(fourth, 2)
    assert lease.scope == S and lease.tenant == "acme"
    assert await live(redis, S) == 3
    assert await queue_keys_gone(redis, S)
    assert await adm.release(leases[0]) is False  # idempotent


async def test_deadline_gives_resource_exhausted_with_retry_info(make: Callable[..., Admission], redis: Any) -> None:
    adm = make({"scopes": {S: {"cap": 1}}})
    holder = await adm.acquire("acme", S, 0)
    start = time.monotonic()
    with pytest.raises(GatewayError) as exc:
        await adm.acquire("acme", S, 0.4)
    assert 0.35 <= time.monotonic() - start < 1.5
    err = exc.value
    assert err.code is grpc.StatusCode.RESOURCE_EXHAUSTED and err.reason == "ADMISSION_FULL" and err.retryable
    assert err.retry_after_s is not None and 1.0 <= err.retry_after_s <= 300
    assert S in err.message and "1 of 1" in err.message
    # what the caller receives: ErrorInfo + RetryInfo
    details = {d.type_url.rsplit("/", 1)[1]: d for d in _details(to_status(err))}
    retry = error_details_pb2.RetryInfo()
    details["google.rpc.RetryInfo"].Unpack(retry)
    assert retry.retry_delay.ToNanoseconds() == int(err.retry_after_s * 1e9)
    # the waiter left nothing behind, and the holder is untouched
    assert await queue_keys_gone(redis, S)
    assert await live(redis, S) == 1
    assert await adm.release(holder)


def _details(status: grpc.Status) -> list[Any]:
    from google.rpc import status_pb2

    for key, value in status.trailing_metadata:
        if key == "grpc-status-details-bin":
            return list(status_pb2.Status.FromString(value).details)
    raise AssertionError("no status details")


async def test_retry_after_follows_observed_session_length(make: Callable[..., Admission]) -> None:
    """No history: 5 s. Sessions that last ~nothing: the 1 s floor. The estimate itself: queued waiters x
    mean session length / live sessions, within [1, 300]."""
    adm = make({"scopes": {S: {"cap": 1}}})
    holder = await adm.acquire("acme", S, 0)
    with pytest.raises(GatewayError) as exc:
        await adm.acquire("acme", S, 0)
    assert exc.value.retry_after_s == 5.0
    await adm.release(holder)
    holder = await adm.acquire("acme", S, 0)
    with pytest.raises(GatewayError) as exc:
        await adm.acquire("acme", S, 0)
    assert exc.value.retry_after_s == 1.0
    assert retry_after_s(waiting=10, live=100, hold_ms=60_000) == 6.0
    assert retry_after_s(waiting=1000, live=10, hold_ms=600_000) == 300.0


async def test_unrenewed_lease_frees_its_slot_after_the_ttl(make: Callable[..., Admission], redis: Any) -> None:
    """A SIGKILLed holder simply stops renewing: its slot comes back after the lease TTL, not before."""
    adm = make({"scopes": {S: {"cap": 1}}, "lease_ttl_s": 0.5})
    await adm.acquire("acme", S, 0)  # never renewed, never released
    start = time.monotonic()
    lease = await adm.acquire("other", S, 3)
    took = time.monotonic() - start
    assert 0.4 <= took < 1.5, took
    assert await live(redis, S) == 1
    # a renewed lease outlives many TTLs
    async def heartbeat() -> None:
        while True:
            assert await adm.renew(lease)
            await asyncio.sleep(0.1)

    beat = asyncio.create_task(heartbeat())
    try:
        with pytest.raises(GatewayError):
            await adm.acquire("acme", S, 1.2)
    finally:
        await cancel_all([beat])
    assert await adm.release(lease)


async def test_renew_puts_back_a_lease_that_had_expired(make: Callable[..., Admission], redis: Any) -> None:
    """A holder that renews too late (or after Redis lost data) still holds a real session: it counts again."""
    adm = make({"scopes": {S: {"cap": 2}}, "lease_ttl_s": 0.2})
    lease = await adm.acquire("acme", S, 0)
    await redis.flushall()  # lease gone
    assert await adm.headroom(S) == 2
    assert await adm.renew_many([lease]) == [lease]
    assert await adm.headroom(S) == 1
    assert await adm.renew(lease) is True


async def test_dead_waiter_costs_at_most_one_lease_ttl(make: Callable[..., Admission], redis: Any) -> None:
    """A front SIGKILLed while its caller waited: its queue entry may be granted a slot that nobody picks
    up; that lease expires like any other, and the next waiter gets the slot."""
    adm = make({"scopes": {S: {"cap": 1}}, "lease_ttl_s": 0.5, "waiter_ttl_s": 3})
    sc = adm.config.scopes[S]  # type: ignore[union-attr]
    holder = await adm.acquire("acme", S, 0)
    ghost = await adm._run(ACQUIRE, S, sc, "ghost", "ghost-lease-id", "")  # one poll, then silence
    assert ghost[0] == 0
    real = asyncio.create_task(adm.acquire("acme", S, 5))
    await wait_until(has_waiting(adm, S, 2), what="two waiters")
    await adm.release(holder)  # granted to the ghost (first in line)
    start = time.monotonic()
    lease = await asyncio.wait_for(real, 5)
    assert 0.3 <= time.monotonic() - start < 1.5
    assert lease.tenant == "acme" and await live(redis, S) == 1


async def test_cancelled_waiter_leaves_no_queue_entry(make: Callable[..., Admission], redis: Any) -> None:
    adm = make({"scopes": {S: {"cap": 1}}})
    await adm.acquire("acme", S, 0)
    tasks = [asyncio.create_task(adm.acquire(t, S, 30)) for t in ("a", "b", "b")]
    await wait_until(has_waiting(adm, S, 3), what="three waiters")
    await cancel_all(tasks)
    assert await queue_keys_gone(redis, S)
    assert await live(redis, S) == 1


async def test_give_up_finds_the_waiter_of_an_unanswered_first_acquire(make: Callable[..., Admission],
                                                                        redis: Any) -> None:
    """The caller goes away after its first ACQUIRE ran in Redis but before its reply arrived: the waiter never
    learnt its queue entry, and the give-up (by lease id and tenant) still removes it."""
    adm = make({"scopes": {S: {"cap": 1}}})
    sc = adm.config.scopes[S]  # type: ignore[union-attr]
    holder = await adm.acquire("acme", S, 0)
    other = asyncio.create_task(adm.acquire("acme", S, 30))  # a waiter of the same tenant, queued first
    await wait_until(has_waiting(adm, S, 1), what="a first waiter")
    unanswered = await adm._run(ACQUIRE, S, sc, "acme", "lost-lease-id", "")
    assert unanswered[0] == 0 and await waiting(adm, S) == 2
    await adm._run(GIVE_UP, S, sc, "lost-lease-id", "", "0", "acme")
    assert await waiting(adm, S) == 1
    await adm.release(holder)
    lease = await asyncio.wait_for(other, 5)  # the slot went to the real waiter, not to the lost one
    assert await live(redis, S) == 1 and await adm.release(lease)
    assert await queue_keys_gone(redis, S)


async def test_give_up_fences_an_acquire_that_arrives_after_it(make: Callable[..., Admission], redis: Any) -> None:
    """A cancelled waiter's ACQUIRE can reach Redis after its give-up (retried, or on another connection):
    it must not queue the waiter again nor take a slot."""
    adm = make({"scopes": {S: {"cap": 1}}})
    sc = adm.config.scopes[S]  # type: ignore[union-attr]
    first = await adm._run(ACQUIRE, S, sc, "acme", "late-lease-id", "")
    assert first[0] == 1  # the free slot: granted
    await adm._run(GIVE_UP, S, sc, "late-lease-id", first[1], "0", "acme")
    for member in (first[1], ""):  # a re-poll, and a first ACQUIRE delivered late
        late = await adm._run(ACQUIRE, S, sc, "acme", "late-lease-id", member)
        assert late[0] == -1
    assert await live(redis, S) == 0 and await queue_keys_gone(redis, S)
    lease = await adm.acquire("acme", S, 0)  # the slot is free for a real caller
    assert await live(redis, S) == 1 and await adm.release(lease)


async def test_cancellation_is_never_lost_and_leaves_no_orphan_lease(make: Callable[..., Admission],
                                                                     redis: Any) -> None:
    """Waiters cancelled at random moments while slots are being handed out: each acquire either returns a
    lease or raises CancelledError, and the lease ZSET holds exactly the leases returned (a grant to a
    cancelled waiter is withdrawn). On 3.11 redis-py's send path can swallow a cancellation; acquire re-raises it."""
    import random

    adm = make({"scopes": {S: {"cap": 3}}})
    rng = random.Random(3)
    for _ in range(15):
        held = [await adm.acquire("acme", S, 0) for _ in range(3)]
        tasks = [asyncio.create_task(adm.acquire(f"t{i % 3}", S, 30)) for i in range(12)]
        await wait_until(has_waiting(adm, S, 12))
        releases = [asyncio.create_task(adm.release(h)) for h in held]
        await asyncio.sleep(rng.random() * 0.01)
        for t in tasks:
            t.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*releases)
        got = [r for r in results if not isinstance(r, BaseException)]
        assert all(isinstance(r, asyncio.CancelledError) for r in results if isinstance(r, BaseException))
        members = {m.decode() for m in await redis.zrange(admission_keys(S)[0], 0, -1)}
        assert members == {lease.id for lease in got}
        assert await queue_keys_gone(redis, S)
        for lease in got:
            await adm.release(lease)
