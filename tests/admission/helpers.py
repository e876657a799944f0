"""Small helpers for the admission tests: conditions are polled, never slept on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from livegate.admission.control import Admission, admission_keys


async def wait_until(cond: Callable[[], Awaitable[bool]], timeout_s: float = 5.0, what: str = "") -> float:
    """Poll ``cond`` until true; returns the seconds it took. Fails the test after ``timeout_s``."""
    start = time.monotonic()
    while not await cond():
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what or cond}")
        await asyncio.sleep(0.005)
    return time.monotonic() - start


async def live(redis: Any, scope: str) -> int:
    """Leases in the scope's ZSET (expired ones count until a script purges them)."""
    return int(await redis.zcard(admission_keys(scope)[0]))


async def waiting(adm: Admission, scope: str) -> int:
    st = await adm.status(scope)
    assert st is not None
    return st["waiting"]


async def queue_keys_gone(redis: Any, scope: str) -> bool:
    """No waiter is left anywhere in the scope's queue structures."""
    _, _, _, queue, qexp, heads, _, tags, _ = admission_keys(scope)
    return int(await redis.exists(queue, qexp, heads, tags)) == 0


async def cancel_all(tasks: list[asyncio.Task[Any]]) -> None:
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def has_waiting(adm: Admission, scope: str, n: int) -> Callable[[], Awaitable[bool]]:
    """A condition for :func:`wait_until`: exactly ``n`` waiters are queued in the scope."""
    async def cond() -> bool:
        return await waiting(adm, scope) == n
    return cond
