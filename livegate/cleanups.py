"""Work that must run to its end even when the task that started it is cancelled (a session's close, an
admission lease given back, an upstream handle saved), owned by the part of the process that started it.

``asyncio.shield`` alone leaves such work as a task nobody owns: when its starter is cancelled at shutdown, the
work goes on after its owner has closed the Redis connections it uses, and opens a new one that nobody closes.
Here every piece of work is a task of a ``Cleanups``; the owner's close waits for them (bounded) and cancels what
is left *before* it closes its connections::

    ok = await self.cleanups.shielded(self.save(...), "save handle")  # the caller may be cancelled; save is not
    ...
    await self.cleanups.aclose(timeout_s=5.0)  # in the owner's aclose, before redis.aclose()
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
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
        """Wait up to ``timeout_s`` for the work in flight, then cancel what is left and wait for it (bounded:
        a library that swallows a cancellation must not hang a shutdown)."""
        if not self._tasks:
            return
        _, late = await asyncio.wait(set(self._tasks), timeout=timeout_s)
        if not late:
            return
        logger.warning("%s: %d cleanups still running after %.1fs; cancelling them", self._owner, len(late), timeout_s)
        for t in late:
            t.cancel()
        _, stuck = await asyncio.wait(late, timeout=1.0)
        if stuck:
            logger.error("%s: %d cleanups ignored cancellation", self._owner, len(stuck))


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.warning("%s failed: %r", task.get_name(), task.exception())
