"""Fair queueing across tenants, guaranteed shares, borrowing. Deterministic: slots are freed one at a time and
each admission is awaited before the next release, and only the waiter first in the fair order can be granted
a slot whatever the timing of the polls."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from livegate.errors import GatewayError
from livegate.admission.control import Admission, Lease
from tests.admission.helpers import cancel_all, has_waiting, live, queue_keys_gone, wait_until

S = "vertex:my-proj/us-central1/live-2.5"


async def _queue(adm: Admission, tenant: str, n: int, admitted: list[Lease], tasks: list[asyncio.Task[Any]],
                 already: int) -> None:
    """Queue ``n`` waiters of ``tenant`` one after the other (each is in the queue before the next starts)."""
    async def one() -> None:
        admitted.append(await adm.acquire(tenant, S, 30))

    for i in range(n):
        tasks.append(asyncio.create_task(one()))
        await wait_until(has_waiting(adm, S, already + i + 1), what=f"{tenant} waiter {i}")


async def _release_one_by_one(adm: Admission, held: list[Lease], admitted: list[Lease], n: int) -> list[str]:
    order: list[str] = []
    for _ in range(n):
        before = len(admitted)
        await adm.release(held.pop(0))
        await wait_until(lambda: _grown(admitted, before), what="one admission")
        assert len(admitted) == before + 1
        order.append(admitted[-1].tenant)
        held.append(admitted[-1])
    return order


async def _grown(items: list[Any], n: int) -> bool:
    return len(items) > n


async def test_round_robin_across_tenants_fifo_within(make: Callable[..., Admission], redis: Any) -> None:
    """A holds every slot and queues 50 more; B then queues 3. As slots free up, B is served every other
    time instead of after A's 50: A, B, A, B, A, B, then A's."""
    adm = make({"scopes": {S: {"cap": 4}}})
    held = [await adm.acquire("a-flood", S, 0) for _ in range(4)]
    admitted: list[Lease] = []
    tasks: list[asyncio.Task[Any]] = []
    try:
        await _queue(adm, "a-flood", 50, admitted, tasks, 0)
        await _queue(adm, "b-calm", 3, admitted, tasks, 50)
        order = await _release_one_by_one(adm, held, admitted, 10)
        assert order == ["a-flood", "b-calm"] * 3 + ["a-flood"] * 4
        assert await live(redis, S) == 4
        # FIFO within A: the first A waiters queued are the ones admitted
        ids = [lease.id for lease in admitted if lease.tenant == "a-flood"]
        assert len(ids) == 7
    finally:
        await cancel_all(tasks)
    assert await queue_keys_gone(redis, S)


async def test_fifo_within_a_tenant(make: Callable[..., Admission]) -> None:
    adm = make({"scopes": {S: {"cap": 1}}})
    held = [await adm.acquire("acme", S, 0)]
    done: list[int] = []
    tasks: list[asyncio.Task[Any]] = []

    async def one(i: int) -> None:
        lease = await adm.acquire("acme", S, 30)
        done.append(i)
        held.append(lease)

    try:
        for i in range(8):
            tasks.append(asyncio.create_task(one(i)))
            await wait_until(has_waiting(adm, S, i + 1))
        for i in range(8):
            await adm.release(held.pop(0))
            await wait_until(lambda: _grown(done, i))
        assert done == list(range(8))
    finally:
        await cancel_all(tasks)


async def test_flood_cannot_take_anothers_guaranteed_share(make: Callable[..., Admission], redis: Any) -> None:
    """cap 4, B guaranteed 2. A (no guarantee) floods 30 waiters: it borrows only the 2 unreserved slots.
    B then gets its 2 at once, although 28 of A's waiters queued first; a third for B waits like anyone."""
    adm = make({"scopes": {S: {"cap": 4, "tenants": {"b-calm": {"guaranteed": 2}}}}})
    admitted: list[Lease] = []
    tasks: list[asyncio.Task[Any]] = []
    try:
        for i in range(30):
            tasks.append(asyncio.create_task(_append(adm, "a-flood", admitted)))
        await wait_until(has_waiting(adm, S, 28), what="A holding 2, 28 queued")
        # two of A's acquires were granted: wait until those coroutines have returned their leases
        async def two_admitted() -> bool:
            return len(admitted) == 2

        await wait_until(two_admitted, what="A's two admitted acquires returned")
        assert await live(redis, S) == 2
        b = [await adm.acquire("b-calm", S, 0) for _ in range(2)]  # deadline 0: no waiting at all
        assert await live(redis, S) == 4
        with pytest.raises(GatewayError) as exc:
            await adm.acquire("b-calm", S, 0)
        assert exc.value.reason == "ADMISSION_FULL"
        # B ends one session: the slot stays reserved for B (A's waiters are not granted it)...
        await adm.release(b[0])
        with pytest.raises(GatewayError):
            await adm.acquire("a-flood", S, 0)
        assert await live(redis, S) == 3 and len(admitted) == 2
        # ...and B gets it back immediately
        b[0] = await adm.acquire("b-calm", S, 0)
        # when one of A's own sessions ends, A's next waiter (FIFO) gets that slot
        before = len(admitted)
        await adm.release(admitted[0])
        await wait_until(lambda: _grown(admitted, before), what="A's next waiter")
    finally:
        await cancel_all(tasks)
    assert await queue_keys_gone(redis, S)


