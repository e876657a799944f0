"""A worker's heartbeat: proof of life in Redis, and what the worker keeps alive or learns with each beat.

Every ``heartbeat_interval_s`` one pipeline:

* sets ``lg:{w:<id>}:hb`` (load ``n/capacity``, TTL ``heartbeat_ttl_s``) and the worker's score in
  ``lg:{fleet}:workers`` (what reapers on other workers read: ``workers/takeover.py``);
* keeps the worker's inbox alive, and every tenth of ``session_key_ttl_s`` the keys of every owned session;
* reads the fronts' registry, so a session whose front was reaped (it stopped beating) is detached (its
  caller can only come back by reattaching through another front).

Then it renews the owned sessions' admission leases and exports the session gauges and the age of the oldest
peer heartbeat (``livegate_heartbeat_age_seconds``). The score is refreshed only while the worker is still a
member (``livegate/redis/membership.py``): a worker that finds its registry entry gone was declared dead by the
fleet (it was paused past the TTL) and its sessions requeued; it rejoins under a new identity
(:meth:`workers.worker.Worker.rejoin`) instead of carrying on half-alive.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from livegate.redis import keys, membership, records
from livegate import metrics
from livegate.admission.control import Lease
from livegate.redis.bus import every
from livegate.redis.cluster import unordered_pipeline
from workers.events import InboxItem

if TYPE_CHECKING:
    from workers.worker import Worker

logger = logging.getLogger(__name__)


class Heartbeat:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.last = 0.0  # when the last beat reached Redis (monotonic); 0: never
        self._ttls_refreshed = 0.0  # when the owned sessions' key TTLs were last refreshed (monotonic)
        self._gauge_keys: set[tuple[str, str, str]] = set()

    def __repr__(self) -> str:
        return f"<Heartbeat of {self.worker.id} last={self.last:.1f}>"

    def fresh(self) -> bool:
        """The last beat reached Redis within the heartbeat TTL (the fleet still counts this worker alive)."""
        return time.monotonic() - self.last < self.worker.settings.heartbeat_ttl_s

    async def run(self) -> None:
        await every(self.worker.settings.heartbeat_interval_s, self.beat, f"worker {self.worker.id}: heartbeat")

    async def beat(self) -> None:
        w, s = self.worker, self.worker.settings
        now_ms = records.now_ms()
        # no command here depends on another's order: on a Redis Cluster one round trip per master involved
        pipe = unordered_pipeline(w.redis)
        # our score is refreshed only while we are a member (livegate/redis/membership.py): a reaper that removed
        # us while we were paused wins for good, and this beat learns it
        pipe.eval(membership.BEAT, 1, keys.WORKERS, w.id, now_ms)
        pipe.set(keys.worker_heartbeat(w.id), f"{len(w.sessions)}/{s.worker_capacity}",
                 px=int(s.heartbeat_ttl_s * 1000))
        pipe.expire(keys.worker_inbox(w.id), max(60, int(s.heartbeat_ttl_s * 10)))
        pipe.zrange(keys.FRONTS, 0, -1, withscores=True)
        pipe.zrange(keys.WORKERS, 0, 1, withscores=True)
        # keep every owned session's keys alive while we relay them: their TTL is long (session_key_ttl_s), so
        # a refresh every tenth of it is enough, not one per beat (five EXPIREs per session)
        now = time.monotonic()
        if now - self._ttls_refreshed >= s.session_key_ttl_s / 10:
            self._ttls_refreshed = now
            for sid in w.sessions:
                for key in keys.session_keys(sid):
                    pipe.expire(key, s.session_key_ttl_s)
        started = time.monotonic()
        replies = await pipe.execute()
        membership.warn_if_slow(f"worker {w.id}", started, s.heartbeat_ttl_s)
        if not replies[0]:
            # declared dead by the fleet (our beats stalled past the TTL) and our sessions requeued: never carry
            # on half-alive under this identity
            await w.rejoin(time.monotonic() - self.last if self.last else 0.0)
            return
        self.last = time.monotonic()
        fronts = replies[3]
        metrics.HEARTBEAT_AGE_SECONDS.labels("worker", "front").set(membership.oldest_peer_age_s(fronts, w.id, now_ms))
        metrics.HEARTBEAT_AGE_SECONDS.labels("worker", "worker").set(
            membership.oldest_peer_age_s(replies[4], w.id, now_ms))
        # a front reaped by the fleet (livegate/redis/membership.py) is dead: its callers can only come back by
        # reattaching. A front that was only paused rejoins under a new id and re-attaches its callers; a detach
        # naming its old id that reaches a relay after that attach is ignored (workers/presence.py).
        live_fronts = {f.decode() for f, _score in fronts}
        for relay in list(w.sessions.values()):
            if relay.record.front not in live_fronts and not relay.detached:
                grace_ms = int(records.reattach_grace_s(relay.record.options, s) * 1000)
                relay.deliver(InboxItem("detach", grace_ms, relay.record.front.encode()))
        self._export_gauges()
        leases = [Lease.parse(r.record.lease) for r in w.sessions.values() if r.record.lease]
        if leases:  # our sessions keep their admission slots (a lost one is put back)
            back = await w.admission.renew_many(leases)
            # a session ending gives its lease back before it leaves w.sessions: a renewal that ran after that
            # put the lease back, so give it back again (else it holds a slot until it expires)
            for lease in back:
                if lease.id in w.released_leases:
                    await w.admission.release(lease)
        # forget the ids no renewal can name any more (their sessions left this worker)
        w.released_leases &= {Lease.parse(r.record.lease).id for r in w.sessions.values() if r.record.lease}

    async def join(self) -> None:
        """Register this worker's current identity: its inbox (created by its owner only: fronts write with
        NOMKSTREAM) and its registry entry, in one round trip. The inbox comes first: once we are a member,
        fronts may route to it."""
        w, s = self.worker, self.worker.settings
        pipe = w.redis.pipeline(transaction=False)
        pipe.xadd(keys.worker_inbox(w.id), {"k": "hello"})
        pipe.expire(keys.worker_inbox(w.id), max(60, int(s.heartbeat_ttl_s * 10)))
        pipe.set(keys.worker_heartbeat(w.id), f"{len(w.sessions)}/{s.worker_capacity}", px=int(s.heartbeat_ttl_s * 1000))
        pipe.zadd(keys.WORKERS, {w.id: records.now_ms()})
        await pipe.execute()
        self.last = time.monotonic()
        self._export_gauges()

    def _export_gauges(self) -> None:
        w = self.worker
        metrics.WORKER_CAPACITY.set(w.settings.worker_capacity)
        metrics.WORKER_SESSIONS.set(len(w.sessions))
        counts: dict[tuple[str, str, str], int] = {}
        for relay in w.sessions.values():
            state = "detached" if relay.detached else ("active" if relay.ws is not None else "resuming")
            key = (state, relay.record.model, relay.record.tenant)
            counts[key] = counts.get(key, 0) + 1
        for key in self._gauge_keys - counts.keys():
            metrics.SESSIONS_ACTIVE.labels("worker", *key, "").set(0)
        for key, n in counts.items():
            metrics.SESSIONS_ACTIVE.labels("worker", *key, "").set(n)
        self._gauge_keys = set(counts)
