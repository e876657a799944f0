"""The front's membership of the fleet: its heartbeat in ``lg:{fleet}:fronts``, and what it does when it finds
it was declared dead.

Every ``heartbeat_interval_s`` one pipeline refreshes the front's score (only while it is still a member:
``livegate/redis/membership.py``), keeps its outbox alive and reads the oldest peer heartbeats
(``livegate_heartbeat_age_seconds``). Then the admission headroom is exported.

A front paused past the heartbeat TTL (GC, CPU throttling, a VM stall, SIGSTOP) may have been reaped by a
worker meanwhile; the workers then detached its sessions (their callers' streams are orphaned: the sessions
end when the reattach grace runs out). Its next beat finds its member gone, and it **rejoins under a new
identity and re-attaches every live stream** (the same steps as a caller's reattach, done for it):

1. not ready (health NOT_SERVING, ``/readyz`` 503), ``livegate_membership_lost_total{role="front"}``, an ERROR;
2. the old outbox's unread entries are handed to their sessions (an ``end`` written while it was paused);
3. a new id (``<id>-r<n>``), its outbox created, its registry entry added; the outbox reader follows it;
4. each live session whose record still names the old id is pointed at the new one (``REATTACH``: a detached
   session is active again; one whose caller reattached through another front meanwhile is left there) and
   its worker told ``attach``: it delivers to the new outbox and sends a ``sync`` so the front fills what it
   missed from the session's log. A detach of the old id still on its way to the worker is ignored there
   (the record names the new front). A session that ended meanwhile (its grace ran out while the front was
   paused) ends its caller's stream with ``ABORTED`` / ``SESSION_LOST``;
5. ready again.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import grpc
import orjson
from grpc_health.v1 import health_pb2

from livegate import metrics
from livegate.redis import keys, membership, records
from service.servicer import SERVICE_NAME

if TYPE_CHECKING:
    from service.server import Front

logger = logging.getLogger(__name__)

OUTBOX_TTL_S = 60  # a dead front's outbox expires (workers write to it with NOMKSTREAM: never recreated)

SESSION_LOST = {b"k": b"end", b"c": str(grpc.StatusCode.ABORTED.value[0]).encode(), b"e": orjson.dumps({
    "reason": "SESSION_LOST", "retryable": False,
    "message": "the session ended while this gateway front was unresponsive (paused past its heartbeat TTL and "
               "the session's reattach grace); start a new session, or resume the conversation with its "
               "resumption handle"})}


class FrontMembership:
    def __init__(self, front: Front) -> None:
        self.front = front
        self.base_id = front.id
        self.generation = 1
        self.member = False  # the fleet counts the front's current identity alive
        self.last = 0.0  # when the last beat reached Redis (monotonic); 0: never

    def __repr__(self) -> str:
        return f"<FrontMembership {self.front.id} member={self.member} last={self.last:.1f}>"

    def fresh(self) -> bool:
        """A member, and the last beat reached Redis within the heartbeat TTL."""
        return self.member and time.monotonic() - self.last < self.front.settings.heartbeat_ttl_s

    async def join(self) -> None:
        """Register the front's current identity: its outbox first (once we are a member, workers may deliver
        to it), then its registry entry, in one round trip."""
        f = self.front
        pipe = f.redis.pipeline(transaction=False)
        pipe.xadd(keys.front_outbox(f.id), {"k": "hello"})
        pipe.expire(keys.front_outbox(f.id), OUTBOX_TTL_S)
        pipe.zadd(keys.FRONTS, {f.id: records.now_ms()})
        await pipe.execute()
        self.last = time.monotonic()
        self.member = True

    async def beat(self) -> None:
        """The front's heartbeat (workers detach the sessions of a front reaped for not beating) and its
        outbox's TTL; a front that finds itself reaped rejoins."""
        f = self.front
        now_ms = records.now_ms()
        pipe = f.redis.pipeline(transaction=False)
        pipe.eval(membership.BEAT, 1, keys.FRONTS, f.id, now_ms)
        pipe.expire(keys.front_outbox(f.id), OUTBOX_TTL_S)
        pipe.zrange(keys.WORKERS, 0, 0, withscores=True)
        pipe.zrange(keys.FRONTS, 0, 1, withscores=True)
        started = time.monotonic()
        member, _, workers, fronts = await pipe.execute()
        membership.warn_if_slow(f"front {f.id}", started, f.settings.heartbeat_ttl_s)
        if not member:
            await self.rejoin(time.monotonic() - self.last)
        else:
            self.last = time.monotonic()
            metrics.HEARTBEAT_AGE_SECONDS.labels("front", "worker").set(membership.oldest_peer_age_s(workers, f.id, now_ms))
            metrics.HEARTBEAT_AGE_SECONDS.labels("front", "front").set(membership.oldest_peer_age_s(fronts, f.id, now_ms))
        await f.admission.export_headroom()

    async def rejoin(self, silent_s: float) -> None:
        """Declared dead while paused: rejoin under a new identity and re-attach every live stream (see the
        module's docstring)."""
        f = self.front
        old = f.id
        self.member = False
        metrics.MEMBERSHIP_LOST.labels("front").inc()
        logger.error("front %s: declared dead by the fleet (no heartbeat reached Redis for %.1f s, over the %.1f s "
                     "TTL: the process was paused or its event loop stalled); the workers detached its %d sessions: "
                     "rejoining under a new identity and re-attaching them", old, silent_s,
                     f.settings.heartbeat_ttl_s, len(f.sessions))
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        await f.stop_outbox()
        # entries the workers wrote to the old outbox that we have not read (e.g. a session's end)
        unread = await f.redis.xrange(keys.front_outbox(old), f"({f._outbox_last_id}", "+")
        if unread:
            f.dispatch(unread)
        self.generation += 1
        f.id = membership.incarnation(self.base_id, self.generation)
        await self.join()
        f.follow_outbox("0-0")
        ended = moved = 0
        for session in list(f.sessions.values()):
            took = await f.redis.eval(records.REATTACH, 1, keys.session_meta(session.sid), f.id, records.now_ms(), old)
            if took is None:  # it ended, or its grace ran out, while we were paused: its worker is ending it
                session.offer(SESSION_LOST)
                ended += 1
                continue
            owner, _, previous = took  # {owner, previous front, previous state}
            if previous == b"moved":
                moved += 1  # its caller reattached through another front: that stream is the session's now
            elif owner:
                session.worker = owner.decode()
                await session.tell_worker("attach", f.id)
        await f.redis.delete(keys.front_outbox(old))
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        logger.warning("front %s: rejoined the fleet as %s: %d streams re-attached, %d ended (SESSION_LOST), %d "
                       "reattached elsewhere meanwhile; ready again", old, f.id, len(f.sessions) - ended - moved,
                       ended, moved)

    async def _set_health(self, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType) -> None:
        f = self.front
        if f._server is not None and not f._draining and not f._closed:  # a drain's NOT_SERVING is final
            for name in (SERVICE_NAME, ""):
                await f.health.set(name, status)
