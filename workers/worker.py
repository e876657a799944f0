"""A worker process: pulls sessions from Redis while under capacity and relays each one.

Lifecycle: ``start()`` (register; heartbeat, allocation, inbox and reaper loops), ``drain()`` (stop taking
sessions, let live ones finish within the drain timeout), ``aclose()`` (cancel what is left, close
clients). All idempotent. Signals are handled by the CLI, not here. The heartbeat is
``workers/heartbeat.py``, crash takeover ``workers/takeover.py``, upstream connections ``workers/upstream.py``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Any

from redis.exceptions import ResponseError
from websockets.asyncio.client import ClientConnection

from livegate import __version__, logs, metrics, tenants
from livegate.looplag import LoopLagMonitor
from livegate.redis import keys, membership, records
from livegate.redis.bus import Batcher, read_stream, supervise
from livegate.cleanups import Cleanups, wait_bounded
from livegate.errors import GatewayError
from livegate.admission.control import Lease, admission_from_settings
from livegate.redis.connect import AnyRedis, connect
from livegate.routes import Routing, UpstreamRoute
from livegate.settings import Settings
from workers import upstream
from workers.events import InboxItem, end_fields
from workers.heartbeat import Heartbeat
from workers.relay import SessionRelay
from workers.takeover import Reaper

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class WorkerStats:
    c2s: int = 0
    s2c: int = 0
    taken: int = 0
    ended: int = 0


class Worker:
    def __init__(self, settings: Settings, *, redis: AnyRedis | None = None) -> None:
        self.settings = settings.with_ids("worker")
        self.base_id = self.settings.worker_id
        self.generation = 1  # this process's membership: a new identity each time the fleet declared it dead
        self.id = self.base_id
        self._own_redis = redis is None
        self.redis: AnyRedis = redis if redis is not None else connect(self.settings.redis_url, client_name=self.id)
        self.batcher = Batcher(self.redis, role="worker")
        self.cleanups = Cleanups(f"worker {self.id}")  # a session's last writes, which outlive its relay task
        self.sessions: dict[str, SessionRelay] = {}
        # lease ids given back by sessions still in self.sessions: a heartbeat's renewal that runs after the
        # release puts the lease back, and the heartbeat gives it back again
        self.released_leases: set[str] = set()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._loops: list[asyncio.Task[None]] = []
        self._stop: asyncio.Event | None = None  # created in start(): constructors touch no event loop
        self._capacity: asyncio.Event | None = None
        self._member: asyncio.Event | None = None  # set while the fleet counts this identity alive (see rejoin)
        self._inbox_task: asyncio.Task[None] | None = None
        self.routing = Routing.from_settings(self.settings)
        self.admission = admission_from_settings(self.redis, self.settings)
        metrics.label_tenants(tenants.named(self.settings))  # every other tenant is counted as `other`
        self.upstreams = upstream.Upstreams(self.settings)
        self._inbox_last_id = "0-0"
        self._claiming: dict[str, list[InboxItem]] = {}  # inbox entries of sessions being claimed
        self._recheck_pending = False  # re-read our pending allocation entries (after a failed read)
        self._started = False
        self._closed = False
        self._draining = False
        self.heartbeat = Heartbeat(self)
        self.reaper = Reaper(self)
        self.lag = LoopLagMonitor("worker", name=f"worker {self.id}")
        self.stats = WorkerStats()

    def __repr__(self) -> str:
        return f"<Worker {self.id} sessions={len(self.sessions)}/{self.settings.worker_capacity}>"

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._stop = asyncio.Event()
        self._capacity = asyncio.Event()
        self._member = asyncio.Event()
        self._update_capacity()
        self.lag.start()
        try:
            await self.redis.xgroup_create(keys.ALLOC_STREAM, keys.ALLOC_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        for route in self.routing.routes.values():  # a bad CA file stops the worker here
            self.upstreams.prepare(route)
        await self.batcher.start()
        # the inbox is created by its owner only (fronts write with NOMKSTREAM): never recreated once dead
        await self.heartbeat.join()
        self._member.set()
        self._inbox_task = asyncio.create_task(supervise("inbox", self._inbox_loop), name="worker-inbox")
        self._loops = [
            asyncio.create_task(supervise("heartbeat", self.heartbeat.run), name="worker-heartbeat"),
            asyncio.create_task(supervise("allocation", self._allocation_loop), name="worker-allocation"),
            asyncio.create_task(supervise("reaper", self.reaper.run), name="worker-reaper"),
        ]
        metrics.BUILD.info({"version": __version__, "role": "worker"})
        logger.info("worker %s started (capacity %d)", self.id, self.settings.worker_capacity)

    async def drain(self, timeout_s: float | None = None) -> None:
        """Stop taking sessions and hand every live one to another worker (planned migration through
        resumption), bounded by the drain timeout; what is left is cancelled by ``aclose``."""
        if self._stop is not None:
            self._stop.set()
        self._draining = True
        n = len(self.sessions)
        for relay in list(self.sessions.values()):
            relay.deliver(InboxItem("migrate", 0))
        deadline = time.monotonic() + (self.settings.drain_timeout_s if timeout_s is None else timeout_s)
        while self._tasks and time.monotonic() < deadline:
            await asyncio.wait(list(self._tasks.values()), timeout=max(0.0, deadline - time.monotonic()))
        logger.info("worker %s drained: %d sessions handed over, %d left", self.id, n - len(self._tasks), len(self._tasks))

    async def hand_over(self, relay: SessionRelay) -> None:
        """Queue ``relay``'s session for another worker, which claims it from us and resumes it."""
        await self.batcher.submit([
            ("XADD", keys.ALLOC_STREAM, "*", "s", relay.sid, "from", self.id, "k", "migrate", "hb", records.now_ms()),
            ("SREM", keys.worker_sessions(self.id), relay.sid)])

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._stop is not None:
            self._stop.set()
        held = list(self.sessions)
        tasks = list(self._tasks.values()) + self._loops + ([self._inbox_task] if self._inbox_task else [])
        for t in tasks:
            t.cancel()
        await wait_bounded(tasks, 5.0, f"worker {self.id}: tasks ignored their cancellation")
        await self.cleanups.aclose(timeout_s=5.0)
        await self.admission.aclose(timeout_s=1.0)
        try:
            # sessions still held (not handed over within the drain timeout): the fleet takes them over now
            # rather than after our heartbeat expires
            if held:
                await self._requeue(held)
            await self.redis.zrem(keys.WORKERS, self.id)
            await self.redis.xgroup_delconsumer(keys.ALLOC_STREAM, keys.ALLOC_GROUP, self.id)
            await self.redis.delete(keys.worker_heartbeat(self.id), keys.worker_inbox(self.id))
        except Exception as exc:  # Redis gone: the heartbeat TTL cleans up
            logger.warning("worker %s: could not deregister: %r", self.id, exc)
        await self.batcher.aclose()
        if self._own_redis:
            await self.redis.aclose()
        await self.lag.aclose()
        logger.info("worker %s closed: taken=%d ended=%d", self.id, self.stats.taken, self.stats.ended)

    async def _requeue(self, sids: list[str], owner: str = "") -> None:
        """Give sessions this worker holds (as ``owner``: its current identity by default) but will not relay
        to the fleet now, rather than after its heartbeat expires."""
        pipe = self.redis.pipeline(transaction=False)
        for sid in sids:
            pipe.xadd(keys.ALLOC_STREAM, {"s": sid, "from": owner or self.id, "k": "takeover", "hb": records.now_ms()})
        await pipe.execute()
        logger.warning("worker %s: requeued %d sessions it could not hand over", self.id, len(sids))

    async def abandon_all(self) -> None:
        """Stop relaying every session without cleaning up: the fleet gave them to other workers."""
        tasks = list(self._tasks.values())
        for relay in self.sessions.values():
            relay.abandon()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def member(self) -> bool:
        """The fleet counts this worker's current identity alive (false from the moment a beat finds it was
        declared dead until it has rejoined)."""
        return self._member is not None and self._member.is_set()

    async def rejoin(self, silent_s: float) -> None:
        """The fleet declared this worker dead while it was paused (its beats stalled past the heartbeat TTL):
        a reaper removed it from the registry, requeued its sessions and deleted its inbox. Never carry on
        half-alive under that identity: stop claiming, stop every relay (they are someone else's now; their
        upstream sockets are closed), give back any session the reaper did not know of, then join again as a
        new identity with a new inbox. Not ready from the first moment to the last."""
        assert self._member is not None
        old = self.id
        self._member.clear()
        metrics.MEMBERSHIP_LOST.labels("worker").inc()
        held = list(self.sessions)
        logger.error("worker %s: declared dead by the fleet (no heartbeat reached Redis for %.1f s, over the %.1f s "
                     "TTL: the process was paused or its event loop stalled); its sessions were given to other "
                     "workers: stopping its %d relays and rejoining under a new identity", old, silent_s,
                     self.settings.heartbeat_ttl_s, len(held))
        await self.abandon_all()
        if self._inbox_task is not None:
            self._inbox_task.cancel()
            await asyncio.gather(self._inbox_task, return_exceptions=True)
        # a session we claimed after the reaper read our session set is nobody's: give it back. A claim expecting
        # the old identity takes it; an entry duplicating the reaper's finds the session owned and is skipped.
        if held:
            await self._requeue(held, owner=old)
        self.generation += 1
        self.id = membership.incarnation(self.base_id, self.generation)
        # what the reaper deletes, again (idempotent); entries the allocation loop read as the old consumer were
        # given back and acknowledged
        await self.redis.delete(keys.worker_inbox(old), keys.worker_heartbeat(old), keys.worker_sessions(old))
        await self.redis.xgroup_delconsumer(keys.ALLOC_STREAM, keys.ALLOC_GROUP, old)
        self._inbox_last_id = "0-0"
        await self.heartbeat.join()
        self._inbox_task = asyncio.create_task(supervise("inbox", self._inbox_loop), name="worker-inbox")
        self._member.set()
        logger.warning("worker %s: rejoined the fleet as %s (ready again)", old, self.id)

    def ready(self) -> bool:
        """Taking sessions: started, not draining, a member of the fleet, and the last heartbeat reached Redis
        within its TTL."""
        return (self._started and not self._closed and not self._draining and self.member
                and self.heartbeat.fresh())

    # -- allocation ----------------------------------------------------------------------------------

    def _update_capacity(self) -> None:
        assert self._capacity is not None
        if len(self.sessions) < self.settings.worker_capacity:
            self._capacity.set()
        else:
            self._capacity.clear()

    async def _allocation_loop(self) -> None:
        assert self._stop is not None and self._capacity is not None and self._member is not None
        while not self._stop.is_set():
            await self._capacity.wait()
            await self._member.wait()
            if self._stop.is_set():
                return
            if not self.heartbeat.fresh():
                # our last beat is older than the TTL (we were paused): the fleet may be reaping us; claim
                # nothing until a beat says whether we are still a member
                await asyncio.sleep(self.settings.heartbeat_interval_s / 2)
                continue
            # ">" delivers new entries; after a failed read, "0" first re-reads our own pending ones: an XREADGROUP
            # whose reply was lost with the connection still delivered its entry to us, and only we can take it
            start = "0" if self._recheck_pending else ">"
            try:
                reply = await self.redis.xreadgroup(keys.ALLOC_GROUP, self.id, {keys.ALLOC_STREAM: start},
                                                    count=1, block=500)
            except Exception as exc:
                logger.warning("worker %s: allocation read failed: %r", self.id, exc)
                self._recheck_pending = True
                await asyncio.sleep(0.2)
                continue
            if start == "0" and not _entries(reply):
                self._recheck_pending = False
            for eid, fields in _entries(reply):
                if not fields:  # a pending entry deleted meanwhile
                    await self.redis.xack(keys.ALLOC_STREAM, keys.ALLOC_GROUP, eid)
                    continue
                if self._stop.is_set() or not self.member or not self.heartbeat.fresh():
                    # read just as we began to drain, or as the fleet may be declaring us dead: give it back
                    await self.batcher.submit([("XADD", keys.ALLOC_STREAM, "*", *[x for kv in fields.items() for x in kv]),
                                               ("XACK", keys.ALLOC_STREAM, keys.ALLOC_GROUP, eid),
                                               ("XDEL", keys.ALLOC_STREAM, eid)])
                    continue
                try:
                    await self._take(fields[b"s"].decode(), fields.get(b"from", b"").decode(),
                                     cause=fields.get(b"k", b"new").decode(), last_heartbeat_ms=int(fields.get(b"hb", 0)))
                finally:
                    await self.redis.xack(keys.ALLOC_STREAM, keys.ALLOC_GROUP, eid)
                    await self.redis.xdel(keys.ALLOC_STREAM, eid)

    async def _take(self, sid: str, expected_owner: str, *, cause: str = "new", last_heartbeat_ms: int = 0) -> None:
        # Once the claim succeeds, fronts route this session's entries to our inbox; hold them until the
        # relay exists (a close can arrive between the claim and the registration below).
        self._claiming[sid] = []
        claimed = started = False
        claimed_as = self.id
        try:
            epoch = await records.claim(self.redis, sid, claimed_as, expected=expected_owner,
                                        ttl_s=self.settings.session_key_ttl_s)
            if epoch <= 0:
                logger.info("worker %s: session %s not claimable (%s)", self.id, sid, "gone" if epoch < 0 else "owned",
                            extra=logs.fields(session=sid))
                return
            claimed = True
            record = await records.load(self.redis, sid)
            if record is None:
                return
            last = await self.redis.xrevrange(keys.session_s2c(sid), "+", "-", count=1)
            relay = SessionRelay(self, record, epoch, last_seq=keys.stream_seq(last[0][0]) if last else 0,
                                 cause=cause, since_ms=last_heartbeat_ms)
            if last:  # what earlier owners logged counts against the log's size bound until it is trimmed
                relay.s2c_bytes.add(0, int(await self.redis.memory_usage(keys.session_s2c(sid), samples=0) or 0))
            await self.redis.sadd(keys.worker_sessions(claimed_as), sid)
            for item in self._claiming[sid]:
                relay.deliver(item)
            # no await from this check to the task's creation: aclose (or a rejoin) either sees the task or we
            # see the stop (or the claim made under an identity that is no longer ours)
            if self._stop is not None and self._stop.is_set() or not self.member or self.id != claimed_as:
                return
            self.sessions[sid] = relay
            self.stats.taken += 1
            self._update_capacity()
            self._tasks[sid] = asyncio.create_task(self._run_session(relay), name=f"session-{sid}")
            started = True
        finally:
            self._claiming.pop(sid, None)
            if claimed and not started:  # claimed as this worker began to close: the fleet takes it over now
                self.cleanups.start(self._requeue([sid], owner=claimed_as), f"requeue {sid}")
        logger.info("worker %s took session %s (%s, epoch %d, model %s)", self.id, sid, cause, epoch, record.model,
                    extra=logs.fields(session=sid, tenant=record.tenant))

    async def _run_session(self, relay: SessionRelay) -> None:
        task = asyncio.current_task()
        logs.bind(session=relay.sid, tenant=relay.record.tenant)  # this task's lines, and its children's
        try:
            await relay.run()
        finally:  # only our own entries: a later claim of the same session may have registered its own
            if self.sessions.get(relay.sid) is relay:
                del self.sessions[relay.sid]
            if self._tasks.get(relay.sid) is task:
                del self._tasks[relay.sid]
            self.stats.ended += 1
            self._update_capacity()

    # -- inbox -------------------------------------------------------------------------------------

    async def _inbox_loop(self) -> None:
        assert self._stop is not None
        async for batch in read_stream(self.redis, keys.worker_inbox(self.id), last_id=self._inbox_last_id, stop=self._stop):
            for _eid, f in batch:
                if b"s" not in f:
                    continue  # the inbox's creation marker
                sid = f[b"s"].decode()
                item = InboxItem(f.get(b"k", b"msg").decode(), int(f.get(b"i", 0)), f.get(b"m", b""), int(f.get(b"t", 0)))
                relay = self.sessions.get(sid)
                if relay is not None:
                    relay.deliver(item)
                elif sid in self._claiming:
                    self._claiming[sid].append(item)
                else:
                    logger.debug("worker %s: inbox entry for a session it does not hold: %r", self.id, f)
            self._inbox_last_id = batch[-1][0].decode()

    # -- services for relays -----------------------------------------------------------------------

    async def open_upstream(self, route: UpstreamRoute) -> ClientConnection:
        return await self.upstreams.open(route)

    def write_server_message(self, relay: SessionRelay, seq: int, data: bytes, t_ns: int) -> asyncio.Future[list[Any]]:
        """The s2c log entry (id ``<epoch>-<seq>``: refused once another worker has claimed the session) and the
        front's outbox entry (tagged with the epoch, so the front drops a stale owner's), in one pipeline.
        The claim created the log; NOMKSTREAM: a late write never resurrects an ended session."""
        s = self.settings
        self.stats.s2c += 1
        log = keys.session_s2c(relay.sid)
        cmds: list[tuple[Any, ...]] = [
            ("XADD", log, "NOMKSTREAM", "MAXLEN", "~", s.s2c_history_len, keys.log_id(relay.epoch, seq), "m", data,
             "t", t_ns),
            # a big message goes by reference (a sync up to its seq: the front reads it from the log), so the
            # outbox holds at most inbox_len entries of stream_inline_max_bytes each
            ("XADD", keys.front_outbox(relay.record.front), "NOMKSTREAM", "MAXLEN", "~", s.inbox_len, "*",
             "s", relay.sid, "q", seq, "m", data, "t", t_ns, "w", self.id, "ep", relay.epoch)
            if len(data) <= s.stream_inline_max_bytes else self._sync_entry(relay, relay.record.front)]
        relay.s2c_bytes.add(seq, len(data))
        oldest = relay.s2c_bytes.trim_to(s.s2c_log_max_bytes)  # the reattach history is bounded by size too
        if oldest is not None:
            cmds.append(("XTRIM", log, "MINID", keys.log_id(relay.epoch, oldest)))
        return self.batcher.submit(cmds)

    async def save_handle(self, relay: SessionRelay, handle: str, index: int) -> bool:
        """Store the upstream handle (fenced by epoch) and trim the client log it covers. Writes from relay
        tasks go through the batcher: a relay task then only awaits a plain future, which cancels cleanly
        (redis-py's own awaits were seen to swallow a task cancellation on Python 3.11)."""
        cmds = [_fenced_hset(relay, handle=handle, resumable=True, handle_index=index, connects=relay.record.connects,
                             resumes=relay.record.resumes, go_aways=relay.record.go_aways)]
        if index > 0:  # the handle covers these client messages: the replay log no longer needs them
            cmds.append(("XTRIM", keys.session_c2s(relay.sid), "MINID", keys.stream_id(index + 1)))
        replies = await self.batcher.submit(cmds)
        return replies[0] == 1

    async def save_fields(self, relay: SessionRelay, **fields: Any) -> bool:
        """Update ``relay``'s session record while it is still ours (fenced by epoch)."""
        replies = await self.batcher.submit([_fenced_hset(relay, **fields)])
        return replies[0] == 1

    async def save_detached(self, relay: SessionRelay, front: str, until_ms: int) -> int:
        """Record that ``front`` lost ``relay``'s caller (records.FENCED_DETACH): 1 done, 0 the session is not
        ours any more, -1 its caller has reattached through another front since (a stale detach)."""
        replies = await self.batcher.submit([("EVAL", records.FENCED_DETACH, 1, keys.session_meta(relay.sid),
                                              self.id, relay.epoch, front, until_ms)])
        return int(replies[0])

    async def attach_front(self, relay: SessionRelay, front: str) -> None:
        """The caller reattached through ``front``: deliver there from now on, and tell it our current seq so
        it fills anything written to the previous front's outbox from the session's log."""
        relay.record.front = front
        await self.batcher.submit([self._sync_entry(relay, front), _fenced_hset(relay, state=records.ACTIVE)])

    async def announce(self, relay: SessionRelay, front: str) -> None:
        """Tell ``front`` that this worker owns ``relay``'s session at its epoch: client messages come here, and
        outbox entries of an earlier owner are stale from now on."""
        await self.batcher.submit([self._sync_entry(relay, front)])

    def _sync_entry(self, relay: SessionRelay, front: str) -> tuple[Any, ...]:
        return ("XADD", keys.front_outbox(front), "NOMKSTREAM", "MAXLEN", "~", self.settings.inbox_len, "*",
                "s", relay.sid, "k", "sync", "q", relay.seq, "w", self.id, "ep", relay.epoch)

    async def publish_handle(self, relay: SessionRelay, token: str, upstream_handle: str) -> None:
        """Store the caller-facing resumption handle ``token``: it maps to the upstream handle inside Redis
        only (upstream handles never leave the gateway) and lets a new session of the same tenant continue
        this conversation."""
        key = keys.handle(token)
        r = relay.record
        await self.batcher.submit([
            ("HSET", key, "tenant", r.tenant, "model", r.model, "flavour", r.flavour, "handle", upstream_handle,
             "sid", relay.sid),  # the session that holds the conversation (service/resume.py)
            ("EXPIRE", key, self.settings.handle_ttl_s)])

    async def end_session(self, relay: SessionRelay, error: GatewayError | None) -> None:
        """Tell the front how the session ended and delete its keys, through the batcher so that every
        write this session queued before lands first."""
        sid = relay.sid
        r = relay.record
        try:
            await self.batcher.submit([
                ("XADD", keys.front_outbox(r.front), "NOMKSTREAM", "MAXLEN", "~", self.settings.inbox_len, "*",
                 "s", sid, "w", self.id, "ep", relay.epoch, *[x for kv in end_fields(error).items() for x in kv]),
                ("DEL", *keys.session_keys(sid)),
                ("SREM", keys.worker_sessions(self.id), sid),
                ("ZREM", keys.tenant_sessions(r.tenant), sid),
            ])
            if r.lease:
                lease = Lease.parse(r.lease)
                if error is not None and error.reason == "UPSTREAM_QUOTA_EXCEEDED":
                    # the upstream's real cap is lower than configured: admit fewer until it recovers
                    await self.admission.on_upstream_quota_exceeded(lease.scope)
                await self.admission.release(lease)
                self.released_leases.add(lease.id)
        except Exception as exc:
            logger.warning("session %s: cleanup failed (%r); keys expire by TTL", sid, exc, extra=logs.fields(session=sid))


def _entries(reply: Any) -> list[tuple[bytes, dict[bytes, bytes]]]:
    from livegate.redis.bus import _entries as parse

    return parse(reply, keys.ALLOC_STREAM) if reply else []


def _fenced_hset(relay: SessionRelay, **fields: Any) -> tuple[Any, ...]:
    args: list[Any] = [relay.worker.id, relay.epoch]
    for k, v in fields.items():
        args.extend((k, int(v) if isinstance(v, bool) else v))
    return ("EVAL", records.FENCED_HSET, 1, keys.session_meta(relay.sid), *args)
