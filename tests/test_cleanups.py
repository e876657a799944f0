"""livegate.cleanups: work that outlives a cancelled caller is owned, and its owner's close waits for it."""

from __future__ import annotations

import asyncio
import logging

import pytest

from livegate.cleanups import Cleanups


async def test_shielded_work_outlives_its_cancelled_caller_and_close_waits_for_it() -> None:
    cleanups = Cleanups("owner")
    release = asyncio.Event()
    done: list[str] = []

    async def work() -> str:
        await release.wait()
        done.append("written")
        return "ok"

    caller = asyncio.create_task(cleanups.shielded(work(), "write"))
    await asyncio.sleep(0)  # the caller is awaiting the work
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert len(cleanups) == 1 and not done  # the caller left at once; the work goes on

    closing = asyncio.create_task(cleanups.aclose(timeout_s=5.0))
    await asyncio.sleep(0.01)
    assert not closing.done()  # close waits for the work in flight
    release.set()
    await closing
    assert done == ["written"] and len(cleanups) == 0


async def test_shielded_returns_the_result_and_raises_the_failure_to_its_caller() -> None:
    cleanups = Cleanups("owner")

    async def ok() -> int:
        return 7

    async def fails() -> None:
        raise ValueError("redis said no")

    assert await cleanups.shielded(ok(), "ok") == 7
    with pytest.raises(ValueError, match="redis said no"):
        await cleanups.shielded(fails(), "fails")
    assert len(cleanups) == 0


async def test_close_cancels_work_still_running_after_its_timeout() -> None:
    cleanups = Cleanups("owner")
    cancelled = asyncio.Event()

    async def stuck() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    task = cleanups.start(stuck(), "stuck")
    await cleanups.aclose(timeout_s=0.05)
    assert cancelled.is_set() and task.cancelled() and len(cleanups) == 0


async def test_started_work_that_fails_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    cleanups = Cleanups("front f1")

    async def fails() -> None:
        raise ConnectionError("Redis went away")

    with caplog.at_level(logging.WARNING, logger="livegate.cleanups"):
        task = cleanups.start(fails(), "detach s-1")
        await asyncio.wait([task])
        await asyncio.sleep(0)  # done callbacks run on the next loop iteration
    assert any("front f1: detach s-1 failed" in r.getMessage() and "Redis went away" in r.getMessage()
               for r in caplog.records)
