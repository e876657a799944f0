"""The front process: a grpc.aio server with LiveGateway, health and reflection, and the outbox reader.

Lifecycle: ``start()`` binds and serves; ``drain()`` flips health to NOT_SERVING and tells connected callers
to reattach elsewhere; ``aclose()`` stops the server within the grace period and closes clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from livegate import __version__, logs, metrics, tenants
from livegate.redis import keys, records
from livegate.redis.bus import Batcher, every, read_stream, supervise
from livegate.cleanups import Cleanups, wait_bounded
from livegate.looplag import LoopLagMonitor
from livegate.errors import GatewayError, echo, invalid_argument, not_found
from livegate.admission.control import Lease, admission_from_settings, scope_of
from livegate.models import LIVE_MODELS
from livegate.redis.connect import AnyRedis, connect
from livegate.routes import Routing
from livegate.settings import Settings
from livegate.v1 import gateway_pb2 as gw
from livegate.v1 import live_pb2 as live
from service import pages, reflection, tls
from service.auth import Authenticator, build_authenticator, known_tenants
from service.budget import FrontBudgets
from service.membership import FrontMembership
from service.servicer import SERVICE_NAME, LiveGatewayServicer
from service.resume import end_earlier_session
from service.session import FrontSession, released_entry, superseded_entry
from service.validate import validate_session_id, validate_setup
from service.ws import WebSocketFront

logger = logging.getLogger(__name__)

# A reattach that takes a session over from a stream on another front waits this long at most for that stream
# to stop writing (a live front answers within a round trip; a front that crashed and is not reaped yet never
# does, and a reattach right after a front's crash waits this long).
TAKEOVER_WAIT_S = 1.0


class Front:
    def __init__(self, settings: Settings, *, redis: AnyRedis | None = None,
                 authenticator: Authenticator | None = None) -> None:
        self.settings = settings.with_ids("front")
        self.id = self.settings.front_id
        self._own_redis = redis is None
        self.redis: AnyRedis = redis if redis is not None else connect(self.settings.redis_url, client_name=self.id)
        self.batcher = Batcher(self.redis, role="front")
        self.auth: Authenticator = authenticator or build_authenticator(self.settings)
        self.sessions: dict[str, FrontSession] = {}
        self.routing = Routing.from_settings(self.settings)
        self.admission = admission_from_settings(self.redis, self.settings)
        tenant_ok, valid_tenants = known_tenants(self.settings)  # a config that matches nothing fails here
        self.routing.check_tenants(tenant_ok, valid_tenants)
        if self.admission.config is not None:
            self.admission.config.check(self.routing.scopes(), tenant_ok, valid_tenants,
                                        source=self.settings.admission_file or "admission_json")
        metrics.label_tenants(tenants.named(self.settings))
        self.budgets = FrontBudgets(self.settings)  # tenants' byte buckets, pending Connects (service/budget.py)
        self.health = health.aio.HealthServicer()
        self.websocket = WebSocketFront(self)  # the Live API WebSocket listener (settings.ws_listen; empty: off)
        self._server: grpc.aio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.calls: set[asyncio.Task[Any]] = set()  # the RPC handlers running (service/servicer.py)
        self.cleanups = Cleanups(f"front {self.id}")  # session closes and lease releases that outlive their RPC
        self._grace_timers: set[asyncio.TimerHandle] = set()  # unclaimed sessions whose caller is gone
        self._releases: dict[str, asyncio.Event] = {}  # reattaches here waiting for another front's stream to stop
        self._stop: asyncio.Event | None = None
        self.port = 0
        self._closed = False
        self._outbox_last_id = "0-0"
        self._outbox_task: asyncio.Task[None] | None = None
        self.membership = FrontMembership(self)  # its heartbeat, and its rejoin if it was declared dead
        self.lag = LoopLagMonitor("front", name=f"front {self.id}")
        self._draining = False

    def __repr__(self) -> str:
        return f"<Front {self.id} port={self.port} sessions={len(self.sessions)}>"

    @property
    def serving(self) -> bool:
        """Ready for callers: started, not draining, and a fresh member of the fleet (not while it rejoins)."""
        return self._server is not None and not self._draining and not self._closed and self.membership.fresh()

    @property
    def address(self) -> str:
        host = self.settings.front_listen.rpartition(":")[0] or "127.0.0.1"
        return f"{host}:{self.port}"

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._server is not None:
            return
        # bind first: a busy port fails the start before this front registers anywhere
        server = grpc.aio.server(options=[
            ("grpc.max_receive_message_length", self.settings.max_message_bytes),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.http2.max_pings_without_data", 0),
            # callers may ping every 5 s (client keepalive: how a caller notices a paused or dead front and
            # reattaches elsewhere); grpc's default refuses pings under 5 min with too_many_pings. Accepted
            # from 2 s on, so a 5 s keepalive's pings arriving a little early are never counted as strikes
            ("grpc.http2.min_ping_interval_without_data_ms", 2000),  # GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_…
            ("grpc.keepalive_permit_without_calls", 1),
            # a port already in use fails the start instead of being shared with an unrelated process
            ("grpc.so_reuseport", 0),
            *connection_age_options(self.settings),
        ])
        server.add_generic_rpc_handlers([LiveGatewayServicer(self).handler()])
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable(server, (SERVICE_NAME, health.SERVICE_NAME))
        try:
            self.port = tls.bind(server, self.settings)  # h2c, TLS or mTLS (front_tls_*, front_client_ca_file)
        except RuntimeError:  # grpc raises on a failed bind
            self.port = 0
        if self.port == 0:
            raise OSError(f"could not listen on {self.settings.front_listen} (LIVEGATE_FRONT_LISTEN): the port is "
                          "in use (another front or `livegate dev`?) or the address is not this host's")
        await self.websocket.bind()  # accepts once the front serves (below)
        self._stop = asyncio.Event()
        await self.batcher.start()
        # the outbox is created by its owner only (workers write with NOMKSTREAM): a dead front's outbox
        # expires and is never recreated
        self.lag.start()
        await self.membership.join()
        self._tasks = [asyncio.create_task(supervise("keepalive", self._keepalive_loop), name="front-keepalive")]
        self.follow_outbox(self._outbox_last_id)
        await server.start()
        self._server = server
        await self.websocket.start()
        await self.health.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        metrics.BUILD.info({"version": __version__, "role": "front"})
        logger.info("front %s serving on %s (%s, %r)", self.id, self.address, tls.describe(self.settings), self.auth)

    async def drain(self) -> None:
        """Health NOT_SERVING; tell every connected caller to reattach elsewhere."""
        self._draining = True
        await self.health.enter_graceful_shutdown()
        msg = gw.ServerMessage(drain=gw.Drain(reason="front shutting down; reattach to another front")).SerializeToString()
        for session in list(self.sessions.values()):
            session.notice(msg)

    async def aclose(self, grace_s: float | None = None) -> None:
        if self._closed:
            return
        self._closed = True
        if self._stop is not None:
            self._stop.set()
        if self._server is not None:
            await self.health.enter_graceful_shutdown()
            grace = self.settings.front_grace_s if grace_s is None else grace_s
            await asyncio.gather(self._server.stop(grace), self.websocket.aclose(grace))
        # stop cancelled the calls; their unwinding still starts session closes and detaches
        await wait_bounded(self.calls, 5.0, f"front {self.id}: calls still running after the server stopped")
        for timer in self._grace_timers:  # those sessions are ended by the worker that claims them
            timer.cancel()
        await self.cleanups.aclose(timeout_s=5.0)  # session closes started by ended RPCs reach Redis (bounded)
        await self.admission.aclose(timeout_s=1.0)  # its waiters gave up with the RPCs
        for t in self._tasks:
            t.cancel()
        await wait_bounded(self._tasks, 5.0, f"front {self.id}: loops ignored their cancellation")
        try:
            await self.redis.delete(keys.front_outbox(self.id))
            await self.redis.zrem(keys.FRONTS, self.id)
        except Exception as exc:
            logger.warning("front %s: could not delete its outbox: %r", self.id, exc)
        await self.batcher.aclose()
        if self._own_redis:
            await self.redis.aclose()
        await self.lag.aclose()
        logger.info("front %s closed", self.id)

    def end_unclaimed_after(self, session: FrontSession, until_ms: int) -> None:
        """A session no worker has taken yet lost its caller: end it at ``until_ms`` (the end of its grace)
        unless a worker takes it or the caller comes back first. If this front stops before then, the worker
        that claims the session finds the grace over and ends it."""
        def fire() -> None:
            self._grace_timers.discard(timer)
            self.cleanups.start(self._end_unclaimed(session), f"end unclaimed {session.sid}")

        timer = asyncio.get_running_loop().call_later(max(0.0, (until_ms - records.now_ms()) / 1000), fire)
        self._grace_timers.add(timer)

    async def _end_unclaimed(self, session: FrontSession) -> None:
        if await session.end_if_unclaimed():
            logger.info("session %s: no worker took it and its caller did not come back; ended", session.sid)

    # -- outbox ------------------------------------------------------------------------------------

    def follow_outbox(self, last_id: str) -> None:
        """Read the outbox of the front's current identity from ``last_id`` (a rejoin starts a new one)."""
        self._outbox_last_id = last_id
        self._outbox_task = asyncio.create_task(supervise("outbox", self._outbox_loop), name="front-outbox")
        self._tasks.append(self._outbox_task)

    async def stop_outbox(self) -> None:
        task, self._outbox_task = self._outbox_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            self._tasks.remove(task)

    async def _outbox_loop(self) -> None:
        async for batch in read_stream(self.redis, keys.front_outbox(self.id), last_id=self._outbox_last_id, stop=self._stop):
            self.dispatch(batch)

    def dispatch(self, batch: list[Any]) -> None:
        """Hand outbox entries to their sessions (also a rejoin's unread entries of the old outbox)."""
        for _eid, fields in batch:
            sid = fields.get(b"s")
            session = self.sessions.get(sid.decode()) if sid else None  # no sid: the outbox's creation marker
            if sid and fields.get(b"k") == b"released":
                self._on_released(sid.decode())
            elif session is not None:
                session.offer(fields)
            elif sid and b"f" in fields:  # a reattach elsewhere took over a session with no stream here
                self.cleanups.start(self._released(fields[b"f"].decode(), sid.decode()), "answer a takeover")
        self._outbox_last_id = batch[-1][0].decode()

    def _on_released(self, sid: str) -> None:
        """The stream a reattach here took over (on another front) writes no more."""
        event = self._releases.get(sid)
        if event is not None:
            event.set()

    async def _released(self, front_id: str, sid: str) -> None:
        await self.batcher.submit([released_entry(front_id, sid)])

    async def _keepalive_loop(self) -> None:
        # service/membership.py: the heartbeat, and the rejoin of a front declared dead while it was paused
        await every(self.settings.heartbeat_interval_s, self.membership.beat, f"front {self.id}: heartbeat")

    # -- sessions ----------------------------------------------------------------------------------

    async def open_session(self, tenant: str, first: gw.ClientMessage,
                           deadline_s: float | None = None) -> tuple[FrontSession, str]:
        """Validate ``setup``, admit it (waiting fairly within the caller's deadline), create the session in
        Redis and queue it for a worker."""
        setup = live.BidiGenerateContentSetup()
        setup.CopyFrom(first.setup)
        model = validate_setup(setup, tuple(m for r in self.routing.routes.values() for m in (r.models or LIVE_MODELS)))
        route = self.routing.choose(tenant, first.options.upstream, model)
        wait_s = min(deadline_s, self.settings.setup_timeout_s) if deadline_s else self.settings.setup_timeout_s
        upstream_handle = gw_handle = ""
        if setup.session_resumption.handle:
            gw_handle = setup.session_resumption.handle
            upstream_handle, earlier = await self._resolve_handle(tenant, model, gw_handle)
            setup.session_resumption.ClearField("handle")
            if earlier:  # the conversation's earlier session may still hold the upstream: it ends first
                await end_earlier_session(self, tenant, earlier, wait_s)
        lease = await self.admission.acquire(tenant, scope_of(route.name, model), max(0.0, wait_s - 0.5))
        # no await from here to _create's first line: from then on _create owns the lease, whatever happens
        return await self._create(tenant, first, setup, model, route, upstream_handle, lease, gw_handle)

    async def _create(self, tenant: str, first: gw.ClientMessage, setup: live.BidiGenerateContentSetup, model: str,
                      route: Any, upstream_handle: str, lease: Lease, gw_handle: str = "") -> tuple[FrontSession, str]:
        """Write the session and queue it. Owned from the first write: if the caller is cancelled (or anything
        fails) before this returns, the write still completes, and then the session is ended (its caller never
        got its id and token) and the lease given back, by owned work that outlives the caller."""
        write: asyncio.Task[Any] | None = None
        session: FrontSession | None = None
        try:
            session, token, write = self._write_new(tenant, first, setup, model, route, upstream_handle, lease,
                                                    gw_handle)
            await asyncio.shield(write)
        except BaseException:
            if session is not None and self.sessions.get(session.sid) is session:
                del self.sessions[session.sid]
            self.cleanups.start(self._unwind_create(session, write, lease), "end a session its caller never got")
            raise
        logger.info("session %s created for tenant %s (model %s)", session.sid, tenant, model)
        return session, token

    async def _unwind_create(self, session: FrontSession | None, write: asyncio.Task[Any] | None,
                             lease: Lease) -> None:
        if session is not None and write is not None:
            with contextlib.suppress(Exception):  # a failed write may have been applied in part: close anyway
                await write
            if await session.request_close():
                return  # the record held the lease: whoever ends the session gives it back
        await self.admission.release(lease)

    def _write_new(self, tenant: str, first: gw.ClientMessage, setup: live.BidiGenerateContentSetup, model: str,
                   route: Any, upstream_handle: str, lease: Lease,
                   gw_handle: str) -> tuple[FrontSession, str, asyncio.Task[Any]]:
        """The session's object and its record's write, started (an owned task) with no await in between."""
        sid = "s-" + secrets.token_urlsafe(18)
        token = secrets.token_urlsafe(32)
        record = records.SessionRecord(
            sid=sid, tenant=tenant, model=model, flavour=route.flavour, front=self.id, route=route.name,
            setup=setup.SerializeToString(), options=first.options.SerializeToString() if first.HasField("options") else b"",
            reattach_hash=records.hash_token(token), wants_resumption=first.setup.HasField("session_resumption"),
            handle=upstream_handle, lease=str(lease), tenant_label=metrics.tenant_label(tenant))
        logs.bind(session=sid)  # the rest of the caller's Connect call logs with it
        session = FrontSession(self, sid, tenant, model=model)
        session.grace_s = records.reattach_grace_s(record.options, self.settings)
        self.sessions[sid] = session
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(keys.session_meta(sid), mapping=record.to_redis())
        pipe.expire(keys.session_meta(sid), self.settings.session_key_ttl_s)
        pipe.zadd(keys.tenant_sessions(tenant), {sid: record.created_ms})
        pipe.xadd(keys.ALLOC_STREAM, {"s": sid})
        if gw_handle:  # the conversation goes on here: its handle now names this session
            pipe.eval(records.HANDLE_SESSION, 1, keys.handle(gw_handle), sid)
        return session, token, self.cleanups.start(pipe.execute(), f"create {sid}")

    async def reattach_session(self, tenant: str, req: gw.Reattach) -> tuple[FrontSession, str]:
        """A caller returns to a live session (after a network break or a front restart): check the token,
        make this front its front, and have the caller's stream replay everything after ``last_seq``."""
        sid = req.session_id
        unknown = not_found(f"no live session {echo(sid)} for this caller (ended, expired, or a wrong reattach token)",
                            "SESSION_NOT_FOUND")
        if not validate_session_id(sid, "reattach.session_id"):
            raise unknown
        logs.bind(session=sid)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(keys.session_meta(sid))
        pipe.xrange(keys.session_s2c(sid), "-", "+", count=1)
        raw, first = await pipe.execute(raise_on_error=False)
        if not isinstance(raw, dict) or not raw:
            raise unknown
        r = records.SessionRecord.from_redis(raw)
        if r.tenant != tenant or not req.reattach_token or not records.token_matches(req.reattach_token, r.reattach_hash):
            raise unknown
        oldest = keys.stream_seq(first[0][0]) if isinstance(first, list) and first else 0
        if oldest and req.last_seq + 1 < oldest:
            raise GatewayError(grpc.StatusCode.OUT_OF_RANGE, "REPLAY_TRIMMED",
                               f"server messages after seq {req.last_seq} are no longer kept (the oldest is {oldest}); "
                               "start a new session (or resume it with its resumption handle)")
        session = FrontSession(self, sid, tenant, last_seq=req.last_seq, worker=r.worker, model=r.model)
        session.grace_s = records.reattach_grace_s(r.options, self.settings)
        prev, self.sessions[sid] = self.sessions.get(sid), session
        # Owned from the takeover's write: if this caller is cancelled (or anything fails) once the script may
        # have run, the session is detached again for its grace when the script's answer is in.
        took = self.cleanups.start(self.redis.eval(records.REATTACH, 1, keys.session_meta(sid), self.id,
                                                   records.now_ms()), f"reattach {sid}")
        try:
            taken = await asyncio.shield(took)
            if taken is None:  # ended meanwhile, or its grace is over
                raise unknown
            await self._take_over(session, taken, prev)
            # through the batcher: after every write this front still has in flight for the session (a stream
            # of it that ended a moment ago), so none of them can take an index this stream takes
            (c2s,) = await self.batcher.submit([("XINFO", "STREAM", keys.session_c2s(sid))])
            session.renumber(_last_id(c2s))
            if session.worker:  # "" while no worker has taken it: the caller waits for one (setup_timeout_s)
                await session.tell_worker("attach", self.id)
        except BaseException:
            if self.sessions.get(sid) is session:
                refused = took.done() and not took.cancelled() and took.exception() is None and took.result() is None
                if prev is not None and refused:  # nothing was taken over: the stream here goes on as it was
                    self.sessions[sid] = prev
                else:
                    del self.sessions[sid]
            self.cleanups.start(self._unwind_reattach(session, took, prev), f"detach {sid} after a lost reattach")
            raise
        metrics.REATTACHES.labels("ok").inc()
        logger.info("session %s reattached at seq %d (tenant %s)", sid, req.last_seq, tenant)
        return session, req.reattach_token

    async def _take_over(self, session: FrontSession, taken: list[bytes], prev: FrontSession | None) -> None:
        """After REATTACH made this front the session's: one stream per session. The stream this reattach took
        over ends (REATTACHED_ELSEWHERE), on whatever front it is, and the new stream numbers its caller's
        messages after everything that one wrote."""
        owner, before, state = (x.decode() for x in taken)
        session.worker = owner
        await self._take_over_stream(session.sid, before, state, prev)

    async def _take_over_stream(self, sid: str, before: str, state: str, prev: FrontSession | None) -> None:
        """End the stream the session had before this reattach and wait (bounded) until it writes no more. A
        detached session has no stream (its caller is gone)."""
        if before == self.id:
            if prev is not None:
                prev.supersede()
                await prev.writes_done(self.settings.close_timeout_s)
            return
        if state == records.DETACHED or not before or await self.redis.zscore(keys.FRONTS, before) is None:
            return  # no stream (its caller is gone), or its front is gone (reaped, or rejoined as another id)
        released = self._releases[sid] = asyncio.Event()
        try:
            await self.batcher.submit([superseded_entry(before, sid, self.id)])
            # a front that is gone never answers: its stream is gone with it
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TAKEOVER_WAIT_S):
                    await released.wait()
        finally:
            if self._releases.get(sid) is released:
                del self._releases[sid]

    async def _unwind_reattach(self, session: FrontSession, took: asyncio.Task[Any], prev: FrontSession | None) -> None:
        """A reattach lost (cancelled or failed) after its REATTACH was sent: if the takeover happened, finish
        it (the previous stream ends; the worker is told this front is the session's), then detach the session
        for its grace as for any lost caller."""
        try:
            taken = await took
        except Exception:
            return  # the script failed: the session was not taken over
        if taken is None:
            return  # ended meanwhile: nothing of this caller's is in the session
        await self._take_over(session, taken, prev)
        if session.worker:  # the worker ignores a detach from a front it does not deliver to
            await session.tell_worker("attach", self.id)
        await self.detach_lost(session)

    def caller_lost(self, session: FrontSession) -> None:
        """The stream of ``session`` ended without a close: keep the session for a reattach (owned work)."""
        self.cleanups.start(self.detach_lost(session), f"detach {session.sid}")

    async def detach_lost(self, session: FrontSession) -> None:
        if self.sessions.get(session.sid) not in (None, session):
            return  # the caller already reattached (here) on a new stream
        try:
            until_ms = await session.detach(session.grace_s)
            if until_ms is not None:  # no worker owns it yet: this front ends it if none does before the grace ends
                self.end_unclaimed_after(session, until_ms)
            logger.info("session %s: caller gone; kept %.0fs for a reattach", session.sid, session.grace_s)
        except Exception as exc:
            logger.warning("session %s: detach after caller loss failed: %r", session.sid, exc)

    async def _resolve_handle(self, tenant: str, model: str, token: str) -> tuple[str, str]:
        """The upstream handle of a gateway handle, and the session that holds its conversation ("" if none
        is recorded)."""
        raw = await self.redis.hgetall(keys.handle(token)) if token.startswith("lgh_") else {}
        if not raw or raw.get(b"tenant", b"").decode() != tenant:
            raise not_found("session_resumption.handle is unknown or expired; start a new session without it",
                            "HANDLE_NOT_FOUND")
        if raw.get(b"model", b"").decode() != model:
            raise invalid_argument("a session can only be resumed with the model it started with "
                                   f"({raw[b'model'].decode()})", "HANDLE_MODEL_MISMATCH")
        return raw[b"handle"].decode(), raw.get(b"sid", b"").decode()

    async def session_view(self, tenant: str, sid: str) -> gw.Session:
        missing = not_found(f"no live session {echo(sid)} for this caller: it ended, it expired, or the id is wrong",
                            "SESSION_NOT_FOUND")
        if not validate_session_id(sid):
            raise missing
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(keys.session_meta(sid))
        pipe.xinfo_stream(keys.session_c2s(sid))
        pipe.xinfo_stream(keys.session_s2c(sid))
        raw, c2s, s2c = await pipe.execute(raise_on_error=False)
        if not isinstance(raw, dict) or not raw:
            raise missing
        r = records.SessionRecord.from_redis(raw)
        if r.tenant != tenant:  # the same answer as for an id that does not exist: ids reveal nothing
            raise missing
        return session_proto(r, _last_id(c2s), _last_seq(s2c))

    async def list_sessions(self, tenant: str, size: int, token: str) -> gw.ListSessionsResponse:
        """One page of the tenant's live sessions, oldest first (``service/pages.py``)."""
        size, after = pages.page_size(size), pages.Cursor.parse(token)
        sids, next_page = await pages.page(self.redis, keys.tenant_sessions(tenant), after, size)
        resp = gw.ListSessionsResponse()
        for sid in sids:
            try:
                resp.sessions.append(await self.session_view(tenant, sid))
            except GatewayError:
                continue  # ended between the two reads
        if next_page is not None:
            resp.next_page_token = next_page.token()
        return resp

    async def close_session(self, tenant: str, sid: str) -> gw.Session:
        view = await self.session_view(tenant, sid)
        local = self.sessions.get(sid)
        probe = local or FrontSession(self, sid, tenant)
        await probe.request_close("admin_close")
        view.state = gw.Session.CLOSING
        return view


