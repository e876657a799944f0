"""The event-loop lag monitor of a front or worker: how long the loop could not run anything.

A timer task sleeps ``interval_s`` and measures how late it woke: that lateness is a stall of the loop (a
long GC, blocking work on the loop, CPU throttling, a VM stall, SIGSTOP). Every measure goes to
``livegate_event_loop_lag_seconds{role}``; a stall of ``stall_s`` or more is logged at WARNING with its length.

A watchdog thread tells the two kinds of stall apart and names the culprit: while the loop is stuck, the
thread still runs (it only needs the GIL between bytecodes), so it takes the loop thread's stack once per
stall and the WARNING carries its innermost frames: the synchronous code that held the loop. If the thread
was held up as long as the loop, the whole process was paused (SIGSTOP, a VM or cgroup freeze) or a C call
held the GIL: the line says so instead. A stall is what a process's heartbeat must outlast: longer than the
heartbeat TTL, the fleet declares the process dead (docs/durability.md, "Pauses").

Owned by the process object: ``start()`` in its start, ``aclose()`` in its close (both idempotent). Processes
that share one event loop (``livegate dev``, the in-process test stacks) share its measure: the first monitor
started on a loop measures it (under its role), the others stand by and take over if it closes first.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback

from livegate import metrics

logger = logging.getLogger(__name__)

STACK_FRAMES = 8  # innermost frames of the loop thread logged with a stall

# the monitors started on each running loop; the first one measures it
_on_loop: dict[asyncio.AbstractEventLoop, list[LoopLagMonitor]] = {}


class LoopLagMonitor:
    def __init__(self, role: str, *, interval_s: float = 0.05, stall_s: float = 0.5, name: str = "") -> None:
        self.role = role
        self.name = name or role
        self.interval_s = interval_s
        self.stall_s = stall_s
        self.max_lag_s = 0.0  # the longest stall seen since start
        self.stalls = 0  # stalls of stall_s or more since start
        self._histogram = metrics.EVENT_LOOP_LAG_SECONDS.labels(role)
        self._task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._loop_thread = 0
        self._ticked = 0.0  # monotonic: when the loop last ran the monitor's timer (written by the loop thread)
        self._stack: list[str] = []  # the loop thread's stack taken by the watchdog during the current stall
        self._paused = False  # the watchdog was held up too: the whole process was paused
        self._watched = 0.0  # monotonic: when the watchdog thread last woke

    def __repr__(self) -> str:
        return f"<LoopLagMonitor {self.name} max={self.max_lag_s:.3f}s stalls={self.stalls}>"

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        peers = _on_loop.setdefault(loop, [])
        if self in peers:
            return
        peers.append(self)
        if len(peers) == 1:
            self._measure()

    def _measure(self) -> None:
        self._loop_thread = threading.get_ident()
        self._ticked = self._watched = time.monotonic()
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name=f"looplag-{self.name}")
        self._thread = threading.Thread(target=self._watch, name=f"looplag-watchdog-{self.name}", daemon=True)
        self._thread.start()

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        peers = _on_loop.get(loop, [])
        if self in peers:
            peers.remove(self)
            if self._task is not None and peers:
                peers[0]._measure()  # the loop stays measured while a process on it runs
            if not peers:
                _on_loop.pop(loop, None)
        task, self._task = self._task, None
        self._stopping.set()
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        thread, self._thread = self._thread, None
        if thread is not None:
            await asyncio.to_thread(thread.join, 1.0)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(self.interval_s)
            self.observe(max(0.0, loop.time() - start - self.interval_s))

    def observe(self, lag_s: float) -> None:
        """Record one measure of the loop's lateness (and log it if it is a stall)."""
        self._ticked = time.monotonic()
        self._histogram.observe(lag_s)
        self.max_lag_s = max(self.max_lag_s, lag_s)
        # the watchdog did not run during the stall either (or found itself held up): the process was paused
        paused = self._paused or self._ticked - self._watched >= self.stall_s
        stack = self._stack
        self._stack, self._paused = [], False
        if lag_s < self.stall_s:
            return
        self.stalls += 1
        if paused:  # the stack, if any, was taken as the watchdog got to run again: where the loop was then
            where = ("; the whole process was paused (SIGSTOP, a VM or cgroup freeze, CPU starvation, or a C call "
                     "holding the GIL)" + (", the loop thread then in:\n" + "".join(stack) if stack else ""))
        elif stack:
            where = "; the loop was blocked in:\n" + "".join(stack)
        else:
            where = ""
        logger.warning("%s: event loop stalled for %.2f s%s", self.name, lag_s, where)

    def _watch(self) -> None:
        """The watchdog thread: during a stall, take the loop thread's stack once."""
        period = max(self.interval_s, self.stall_s / 4)
        last = self._watched = time.monotonic()
        while not self._stopping.wait(period):
            now = self._watched = time.monotonic()
            held_up = now - last - period  # how late this thread itself woke
            last = now
            if held_up >= self.stall_s / 2:
                self._paused = True  # nothing ran, this thread included (its stack below is where the loop resumed)
            if now - self._ticked < self.stall_s or self._stack:
                continue
            frame = sys._current_frames().get(self._loop_thread)
            if frame is not None:
                self._stack = traceback.format_stack(frame)[-STACK_FRAMES:]
