"""Work that must run to its end even when the task that started it is cancelled (a session's close, an
admission lease given back, an upstream handle saved), owned by the part of the process that started it.

``asyncio.shield`` alone leaves such work as a task nobody owns: when its starter is cancelled at shutdown, the
work goes on after its owner has closed the Redis connections it uses, and opens a new one that nobody closes.
Here every piece of work is a task of a ``Cleanups``; the owner's close waits for them (bounded) and cancels what
is left *before* it closes its connections::

    ok = await self.cleanups.shielded(self.save(...), "save handle")  # the caller may be cancelled; save is not
    ...
    await self.cleanups.aclose(timeout_s=5.0)  # in the owner's aclose, before redis.aclose()

Helpers for the same shutdowns: :func:`keeping_cancellation` awaits a library call that may swallow its
task's cancellation and raises it all the same (livegate's Redis clients wrap every command in it);
:func:`raise_if_cancelled` is the same check for a loop that was told to stop; :func:`wait_bounded` waits for
tasks to end, with a limit, and names what is still running (a task that ignored its cancellation must not
hang a shutdown).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Coroutine, Iterable
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Cleanups:
    def __init__(self, owner: str) -> None:
        self._owner = owner
        self._tasks: set[asyncio.Task[Any]] = set()

    def __repr__(self) -> str:
        return f"<Cleanups {self._owner} running={len(self._tasks)}>"

    def __len__(self) -> int:
        return len(self._tasks)

    def start(self, coro: Coroutine[Any, Any, T], what: str) -> asyncio.Task[T]:
        """Run ``coro`` as a task owned here that nobody awaits: a failure is logged when it ends."""
        task = self._spawn(coro, what)
        task.add_done_callback(_log_failure)
        return task

    async def shielded(self, coro: Coroutine[Any, Any, T], what: str) -> T:
        """``await coro``; if the caller is cancelled, it gets its ``CancelledError`` at once and ``coro`` goes on
        to its end (or to this owner's close). A failure is raised to the caller, or dropped if it left."""
        return await asyncio.shield(self._spawn(coro, what))

    def _spawn(self, coro: Coroutine[Any, Any, T], what: str) -> asyncio.Task[T]:
        task = asyncio.get_running_loop().create_task(coro, name=f"{self._owner}: {what}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def aclose(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for the work in flight, then cancel what is left and wait for it (bounded)."""
        late = await wait_bounded(self._tasks, timeout_s, f"{self._owner}: cleanups still running; cancelling them",
                                  level=logging.WARNING)
        for t in late:
            t.cancel()
        await wait_bounded(late, 1.0, f"{self._owner}: cleanups ignored cancellation")


async def wait_bounded(tasks: Iterable[asyncio.Task[Any]], timeout_s: float, what: str, *,
                       level: int = logging.ERROR) -> set[asyncio.Task[Any]]:
    """Wait up to ``timeout_s`` for ``tasks`` to end; log ``what`` with those still running, and return them."""
    pending = set(tasks)
    if not pending:
        return set()
    _, late = await asyncio.wait(pending, timeout=timeout_s)
    if late:
        names = ", ".join(sorted(t.get_name() for t in late)[:5])
        logger.log(level, "%s after %.1fs: %d task(s) (%s)", what, timeout_s, len(late), names)
    return late


def raise_if_cancelled(task: asyncio.Task[Any] | None = None, baseline: int = 0) -> None:
    """Re-raise a cancellation that was lost on the way. On Python 3.11 ``asyncio.wait_for`` swallows a
    cancellation that arrives as the awaited call completes (redis-py 8.1's send path uses it; livegate's Redis
    clients raise it at the command, :func:`keeping_cancellation`); the task's ``cancelling()`` count still
    shows it. Loops that call into other libraries check it too. ``baseline``: the count when the caller's own
    scope began (0 for a task's whole life)."""
    task = task or asyncio.current_task()
    if task is not None and task.cancelling() > baseline:
        raise asyncio.CancelledError()


async def keeping_cancellation(aw: Awaitable[T]) -> T:
    """``await aw``; if the task was cancelled meanwhile and ``aw`` returned normally all the same, raise the
    ``CancelledError`` it lost (see :func:`raise_if_cancelled`). A cancellation that came before the call (a
    cleanup running in a cancelled task) is not raised again."""
    task = asyncio.current_task()
    baseline = task.cancelling() if task is not None else 0
    result = await aw
    raise_if_cancelled(task, baseline)
    return result


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.warning("%s failed: %r", task.get_name(), task.exception())
