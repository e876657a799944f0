"""WriteWindow: a session keeps several batched writes in flight, in order, and still sees every reply."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from livegate.redis.bus import Batcher, WriteWindow, is_stale_id_error


async def test_writes_land_in_order_with_at_most_size_unanswered(redis: Any) -> None:
    batcher = Batcher(redis, role="test")
    await batcher.start()
    window = WriteWindow(3)
    answered: list[bytes] = []
    try:
        for i in range(1, 21):
            for replies in await window.push(batcher.submit([("XADD", "wlog", f"0-{i}", "m", str(i))])):
                answered.append(replies[0])
            assert len(window) <= 3
        answered.extend(replies[0] for replies in await window.drain())
    finally:
        await batcher.aclose()
    assert len(window) == 0
    assert answered == [f"0-{i}".encode() for i in range(1, 21)]
    assert [e[0] for e in await redis.xrange("wlog")] == answered


async def test_a_refused_write_is_reported_by_a_later_push_or_the_drain(redis: Any) -> None:
    await redis.xadd("wfenced", {"m": "other writer"}, id="0-5")
    batcher = Batcher(redis, role="test")
    await batcher.start()
    window = WriteWindow(4)
    seen: list[Any] = []
    try:
        for i in (4, 6, 7):  # 0-4 is at or below the stream's last id: fenced
            seen.extend(r[0] for r in await window.push(batcher.submit([("XADD", "wfenced", f"0-{i}", "m", "x")])))
        seen.extend(r[0] for r in await window.drain())
    finally:
        await batcher.aclose()
    assert is_stale_id_error(seen[0])
    assert seen[1:] == [b"0-6", b"0-7"]


async def test_a_full_window_raises_the_oldest_writes_error() -> None:
    loop = asyncio.get_running_loop()
    window = WriteWindow(2)
    failed: asyncio.Future[list[Any]] = loop.create_future()
    assert await window.push(failed) == []
    assert await window.push(loop.create_future()) == []
    failed.set_exception(RedisConnectionError("redis is gone"))
    with pytest.raises(RedisConnectionError):
        await window.push(loop.create_future())  # full: waits for the oldest, which failed


async def test_abandoned_writes_that_fail_are_not_reported_as_unretrieved() -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, ctx: reported.append(ctx))
    try:
        window = WriteWindow(4)
        futs: list[asyncio.Future[list[Any]]] = [loop.create_future() for _ in range(3)]
        for f in futs:
            assert await window.push(f) == []
        futs[0].set_exception(RedisConnectionError("failed before the writer stopped"))
        window.abandon()  # the writer stops with three writes in flight
        futs[1].set_exception(RedisConnectionError("failed after the writer stopped"))
        futs[2].set_result([b"0-1"])
        await asyncio.sleep(0)  # the done callbacks run
        assert len(window) == 0
        del futs, f, window
        gc.collect()
    finally:
        loop.set_exception_handler(previous)
    assert reported == []