async def _append(adm: Admission, tenant: str, out: list[Lease]) -> None:
    out.append(await adm.acquire(tenant, S, 30))


async def test_guaranteed_tenant_is_served_before_a_borrower_queued_earlier(
        make: Callable[..., Admission]) -> None:
    """cap 3, A and B guaranteed 1 each. A holds 2 (its own + the one unreserved slot); the last slot is B's
    reservation. A's next waiter queues first and is refused, yet B, queued behind it, is admitted at once:
    a refused tenant is skipped, it does not block the line."""
    adm = make({"scopes": {S: {"cap": 3, "tenants": {"a-flood": {"guaranteed": 1}, "b-calm": {"guaranteed": 1}}}}})
    [await adm.acquire("a-flood", S, 0) for _ in range(2)]
    got: list[Lease] = []
    task = asyncio.create_task(_append(adm, "a-flood", got))
    try:
        await wait_until(has_waiting(adm, S, 1))
        b = await adm.acquire("b-calm", S, 0)
        assert b.tenant == "b-calm" and got == []
        assert await adm.headroom(S) == 0 and await has_waiting(adm, S, 1)()
    finally:
        await cancel_all([task])


async def test_borrowing_unused_guarantees_up_to_the_tenant_max(make: Callable[..., Admission]) -> None:
    """cap 6: A guaranteed 1 max 4, B guaranteed 2. A may borrow beyond 1 while it leaves B's 2 free, and never
    beyond its max 4; then B still gets its 2."""
    adm = make({"scopes": {S: {"cap": 6, "tenants": {"a": {"guaranteed": 1, "max": 4}, "b": {"guaranteed": 2}}}}})
    a = [await adm.acquire("a", S, 0) for _ in range(4)]  # 1 guaranteed + 3 borrowed (6 - 2 reserved = 4)
    with pytest.raises(GatewayError) as exc:
        await adm.acquire("a", S, 0)
    assert "maximum of 4" in exc.value.message
    b = [await adm.acquire("b", S, 0) for _ in range(2)]
    assert await adm.headroom(S) == 0
    # B borrows too once A leaves room beyond the reservations (none left here)
    with pytest.raises(GatewayError):
        await adm.acquire("b", S, 0)
    await adm.release(a[0])
    b.append(await adm.acquire("b", S, 0))  # borrowed: A is at 3 >= its guarantee, nothing reserved


async def test_unlisted_tenants_share_what_guarantees_leave(make: Callable[..., Admission]) -> None:
    """cap 5, B guaranteed 3: unlisted tenants together get at most 2 while B is idle, each limited by
    default_tenant.max 1."""
    adm = make({"scopes": {S: {"cap": 5, "tenants": {"b": {"guaranteed": 3}}, "default_tenant": {"max": 1}}}})
    await adm.acquire("x", S, 0)
    with pytest.raises(GatewayError) as exc:
        await adm.acquire("x", S, 0)
    assert "maximum of 1" in exc.value.message
    await adm.acquire("y", S, 0)
    with pytest.raises(GatewayError):
        await adm.acquire("z", S, 0)  # 2 + 3 reserved = 5
    for _ in range(3):
        await adm.acquire("b", S, 0)
    assert await adm.headroom(S) == 0
