"""One caller's stream on the front: client messages into Redis, server messages out to gRPC.

Client -> worker: each message gets the next client index and is written to the session's ``c2s`` log
(id ``0-<index>``) and, once the owner is known, the owning worker's inbox, in one pipeline.
Worker -> client: the outbox reader hands entries to :meth:`FrontSession.offer`; they are written to the
caller in ``seq`` order, gaps (a delivery lost in a handover) filled from the ``s2c`` log, duplicates
dropped. The front never parses server messages: it forwards the worker's serialized bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from typing import TYPE_CHECKING, Any

import grpc
import orjson

from livegate.redis import keys, records
from livegate import metrics
from livegate.admission.control import Lease
from livegate.redis.bus import StreamBytes, WriteWindow, is_stale_id_error
from livegate.errors import GatewayError, unavailable
from livegate.v1 import gateway_pb2 as gw
from service.budget import SessionBudget, measure, refusal
from service.status import code_from_int
from service.validate import validate_message

if TYPE_CHECKING:
    from service.server import Front

logger = logging.getLogger(__name__)


@dataclasses.dataclass(slots=True)
class Delivery:
    seq: int
    data: bytes
    worker: str
    end: bool = False
    sync: bool = False  # the worker's current seq, after an attach: fill up to it from the log
    code: int = 0
    error: bytes = b""
    t_ns: int = 0  # when the worker received it from the upstream


class FrontSession:
    def __init__(self, front: Front, sid: str, tenant: str, *, last_index: int = 0, last_seq: int = 0,
                 worker: str = "", model: str = "") -> None:
        self.front = front
        self.sid = sid
        self.tenant = tenant
        self.model = model
        self._s2c_latency = metrics.ADDED_LATENCY_SECONDS.labels("s2c")
        self._m_kind: dict[str, tuple[Any, Any]] = {}
        self.index = last_index
        self.last_seq = last_seq
        self.worker = worker
        self.epoch = 0  # the highest owner epoch seen in the outbox: entries of an older owner are stale
        self.queue: asyncio.Queue[Delivery] = asyncio.Queue(maxsize=front.settings.session_queue_len)
        self._writes = WriteWindow(front.settings.write_window)  # the caller's messages on their way to Redis
        self._last_write: asyncio.Future[list[Any]] | None = None  # every earlier write completes before it
        self.overflowed = False
        self.closed = False  # being closed, or taken over by another stream: not detached when this stream ends
        self.superseded = False  # another stream took the session over (a reattach): this one is ended
        self.created = time.monotonic()
        self.grace_s = front.settings.reattach_grace_s  # kept this long for a reattach when the caller is lost
        self.budget = SessionBudget(front.budgets, tenant)
        # the client bytes this session keeps in its c2s log (bounded: c2s_log_max_bytes); a reattached session
        # learns what its log holds before its first write
        self._log = StreamBytes()
        self._log_known = last_index == 0

    def __repr__(self) -> str:
        return f"<FrontSession {self.sid} worker={self.worker or '-'} index={self.index} seq={self.last_seq}>"

    # -- worker -> caller ------------------------------------------------------------------------------

    def offer(self, f: dict[bytes, bytes]) -> None:
        if b"f" in f:  # an end from a reattach through front f: it took this stream's session over
            self.front.cleanups.start(self.hand_over_to(f[b"f"].decode()), f"hand {self.sid} over")
            return
        epoch = f.get(b"ep")  # absent: a worker of an older version (a rolling upgrade); taken as is
        if epoch is not None:
            if int(epoch) < self.epoch:  # from a worker that lost the session: a claim raised the epoch since
                metrics.STALE_ENTRIES.inc()
                return
            self.epoch = int(epoch)
        if f.get(b"k") == b"end":
            d = Delivery(0, b"", f.get(b"w", b"").decode(), end=True, code=int(f.get(b"c", 0)), error=f.get(b"e", b""))
            if self.queue.full():  # the end must get through: make room, the caller is cut anyway
                self.overflowed = True
                self.queue.get_nowait()
            self.queue.put_nowait(d)
            return
        if f.get(b"k") == b"sync":
            d = Delivery(int(f.get(b"q", 0)), b"", f.get(b"w", b"").decode(), sync=True)
        else:
            d = Delivery(int(f[b"q"]), f[b"m"], f.get(b"w", b"").decode(), t_ns=int(f.get(b"t", 0)))
        try:
            self.queue.put_nowait(d)
        except asyncio.QueueFull:
            self.overflowed = True

    def notice(self, data: bytes) -> None:
        """A gateway message outside the session's sequence (seq 0), e.g. ``drain``."""
        try:
            self.queue.put_nowait(Delivery(0, data, ""))
        except asyncio.QueueFull:
            self.overflowed = True

    async def pump_server(self, context: grpc.aio.ServicerContext, *, first_timeout_s: float | None,
                          replay: bool = False) -> GatewayError | None:
        """Write server messages to the caller until the session ends; return how it ended. ``replay``: first
        write everything the session's log holds after ``last_seq`` (a reattach)."""
        if replay:
            before = self.last_seq
            await self._fill(context, None)
            metrics.REPLAYED_MESSAGES.inc(self.last_seq - before)
        timeout: float | None = first_timeout_s
        while True:
            if self.superseded:
                return reattached_elsewhere()
            if self.overflowed:
                return GatewayError(grpc.StatusCode.RESOURCE_EXHAUSTED, "SLOW_READER",
                                    "the caller did not read server messages fast enough; the gateway buffer "
                                    f"({self.queue.maxsize} messages) overflowed. The session is kept: reattach "
                                    "with the last seq you read to receive the rest", retryable=True, retry_after_s=0.0)
            try:
                if timeout:  # the first message only; asyncio.timeout, not wait_for (3.11: can swallow a cancel)
                    async with asyncio.timeout(timeout):
                        d = await self.queue.get()
                else:
                    d = await self.queue.get()
            except TimeoutError:
                return unavailable(f"no worker took the session within {first_timeout_s:.0f}s; the gateway is "
                                   "at capacity or its workers are down; retry", "NO_WORKER", retry_after_s=2.0)
            timeout = None
            if self.superseded:
                return reattached_elsewhere()
            if d.worker and d.worker != self.worker:
                await self._owner_changed(d.worker)
            if d.end:
                return _end_error(d)
            if d.sync:
                if d.seq > self.last_seq:
                    await self._fill(context, d.seq)
                continue
            if d.seq == 0:
                await context.write(d.data)
                continue
            if d.seq <= self.last_seq:
                continue
            if d.seq > self.last_seq + 1:
                await self._fill(context, d.seq - 1)
            await context.write(d.data)
            if d.t_ns:  # upstream receive (worker) -> written to the caller (front)
                self._s2c_latency.observe(max(0, time.time_ns() - d.t_ns) / 1e9)
            if d.seq == 1:
                metrics.SETUP_SECONDS.labels(self.model).observe(time.monotonic() - self.created)
            self.last_seq = d.seq

    async def _fill(self, context: grpc.aio.ServicerContext, up_to: int | None) -> None:
        """Write the logged server messages after ``last_seq`` (through ``up_to``; None: all) in order."""
        count = None if up_to is None else up_to - self.last_seq
        for seq, data in await records.s2c_after(self.front.redis, self.sid, self.last_seq, count):
            if seq <= self.last_seq or (up_to is not None and seq > up_to):
                continue
            if seq > self.last_seq + 1:  # trimmed from the log (its size bound) before this front wrote it: cut the
                self.overflowed = True  # stream as SLOW_READER rather than skip; a reattach then says REPLAY_TRIMMED
                return
            await context.write(data)
            self.last_seq = seq

    async def _owner_changed(self, worker: str) -> None:
        """A worker (new, or a successor) owns the session: route client messages to its inbox and make it
        catch up with everything logged so far."""
        self.worker = worker
        await self.front.batcher.submit([self._inbox_cmd("k", "sync", "i", self.index)])

    # -- caller -> worker ------------------------------------------------------------------------------

    async def pump_client(self, context: grpc.aio.ServicerContext) -> None:
        """Read the caller's messages until it half-closes and they are all in Redis; raises GatewayError on bad
        input, or the Redis error of a failed write."""
        try:
            await self._pump_client(context)
            await self._writes.drain()
        finally:
            self._writes.abandon()  # stopped early (a cancellation or an error): the rest still runs

    async def _pump_client(self, context: grpc.aio.ServicerContext) -> None:
        while True:
            item = await context.read()
            if item is grpc.aio.EOF:
                return
            raw, msg = item
            if msg is None:
                from livegate.errors import invalid_argument

                raise invalid_argument("could not parse the message as livegate.v1.ClientMessage", "MALFORMED_MESSAGE")
            kind = validate_message(msg)
            await self.budget.spend(measure(msg, kind, len(raw), self.front.settings))
            counters = self._m_kind.get(kind)
            if counters is None:
                counters = self._m_kind[kind] = (metrics.MESSAGES.labels("front", "c2s", kind),
                                                 metrics.MESSAGE_BYTES.labels("front", "c2s", kind))
            counters[0].inc()
            counters[1].inc(len(raw))
            await self.send(raw)

    async def _reserve_log(self, size: int) -> None:
        """Wait until the c2s log has room for ``size`` more bytes: the worker trims it up to what the upstream's
        resumption handle covers. Meanwhile the caller's stream is not read (backpressure); after
        ``budget_wait_s`` the message is refused: Redis never holds more than ``c2s_log_max_bytes`` of it."""
        s = self.front.settings
        if self._log_known and self._log.fits(size, s.c2s_log_max_bytes):
            return
        started = time.monotonic()
        await self._writes.drain()  # every write landed: the log's first entry says what was trimmed
        log = keys.session_c2s(self.sid)
        if not self._log_known:  # a reattached session: what the log holds now counts as its last message's
            self._log.add(self.index, int(await self.front.redis.memory_usage(log, samples=0) or 0))
            self._log_known = True
        while True:
            first = await self.front.redis.xrange(log, "-", "+", count=1)
            self._log.forget_before(keys.stream_seq(first[0][0]) if first else self.index + 1)
            if self._log.fits(size, s.c2s_log_max_bytes):
                break
            waited = time.monotonic() - started
            if waited >= s.budget_wait_s:
                raise refusal("c2s_log", "C2S_LOG_FULL", size,
                              f"this session's client messages not yet covered by an upstream resumption handle "
                              f"reached {self._log.total} bytes (the bound is {s.c2s_log_max_bytes}) and none were "
                              f"released for {waited:.0f} s; send less, or end turns so the model consumes the input",
                              retry_after_s=s.budget_wait_s)
            await asyncio.sleep(min(0.25, s.budget_wait_s - waited))
        waited = time.monotonic() - started
        self.budget.throttled_s += waited
        metrics.BUDGET_THROTTLED_SECONDS.labels("c2s_log").inc(waited)

    def renumber(self, last_index: int) -> None:
        """A reattach: the caller's next message follows ``last_index``, the last one the log took."""
        self.index = last_index
        self._log_known = last_index == 0

    def supersede(self) -> None:
        """Another stream took this session over (a second reattach): this stream ends with
        REATTACHED_ELSEWHERE, and every message its caller sends from now on is refused, not written."""
        if self.superseded:
            return
        self.superseded = self.closed = True
        if self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait(Delivery(0, b"", ""))  # wakes pump_server, which ends the stream

    async def writes_done(self, timeout_s: float) -> None:
        """Wait (bounded) until every client message this stream wrote is in Redis (or failed)."""
        last = self._last_write
        if last is not None and not last.done():
            with contextlib.suppress(Exception):
                async with asyncio.timeout(timeout_s):
                    await asyncio.shield(last)

    async def hand_over_to(self, front_id: str) -> None:
        """A reattach through ``front_id`` took this session over: end this stream, then tell that front once
        every message this stream wrote is in Redis (it numbers its caller's messages after them)."""
        self.supersede()
        await self.writes_done(self.front.settings.close_timeout_s)
        await self.front.batcher.submit([released_entry(front_id, self.sid)])

    async def send(self, raw: bytes) -> None:
        s = self.front.settings
        await self._reserve_log(len(raw))
        if self.superseded:  # checked right before the write: nothing of this stream is written after a takeover
            raise reattached_elsewhere()
        self.index += 1
        self._log.add(self.index, len(raw))
        now = time.time_ns()
        log = keys.session_c2s(self.sid)
        # only the first message creates the log (with a TTL): a late write never resurrects an ended session
        cmds: list[tuple[object, ...]] = [
            ("XADD", log, *(() if self.index == 1 else ("NOMKSTREAM",)), "MAXLEN", "~", s.c2s_log_len,
             keys.stream_id(self.index), "m", raw, "t", now)]
        if self.index == 1:
            cmds.append(("EXPIRE", log, s.session_key_ttl_s))
        if self.worker:  # a big message goes by reference: the worker reads it from the log (a worker inbox
            # holds at most inbox_len entries of stream_inline_max_bytes each)
            cmds.append(self._inbox_cmd("i", self.index, "m", raw, "t", now) if len(raw) <= s.stream_inline_max_bytes
                        else self._inbox_cmd("k", "sync", "i", self.index))
        # ordered by the batcher; not awaited one by one: the next message is read while this one is written
        self._last_write = write = self.front.batcher.submit(cmds)
        for replies in await self._writes.push(write):
            if is_stale_id_error(replies[0]):  # another stream of this session wrote this index: it owns it now
                raise reattached_elsewhere()

    async def request_close(self, kind: str = "close") -> bool:
        """Ask the owning worker to end the session; if none owns it yet, end it here. False if it had no
        record (already ended, or never written)."""
        self.closed = True
        owner, lease, existed = await self.front.redis.eval(records.CLOSE_OR_OWNER, 1, keys.session_meta(self.sid),
                                                            kind)
        logger.debug("session %s: close (%s) -> owner %r", self.sid, kind, owner)
        if owner:
            self.worker = owner.decode()
            await self.front.batcher.submit([self._inbox_cmd("k", kind, "i", self.index)])
        else:  # the lease from the record: a reattached caller's session does not hold it here
            await self._delete_unclaimed(Lease.parse(lease.decode()) if lease else None)
        return bool(existed)

    async def _delete_unclaimed(self, lease: Lease | None) -> None:
        # through the batcher: after any write of this session still queued
        await self.front.batcher.submit([("DEL", *keys.session_keys(self.sid)),
                                         ("ZREM", keys.tenant_sessions(self.tenant), self.sid)])
        if lease is not None:
            await self.front.admission.release(lease)

    async def tell_worker(self, kind: str, value: object) -> None:
        """A control entry (attach, detach) for the owning worker."""
        await self.front.batcher.submit([self._inbox_cmd("k", kind, "m", value)])

    async def detach(self, grace_s: float) -> int | None:
        """The caller is gone without closing: keep the session for ``grace_s`` so it can reattach. Returns
        the deadline (ms since the epoch) when no worker owns the session yet: the caller of this method
        then calls :meth:`end_if_unclaimed` at that time (a worker that claims it meanwhile ends it instead)."""
        until_ms = records.now_ms() + int(grace_s * 1000)
        # through the batcher: after every write of this stream still in flight, so a reattach that finds the
        # session detached numbers its caller's messages after them
        (owner,) = await self.front.batcher.submit([("EVAL", records.DETACH, 1, keys.session_meta(self.sid),
                                                     self.front.id, until_ms)])
        if isinstance(owner, Exception):
            raise owner
        if owner is None:
            return None  # gone, or the caller already came back through another front
        if not owner:
            return until_ms
        self.worker = owner.decode()
        await self.front.batcher.submit([self._inbox_cmd("k", "detach", "m", self.front.id, "i", int(grace_s * 1000))])
        return None

    async def end_if_unclaimed(self) -> bool:
        """End the session if, at the end of its grace, it is still detached and no worker has taken it."""
        lease = await self.front.redis.eval(records.END_UNCLAIMED, 1, keys.session_meta(self.sid), records.now_ms())
        if lease is None:
            return False
        await self._delete_unclaimed(Lease.parse(lease.decode()) if lease else None)
        return True

    def _inbox_cmd(self, *fields: object) -> tuple[object, ...]:
        # NOMKSTREAM: the inbox is created by its worker; a dead worker's inbox is not recreated
        return ("XADD", keys.worker_inbox(self.worker), "NOMKSTREAM", "MAXLEN", "~", self.front.settings.inbox_len,
                "*", "s", self.sid, *fields)


