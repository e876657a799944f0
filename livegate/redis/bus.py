"""The data plane's two primitives over Redis Streams.

- :class:`Batcher` coalesces the writes of many coroutines (every session's frames) into one pipeline per
  round trip: under load one ``execute`` carries hundreds of XADDs; idle, a write costs one round trip.
- :class:`WriteWindow` lets one writer (a session's direction) keep several batched writes in flight, so a
  session's throughput is not one frame per pipeline round trip when the loop is busy.
- :class:`StreamBytes` counts the bytes a writer keeps in a stream, so a session's logs are bounded by size as
  well as by entries (docs/redis.md states the bound).
- :func:`read_stream` follows one stream with ``XREAD BLOCK`` and survives connection drops (it resumes
  after the last id it saw), yielding batches.

On one Redis node they go through :mod:`livegate.redis.resp` (one packed write and one deadline per pipeline, held
connections); on a cluster through redis-py's cluster client, in order (:func:`livegate.redis.cluster.execute_ordered`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from livegate import metrics
from livegate.cleanups import raise_if_cancelled
from livegate.redis.cluster import already_written, execute_ordered
from livegate.redis.connect import AnyRedis
from livegate.redis.resp import FastRedis, StreamReader

logger = logging.getLogger(__name__)

Command = tuple[Any, ...]
Entry = tuple[bytes, dict[bytes, bytes]]


class Batcher:
    """Writes command groups in pipelines. ``await submit([...])`` returns that group's replies; a group's
    commands run in order, inside one pipeline, so an XADD to a log and to an inbox cost one round trip."""

    def __init__(self, redis: AnyRedis, *, max_batch: int = 1024, role: str = "") -> None:
        self._redis = redis
        self._fast = None if isinstance(redis, RedisCluster) else FastRedis(redis)
        self._errors = metrics.REDIS_ERRORS.labels(role or "process", "pipeline")
        self._sizes = metrics.REDIS_BATCH_COMMANDS.labels(role or "process")
        self._max_batch = max_batch
        self._pending: list[tuple[Sequence[Command], asyncio.Future[list[Any]]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self.batches = 0
        self.commands = 0

    def __repr__(self) -> str:
        return f"<Batcher pending={len(self._pending)} batches={self.batches} commands={self.commands}>"

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="bus-batcher")

    async def aclose(self) -> None:
        self._closed = True
        self._wake.set()
        if self._task is not None:
            task, self._task = self._task, None
            try:
                await asyncio.wait_for(task, timeout=5.0)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                task.cancel()
        for _, fut in self._pending:
            if not fut.done():
                fut.set_exception(RedisConnectionError("batcher closed"))
        self._pending.clear()
        if self._fast is not None:
            await self._fast.aclose()

    def submit(self, commands: Sequence[Command]) -> asyncio.Future[list[Any]]:
        if self._closed:
            raise RedisConnectionError("batcher closed")
        if self._loop is None:
            self._loop = asyncio.get_running_loop()  # once: on Python 3.11 every lookup is a getpid() call
        fut: asyncio.Future[list[Any]] = self._loop.create_future()
        self._pending.append((commands, fut))
        self._wake.set()
        return fut

    async def _run(self) -> None:
        while True:
            if not self._pending:
                if self._closed:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            groups = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            await self._flush(groups)

    async def _flush(self, groups: list[tuple[Sequence[Command], asyncio.Future[list[Any]]]]) -> None:
        n = sum(len(commands) for commands, _ in groups)
        try:
            if self._fast is None:
                # Redis Cluster: the commands live on several masters. Keep the single-node guarantees (a
                # group's commands in order, commands on one key in submission order) at two round trips
                # per batch in the common case, and retry commands whose connection dropped mid-pipeline
                # (redis-py's cluster pipeline returns those errors as replies instead of retrying).
                replies = await execute_ordered(self._redis, [(cmd, {}) for commands, _ in groups for cmd in commands],
                                                [len(commands) for commands, _ in groups])
            else:
                flat = [cmd for commands, _ in groups for cmd in commands]
                replies = await self._fast.execute(flat)
                # a batch is re-sent after a connection drop; if the first attempt ran (its replies were
                # lost), an explicit-id XADD is now refused as "equal or smaller": our own entry at that id
                # means it was written, not that another writer fenced us
                for i, reply in enumerate(replies):
                    if is_stale_id_error(reply):
                        replies[i] = await already_written(self._redis, flat[i]) or reply  # type: ignore[arg-type]
        except Exception as exc:  # connection lost beyond the retry policy: fail this batch, keep running
            self._errors.inc()
            logger.warning("redis pipeline of %d commands failed: %r", n, exc)
            for _, fut in groups:
                if not fut.done():
                    fut.set_exception(exc)
            return
        self.batches += 1
        self.commands += n
        self._sizes.observe(n)
        i = 0
        for commands, fut in groups:
            part = replies[i : i + len(commands)]
            i += len(commands)
            if not fut.done():
                fut.set_result(part)


class WriteWindow:
    """At most ``size`` of one writer's :meth:`Batcher.submit` futures in flight, oldest first.

    The batcher writes groups in submission order, so a writer need not wait for a write's reply before it
    submits the next: it waits only when ``size`` are unanswered. A failed write raises from the next
    :meth:`push` or :meth:`drain` after it completed (so at most ``size`` later writes are already queued).
    A writer that stops without draining calls :meth:`abandon`, which consumes the replies it will not read.
    """

    __slots__ = ("_size", "_inflight")

    def __init__(self, size: int) -> None:
        self._size = max(1, size)
        self._inflight: deque[asyncio.Future[list[Any]]] = deque()

    def __len__(self) -> int:
        return len(self._inflight)

    async def push(self, fut: asyncio.Future[list[Any]]) -> list[list[Any]]:
        """Add a write; return the replies of the oldest writes that are now complete (waiting for the oldest
        while the window is full)."""
        q = self._inflight
        q.append(fut)
        done: list[list[Any]] = []
        while q and (len(q) > self._size or q[0].done()):
            done.append(await q[0])  # popped once answered: a cancelled wait leaves it for abandon()
            q.popleft()
        return done

    async def drain(self) -> list[list[Any]]:
        """Wait for every write in flight; return their replies, oldest first."""
        done: list[list[Any]] = []
        while self._inflight:
            done.append(await self._inflight[0])
            self._inflight.popleft()
        return done

    def abandon(self) -> None:
        """Stop following the writes in flight (they still run); their errors are not reported."""
        for fut in self._inflight:
            if fut.done():
                _consume(fut)
            else:
                fut.add_done_callback(_consume)
        self._inflight.clear()


class StreamBytes:
    """The bytes one writer keeps in one stream, entry by entry (``n``: the entry's number, its index or seq),
    so the stream can be bounded by size: Redis bounds a stream only by its number of entries (``MAXLEN``).
    Entries trimmed by someone else are forgotten with :meth:`forget_before` once the writer learns of it."""

    __slots__ = ("_entries", "total")

    def __init__(self) -> None:
        self._entries: deque[tuple[int, int]] = deque()
        self.total = 0

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, n: int, size: int) -> None:
        self._entries.append((n, size))
        self.total += size

    def fits(self, size: int, limit: int) -> bool:
        """Whether an entry of ``size`` keeps the stream within ``limit`` (an empty stream takes any entry)."""
        return not self._entries or self.total + size <= limit

    def forget_before(self, n: int) -> None:
        """The stream no longer holds the entries numbered below ``n``."""
        q = self._entries
        while q and q[0][0] < n:
            self.total -= q.popleft()[1]

    def trim_to(self, limit: int) -> int | None:
        """Drop the oldest entries until the rest fit ``limit`` (the newest is always kept); return the number of
        the oldest entry kept if any were dropped (trim the stream below it), else None."""
        q = self._entries
        if self.total <= limit or len(q) < 2:
            return None
        while self.total > limit and len(q) > 1:
            self.total -= q.popleft()[1]
        return q[0][0]


def _consume(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


async def supervise(name: str, loop_fn: Callable[[], Awaitable[None]], *, max_backoff_s: float = 2.0) -> None:
    """Run a process-lifetime loop; if it fails, log it and start it again (capped backoff). Only
    cancellation ends it: a relay loop must never die silently (nor outlive its cancellation, even when a
    library swallowed it: see :func:`livegate.cleanups.raise_if_cancelled`)."""
    backoff = 0.05
    while True:
        try:
            await loop_fn()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            raise_if_cancelled()
            logger.exception("%s failed; restarting in %.2fs", name, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, max_backoff_s)


async def every(interval_s: float, tick: Callable[[], Awaitable[object]], what: str) -> None:
    """Call ``tick`` every ``interval_s`` until cancelled; a failed tick is logged (as ``what`` failed) and the
    next one runs on time. For periodic work whose single failure must not end it (heartbeats, sweeps). A tick
    that returns from a cancellation a library swallowed ends the loop all the same."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await tick()
        except Exception as exc:
            logger.warning("%s failed: %r", what, exc)
        raise_if_cancelled()


def is_stale_id_error(reply: object) -> bool:
    """XADD with an explicit id at or below the stream's last id: the entry was already written (a retried
    pipeline) or another writer owns the stream now (a fenced stale worker)."""
    return isinstance(reply, ResponseError) and "equal or smaller" in str(reply)


async def read_stream(
    redis: AnyRedis, key: str, *, last_id: str = "$", block_ms: int = 1000, count: int = 1024,
    stop: asyncio.Event | None = None,
) -> AsyncIterator[list[Entry]]:
    """Follow ``key`` from ``last_id``, yielding non-empty batches, until ``stop`` is set."""
    if last_id == "$":
        # Resolve "$" once so a reconnect does not skip entries written while we were away.
        info = await redis.xinfo_stream(key) if await redis.exists(key) else None
        last_id = (info["last-generated-id"].decode() if isinstance(info["last-generated-id"], bytes)
                   else str(info["last-generated-id"])) if info else "0-0"
    reader = None if isinstance(redis, RedisCluster) else StreamReader(redis, key)
    last = last_id.encode()
    backoff = 0.05
    try:
        while stop is None or not stop.is_set():
            try:
                if reader is not None:
                    entries = await reader.read(last, count=count, block_ms=block_ms)
                else:
                    reply = await redis.xread({key: last}, count=count, block=block_ms)
                    entries = _entries(reply, key) if reply else []
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                metrics.REDIS_ERRORS.labels("process", "xread").inc()
                logger.warning("reading %s failed (%r); retrying in %.2fs", key, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
                continue
            backoff = 0.05
            if entries:
                last = entries[-1][0]
                yield entries
    finally:
        if reader is not None:
            await reader.aclose()


def _entries(reply: Any, key: str) -> list[Entry]:
    # RESP3: {key: [[(id, fields), ...]]}; RESP2: [[key, [(id, fields), ...]]].
    out: list[Entry] = []
    if isinstance(reply, dict):
        for value in reply.values():
            items = value[0] if len(value) == 1 and isinstance(value[0], list) else value
            out.extend((eid, fields) for eid, fields in items)
        return out
    for _k, items in reply:
        out.extend((eid, fields) for eid, fields in items)
    return out
