"""One session on a worker: the upstream WebSocket and the two relay directions.

Client -> upstream: entries arrive from the worker inbox (fast path) with the client message index; the
relay sends them strictly in index order, fetching any gap from the session's ``c2s`` log, dropping
duplicates. Upstream -> client: every frame becomes a ``ServerMessage`` with the next ``seq``, written to
the session's ``s2c`` log (id ``0-<seq>``, fenced by the relay's epoch) and the owning front's outbox
(tagged with it) in one pipeline; up to ``write_window`` of those writes are in flight while the next frames
are read (a fenced one is seen at most that many frames late, and every exit that hands the session on or
cleans it up waits for them first).

The upstream is renewed transparently (go_away, transient closes): close the old socket, resume with the
latest handle, re-send the client messages the handle does not cover. Non-retryable closes end the session
with a typed :class:`~livegate.errors.GatewayError`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import TYPE_CHECKING

import grpc
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from livegate import codec, metrics
from livegate.redis import keys, records
from livegate.redis.bus import StreamBytes, WriteWindow, is_stale_id_error
from livegate.cleanups import raise_if_cancelled
from livegate.errors import GatewayError, unavailable
from livegate.redis.records import SessionRecord
from livegate.v1 import gateway_pb2 as gw
from livegate.v1 import live_pb2 as live

from workers.events import (ClientClosed, GoAwayReceived, InboxItem, Migrate, SessionHandedOver, SessionLost,
                            UpstreamClosed, close_info, count_tokens, starts_turn, stop_tasks)
from workers.presence import CallerPresence
from workers.renewal import RenewalPolicy
from workers.upstream import close_bounded

if TYPE_CHECKING:
    from workers.worker import Worker

logger = logging.getLogger(__name__)


class SessionRelay(RenewalPolicy, CallerPresence):
    def __init__(self, worker: Worker, record: SessionRecord, epoch: int, *, last_seq: int = 0,
                 cause: str = "new", since_ms: int = 0) -> None:
        self.worker = worker
        self.record = record
        self.sid = record.sid
        self.epoch = epoch
        self.seq = last_seq
        self.next_index = record.handle_index + 1 if record.handle else 1
        self.queue: asyncio.Queue[InboxItem] = asyncio.Queue()
        self._writes = WriteWindow(worker.settings.write_window)  # server messages on their way to Redis
        self.s2c_bytes = StreamBytes()  # what this relay keeps in the s2c log (bounded: s2c_log_max_bytes)
        self.ws: ClientConnection | None = None
        self.setup = live.BidiGenerateContentSetup.FromString(record.setup)
        self.route = worker.routing.route(record.route)
        self.options = gw.SessionOptions.FromString(record.options) if record.options else gw.SessionOptions()
        self._handle = record.handle
        self._handle_index = record.handle_index
        self._setup_sent_to_client = last_seq > 0  # a takeover never repeats setup_complete
        self._gw_handle = ""  # the caller-facing handle (see Worker.publish_handle)
        self._resumable = False  # the latest update said the upstream is at a resumable point
        self._renew = asyncio.Event()  # set: renew the upstream now (go_away at a resumable point or deadline)
        self._renew_timer: asyncio.TimerHandle | None = None
        self._conn_base = 0  # session index of the message before this connection's first
        self._local_connects = 0  # upstream connections this worker opened for the session
        self._migrating = False  # the worker drains: hand over at the next resumable point
        self._closing = False  # the caller half-closed: close once the turn in flight completes
        self._turn_open = False  # a user turn was sent or model output is streaming, and no turn_complete yet
        # what a Gemini API handle covers (its updates carry no lastConsumedClientMessageIndex): every client
        # message up to the one that opened the last turn the model completed (_consumed_guess); the index of
        # the message that opened the turn in flight (_trigger_index, None: none yet)
        self._consumed_guess = record.handle_index
        self._trigger_index: int | None = None
        self._last_frame = time.monotonic()
        self.started = time.monotonic()
        self.cause = cause  # new | takeover | migrate
        self.since_ms = since_ms  # takeover: the previous owner's last heartbeat
        self._abandoned = False
        flavour = record.flavour
        self._m = {
            "c2s_latency": metrics.ADDED_LATENCY_SECONDS.labels("c2s"),
            "go_away": metrics.UPSTREAM_GO_AWAYS.labels(flavour),
            "gap": metrics.UPSTREAM_RESUME_GAP_SECONDS.labels(flavour),
            "first_response": metrics.FIRST_RESPONSE_SECONDS.labels(record.model),
        }
        # its rows of livegate_tokens_total at 0
        metrics.session_claimed(record.model, record.tenant_label or metrics.tenant_label(record.tenant))
        self._m_kind: dict[str, tuple[object, object]] = {}
        self._turn_started = 0.0  # when the turn in flight was sent (for time to first response)
        self._init_presence()

    def __repr__(self) -> str:
        return (f"<SessionRelay {self.sid} epoch={self.epoch} seq={self.seq} next_index={self.next_index} "
                f"handle={'yes' if self._handle else 'no'} connects={self.record.connects}>")

    # -- inbox side -----------------------------------------------------------------------------------

    def abandon(self) -> None:
        """Another worker owns this session now: stop without touching its keys."""
        self._abandoned = True

    def deliver(self, item: InboxItem) -> None:
        self.queue.put_nowait(item)

    # -- lifecycle ---------------------------------------------------------------------------------

    async def run(self) -> None:
        """Relay until the session ends; always leaves Redis clean (or handed over)."""
        try:
            await self._run()
        finally:
            self._writes.abandon()  # cancelled, or lost: the writes in flight still run, unread

    async def _run(self) -> None:
        error: GatewayError | None = None
        try:
            await self._relay_forever()
        except ClientClosed:
            logger.info("session %s closed by the caller", self.sid)
        except SessionLost:
            logger.warning("session %s lost to another worker; stopping without cleanup", self.sid)
            await self._close_ws(1000)
            return
        except SessionHandedOver:
            logger.info("session %s handed over to another worker", self.sid)
            return
        except GatewayError as exc:
            error = exc
            logger.info("session %s ended: %s", self.sid, exc)
        except asyncio.CancelledError:
            await self._close_ws(1001)
            raise
        except Exception as exc:  # a bug: end this session with INTERNAL, keep the worker serving others
            logger.exception("session %s failed", self.sid)
            error = GatewayError(grpc.StatusCode.INTERNAL, "INTERNAL", f"gateway worker error: {type(exc).__name__}")
        await self._close_ws(1000)
        try:  # the end entry and the deletion must follow every message, and only if the session is still ours
            await self._settle_writes()
        except SessionLost:
            logger.warning("session %s lost to another worker; stopping without cleanup", self.sid)
            return
        except Exception as exc:  # Redis unreachable: the cleanup below tries anyway (keys expire by TTL)
            logger.warning("session %s: server messages in flight failed: %r", self.sid, exc)
        await self.worker.cleanups.shielded(self._finish(error), f"finish {self.sid}")

    async def _relay_forever(self) -> None:
        attempt = 0
        reason = self.cause
        task = asyncio.current_task()
        if self._grace_over():
            logger.info("session %s: its caller's grace ended before this worker took it; ending it", self.sid)
            raise ClientClosed()
        if self.cause != "new":
            # before anything else, tell the front who relays the session now: client messages come here at
            # once (any logged meanwhile are read after the connect), and from this entry on the front drops
            # what the previous owner still writes
            await self.worker.announce(self, self.record.front)
        while True:
            # a cancellation a library swallowed (a connect, a close) must not become a reconnect loop that
            # outlives the worker's close
            raise_if_cancelled(task)
            gap_started = time.monotonic()
            try:
                await self._connect()
                raise_if_cancelled(task)
            except GatewayError:
                self._resume_failed(reason)
                raise
            except (OSError, ConnectionClosed, asyncio.TimeoutError, UpstreamClosed) as exc:
                try:
                    self._resume_or_raise(*close_info(exc))
                except GatewayError:
                    self._resume_failed(reason)
                    raise
                attempt += 1
                if attempt >= self.worker.settings.upstream_max_attempts:
                    self._resume_failed(reason)
                    raise unavailable(f"the upstream could not be reached after {attempt} attempts",
                                      "UPSTREAM_UNAVAILABLE") from None
                delay = min(0.1 * 2 ** (attempt - 1), 5.0) * (0.5 + random.random() / 2)
                logger.warning("session %s: upstream %s connect failed (%r; check LIVEGATE_UPSTREAM_URL or the route's "
                               "url); retry %d in %.2fs", self.sid, self.route.url, exc, attempt, delay)
                await asyncio.sleep(delay)
                continue
            if self.record.connects > 1 or self.cause != "new":
                gap = time.monotonic() - gap_started
                if reason in ("takeover", "migrate") and self.since_ms:
                    gap = max(gap, (records.now_ms() - self.since_ms) / 1000)
                    metrics.TAKEOVERS.labels("dead_worker" if reason == "takeover" else "drain").inc()
                    metrics.TAKEOVER_SECONDS.observe(gap)
                await self._renewed(reason, gap)
            attempt = 0
            try:
                await self._pump()
            except Migrate:
                await self._close_ws(1000)  # first: a resume while the old socket is open is refused
                await self._settle_writes()  # the next owner continues after our last logged seq
                await self.worker.hand_over(self)
                raise SessionHandedOver() from None
            except GoAwayReceived:
                reason = "go_away"
            except UpstreamClosed as exc:
                self._resume_or_raise(exc.code, exc.reason)
                reason = f"upstream_close_{exc.code}"
            await self._close_ws(1000)

    async def _connect(self) -> None:
        w = self.worker
        self._reset_renewal()
        self.ws = ws = await w.open_upstream(self.route)
        self.record.connects += 1
        self._local_connects += 1
        setup = codec.upstream_setup(self.setup, self._handle, self.route, self.record.model,
                                     compression_default=w.settings.compression_default)
        try:
            await ws.send(setup)
            # asyncio.timeout, not wait_for: on 3.11 wait_for returns the frame if it arrives as the session is
            # cancelled, and the cancellation is lost
            async with asyncio.timeout(w.settings.upstream_connect_timeout_s):
                first = await ws.recv(decode=False)
        except ConnectionClosed as exc:
            raise UpstreamClosed(*close_info(exc)) from None
        msg = codec.server_from_live(first, self.record.flavour)
        if msg is None or not msg.HasField("setup_complete"):  # a misbehaving upstream: retried like a failed connect
            raise UpstreamClosed(None, "the upstream did not answer setup with setupComplete")
        if self._handle:
            self.record.resumes += 1
        if not self._setup_sent_to_client:
            self._setup_sent_to_client = True
            await self._emit(msg)
        # Re-send what the upstream has not consumed: every logged client message after the handle's index.
        self.next_index = self._handle_index + 1 if self._handle else 1
        # lastConsumedClientMessageIndex counts this connection's messages from 1 (after setup); messages
        # go out strictly in session index order, so session index = connection index + this base.
        self._conn_base = self.next_index - 1
        self._consumed_guess, self._trigger_index = self._conn_base, None
        await self._fill()

    async def _pump(self) -> None:
        """Run both directions until one ends; its outcome (an exception) decides what happens next."""
        assert self.ws is not None
        ws = self.ws
        tasks = [asyncio.create_task(self._s2c_loop(ws), name=f"s2c-{self.sid}"),
                 asyncio.create_task(self._c2s_loop(ws), name=f"c2s-{self.sid}"),
                 asyncio.create_task(self._renew_waiter(), name=f"renew-{self.sid}"),
                 asyncio.create_task(self._stall_watchdog(), name=f"stall-{self.sid}")]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await stop_tasks(tasks, ws, self.sid)
        logger.debug("session %s: pump ended: %s", self.sid, [(t.get_name(), t.cancelled() or t.exception()) for t in tasks])
        for t in tasks:
            if t in done and not t.cancelled() and t.exception() is not None:
                exc = t.exception()
                if isinstance(exc, ConnectionClosed):  # a send failed: the upstream went away
                    raise UpstreamClosed(*close_info(exc))
                raise exc  # type: ignore[misc]

    # -- client -> upstream ---------------------------------------------------------------------------

    async def _c2s_loop(self, ws: ClientConnection) -> None:
        while True:
            item = await self.queue.get()
            if item.kind == "close":
                # the caller is done sending: let the model finish the turn in flight (bounded), then close
                if not self._turn_open:
                    raise ClientClosed()
                self._closing = True
                asyncio.get_running_loop().call_later(self.worker.settings.close_turn_s, self.queue.put_nowait,
                                                      InboxItem("close_now", 0))
                continue
            if item.kind in ("close_now", "resumed"):  # resumed: a new session continues the conversation
                raise ClientClosed()
            if item.kind == "migrate":
                self._on_migrate()
                continue
            if item.kind == "detach":
                await self._on_detach(item)
                continue
            if item.kind == "attach":
                await self._on_attach(item.payload.decode())
                continue
            if item.kind == "grace_expired":
                if self.detached:
                    logger.info("session %s: no reattach within the grace period; ending it", self.sid)
                    raise ClientClosed()
                continue
            if item.kind == "admin_close":
                raise GatewayError(grpc.StatusCode.ABORTED, "CLOSED_BY_ADMIN",
                                   "the session was closed with CloseSession")
            if item.kind == "sync":
                await self._fill(item.index)
                continue
            if item.index < self.next_index:
                continue  # duplicate (already relayed)
            if item.index > self.next_index:
                await self._fill(item.index - 1)
            await self._send_client(ws, item.payload, item.t_ns)
            self.next_index = item.index + 1

    async def _fill(self, up_to: int | None = None) -> None:
        """Send the ``c2s`` log from ``next_index`` through ``up_to`` (None: to the end) upstream, in order."""
        if self.ws is None or (up_to is not None and up_to < self.next_index):
            return
        entries = await self.worker.redis.xrange(
            keys.session_c2s(self.sid), keys.stream_id(self.next_index),
            keys.stream_id(up_to) if up_to is not None else "+")
        for eid, fields in entries:
            index = keys.stream_seq(eid)
            if index < self.next_index:
                continue
            await self._send_client(self.ws, fields[b"m"], int(fields.get(b"t", 0)))
            self.next_index = index + 1

    async def _send_client(self, ws: ClientConnection | None, payload: bytes, t_ns: int = 0) -> None:
        assert ws is not None
        msg = gw.ClientMessage.FromString(payload)
        if not self._turn_open and starts_turn(msg):
            self._turn_open = True
            self._trigger_index = self.next_index  # messages go out in index order: this one is next_index
            self._last_frame = self._turn_started = time.monotonic()
        await ws.send(codec.client_to_live(msg), text=True)
        if t_ns:  # front receive -> upstream send (clocks of one cluster: NTP-synchronised)
            self._m["c2s_latency"].observe(max(0, time.time_ns() - t_ns) / 1e9)  # type: ignore[attr-defined]
        self.worker.stats.c2s += 1

    # -- upstream -> client ---------------------------------------------------------------------------

    async def _s2c_loop(self, ws: ClientConnection) -> None:
        while True:
            try:
                frame = await ws.recv(decode=False)
            except ConnectionClosed as exc:
                raise UpstreamClosed(*close_info(exc)) from None
            t_ns = time.time_ns()
            self._last_frame = time.monotonic()
            msg = codec.server_from_live(frame, self.record.flavour)
            if msg is None:
                logger.warning("session %s: upstream frame not understood: %.200r", self.sid, frame)
                continue
            kind = msg.WhichOneof("message")
            if kind == "session_resumption_update":
                await self._on_resumption_update(msg)
                continue
            if kind == "go_away":
                time_left = msg.go_away.time_left.ToNanoseconds() / 1e9
                logger.info("session %s: go_away (time left %.1fs); renewing the upstream at a resumable point",
                            self.sid, time_left)
                self._on_go_away(time_left)
                continue
            if self._turn_started and kind in ("server_content", "tool_call"):
                self._m["first_response"].observe(time.monotonic() - self._turn_started)  # type: ignore[attr-defined]
                self._turn_started = 0.0
            if msg.HasField("usage_metadata"):
                count_tokens(self.record.model, self.record.tenant_label or metrics.tenant_label(self.record.tenant),
                             msg.usage_metadata)
            if kind in ("server_content", "tool_call") and self._trigger_index is None:
                self._trigger_index = self.next_index - 1  # a turn the upstream opened (its VAD): all sent so far
            if kind == "server_content":
                self._turn_open = not msg.server_content.turn_complete
            elif kind == "tool_call":
                self._turn_open = False  # the caller's tool_response reopens it
            if not self._turn_open and self._trigger_index is not None:  # the model answered up to its trigger
                self._consumed_guess = max(self._consumed_guess, self._trigger_index)
                self._trigger_index = None
            await self._emit(msg, t_ns)
            if self._closing and not self._turn_open:
                raise ClientClosed()  # the turn the caller was waiting for is complete

    async def _emit(self, msg: gw.ServerMessage, t_ns: int = 0) -> None:
        self.seq += 1
        msg.seq = self.seq
        data = msg.SerializeToString()
        kind = msg.WhichOneof("message") or "usage_metadata"
        counters = self._m_kind.get(kind)
        if counters is None:
            counters = self._m_kind[kind] = (metrics.MESSAGES.labels("worker", "s2c", kind),
                                             metrics.MESSAGE_BYTES.labels("worker", "s2c", kind))
        counters[0].inc()  # type: ignore[attr-defined]
        counters[1].inc(len(data))  # type: ignore[attr-defined]
        for replies in await self._writes.push(self.worker.write_server_message(self, self.seq, data,
                                                                                 t_ns or time.time_ns())):
            _check_logged(replies)

    async def _settle_writes(self) -> None:
        """Wait for the server messages in flight; raises SessionLost if one was refused."""
        for replies in await self._writes.drain():
            _check_logged(replies)

    # -- end ------------------------------------------------------------------------------------------

    async def _close_ws(self, code: int) -> None:
        ws, self.ws = self.ws, None
        self._turn_open = False
        if ws is not None:
            await close_bounded(ws, code)

    async def _finish(self, error: GatewayError | None) -> None:
        await self.worker.end_session(self, error)


def _check_logged(replies: list[object]) -> None:
    if replies[0] is None or is_stale_id_error(replies[0]):  # log gone (session ended) or fenced
        raise SessionLost()