def reattached_elsewhere() -> GatewayError:
    return GatewayError(grpc.StatusCode.ABORTED, "REATTACHED_ELSEWHERE",
                        "another stream reattached to this session and took it over: this stream is ended, and "
                        "messages sent on it after that were not accepted; continue on the newer stream")


def superseded_entry(front_id: str, sid: str, new_front: str) -> tuple[object, ...]:
    """The outbox entry telling ``front_id`` that a reattach through ``new_front`` took session ``sid`` over.
    An ``end`` with the REATTACHED_ELSEWHERE status: a front of an earlier version ends its stream with it."""
    err = reattached_elsewhere()
    return ("XADD", keys.front_outbox(front_id), "NOMKSTREAM", "*", "s", sid, "k", "end", "c", err.code.value[0],
            "e", orjson.dumps({"reason": err.reason, "message": err.message, "retryable": False}), "f", new_front)


def released_entry(front_id: str, sid: str) -> tuple[object, ...]:
    """The outbox entry telling the front of a reattach that the stream it took over writes no more."""
    return ("XADD", keys.front_outbox(front_id), "NOMKSTREAM", "*", "s", sid, "k", "released")


def _end_error(d: Delivery) -> GatewayError | None:
    if d.code == 0:
        return None
    info = orjson.loads(d.error) if d.error else {}
    return GatewayError(code_from_int(d.code), info.get("reason", "UNKNOWN"), info.get("message", "session ended"),
                        retryable=bool(info.get("retryable")), retry_after_s=info.get("retry_after_s"),
                        upstream_close_code=info.get("upstream_close_code"),
                        upstream_close_reason=info.get("upstream_close_reason"))


__all__ = ["FrontSession", "Delivery", "gw"]
