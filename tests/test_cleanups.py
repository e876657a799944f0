"""livegate.cleanups: work that outlives a cancelled caller is owned, and its owner's close waits for it; a
cancellation a library swallowed is raised all the same (loops, and livegate's Redis clients)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from redis.asyncio import Redis

from livegate.redis.bus import every, supervise
from livegate.cleanups import Cleanups, wait_bounded
from livegate.redis.connect import LiveRedis, connect


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


class _SwallowsOneCancellation:
    """A tick that does what redis-py 8.1 on Python 3.11 sometimes does: return normally from a cancelled task
    (once: a test that fails must still be able to stop it)."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.swallowed = False

    async def __call__(self) -> None:
        self.started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            if self.swallowed:
                raise
            self.swallowed = True


async def _cancel_and_wait(task: asyncio.Task[None], tick: _SwallowsOneCancellation) -> bool:
    await tick.started.wait()
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=1.0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return bool(done) and tick.swallowed


async def test_a_periodic_loop_ends_when_a_tick_swallowed_its_cancellation() -> None:
    """A front's heartbeat loop kept running after its close had cancelled it (and the close waited for it for
    ever): every() re-raises the cancellation its tick lost."""
    tick = _SwallowsOneCancellation()
    assert await _cancel_and_wait(asyncio.create_task(every(0.001, tick, "heartbeat")), tick)


async def test_a_supervised_loop_is_not_restarted_after_a_swallowed_cancellation() -> None:
    tick = _SwallowsOneCancellation()
    runs: list[int] = []

    async def loop_fn() -> None:
        runs.append(1)
        await tick()
        raise ConnectionError("the read failed as the task was cancelled")

    assert await _cancel_and_wait(asyncio.create_task(supervise("outbox", loop_fn)), tick)
    assert runs == [1]


async def test_wait_bounded_names_what_is_still_running(caplog: pytest.LogCaptureFixture) -> None:
    quick = asyncio.create_task(asyncio.sleep(0), name="quick")
    stuck = asyncio.create_task(asyncio.Event().wait(), name="front-keepalive")
    with caplog.at_level(logging.ERROR, logger="livegate.cleanups"):
        late = await wait_bounded([quick, stuck], 0.05, "front f1: loops ignored their cancellation")
    assert late == {stuck} and quick.done()
    assert any("front f1: loops ignored their cancellation after 0.1s: 1 task(s) (front-keepalive)" in r.getMessage()
               for r in caplog.records)
    stuck.cancel()
    assert await wait_bounded([], 1.0, "nothing") == set()


class _SwallowingRedis(Redis):
    """redis-py as Python 3.11's ``wait_for`` can make it: a cancellation that arrives as a command's write
    completes is lost, and the command runs and returns its reply."""

    started: asyncio.Event

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        self.started.set()
        try:
            await asyncio.sleep(10)  # the cancellation arrives here...
        except asyncio.CancelledError:
            pass  # ...and is lost
        return await super().execute_command(*args, **options)


class _LiveOverSwallowing(LiveRedis, _SwallowingRedis):
    """livegate's client on top of that behaviour."""


@pytest.mark.parametrize("client_class, raised", [(_SwallowingRedis, False), (_LiveOverSwallowing, True)])
async def test_a_command_does_not_return_normally_to_a_cancelled_task(redis_url: str, client_class: Any,
                                                                      raised: bool) -> None:
    """The command still ran (Redis has the key), but livegate's client raises the cancellation the layer
    below lost, as if it had arrived while the caller waited for the reply; plain redis-py returns."""
    client = client_class.from_url(redis_url)
    client.started = asyncio.Event()
    try:
        await client.delete("lg:test:swallow")
        client.started.clear()
        task = asyncio.create_task(client.set("lg:test:swallow", "1"))
        await client.started.wait()
        task.cancel()
        outcome = await asyncio.gather(task, return_exceptions=True)
        assert isinstance(outcome[0], asyncio.CancelledError) is raised
        async with Redis.from_url(redis_url) as plain:
            assert await plain.get("lg:test:swallow") == b"1"
    finally:
        await client.aclose()


async def test_a_cleanup_in_an_already_cancelled_task_still_runs_its_commands(redis_url: str) -> None:
    """Only a cancellation that arrives during the command is raised: a task that was cancelled before (a
    ``finally`` giving a lease back) keeps working."""
    client = connect(redis_url)
    done: list[object] = []

    async def holder() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            done.append(await client.set("lg:test:cleanup", "1"))
            async with client.pipeline(transaction=False) as pipe:
                done.append(await pipe.get("lg:test:cleanup").delete("lg:test:cleanup").execute())

    task = asyncio.create_task(holder())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await client.aclose()
    assert done == [True, [b"1", 1]]