def connection_age_options(settings: Settings) -> list[tuple[str, int]]:
    """gRPC server options that age callers' connections out (helm/livegate/README.md, "Spreading sessions over
    fronts"). A GOAWAY at ``grpc_max_connection_age_s`` sends the caller's new calls to a new connection, which the
    Service may place on another front; streams already open stay on the old connection, cut only after a
    non-zero ``grpc_max_connection_age_grace_s`` (gRPC's default grace is unbounded)."""
    if not settings.grpc_max_connection_age_s:
        return []
    options = [("grpc.max_connection_age_ms", max(1, round(settings.grpc_max_connection_age_s * 1000)))]
    if settings.grpc_max_connection_age_grace_s:
        options.append(("grpc.max_connection_age_grace_ms",
                        max(1, round(settings.grpc_max_connection_age_grace_s * 1000))))
    return options


def _last_id(info: Any) -> int:
    """The number of the last message a c2s log took, from XINFO STREAM (its entries may all be trimmed), as
    redis-py or the batcher parse it."""
    if not isinstance(info, dict):
        return 0
    return keys.stream_seq(info.get("last-generated-id", info.get(b"last-generated-id", b"0-0")))


def _last_seq(info: Any) -> int:
    """The seq of the last message an s2c log holds (a claim moves its last-generated-id to <epoch>-0)."""
    if not isinstance(info, dict) or not info.get("last-entry"):
        return 0
    return keys.stream_seq(info["last-entry"][0])


_STATES = {records.PENDING: gw.Session.PENDING, records.ACTIVE: gw.Session.ACTIVE,
           records.RESUMING: gw.Session.RESUMING, records.DETACHED: gw.Session.DETACHED,
           records.CLOSING: gw.Session.CLOSING}


def session_proto(r: records.SessionRecord, client_messages: int, server_messages: int) -> gw.Session:
    s = gw.Session(session_id=r.sid, tenant=r.tenant, model=r.model, state=_STATES.get(r.state, gw.Session.STATE_UNSPECIFIED),
                   worker_id=r.worker, front_id=r.front, flavour=r.flavour)
    s.create_time.FromMilliseconds(r.created_ms)
    s.age.FromMilliseconds(max(0, records.now_ms() - r.created_ms))
    c = s.counters
    c.client_messages = client_messages
    c.server_messages = server_messages
    c.upstream_connects = r.connects
    c.go_aways = r.go_aways
    c.resumes = r.resumes
    c.reattaches = r.reattaches
    return s
