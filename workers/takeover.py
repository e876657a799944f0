"""Worker crash takeover: finding dead workers and handing their sessions to live ones.

Every worker runs a :class:`Reaper`. A worker whose heartbeat (its score in ``lg:{fleet}:workers``) is older
than the heartbeat TTL is dead; the first reaper to remove it from the registry requeues each of its sessions
on the allocation stream with ``from=<dead worker>``. The removal is the ``REAP`` script of
``livegate/redis/membership.py``: exactly one reaper wins, and only if the worker has still not beaten (a
worker whose beat landed after the reaper read its score is not removed). Any worker with spare capacity then
claims the session with a compare-and-set on that expected owner, resumes the upstream from the stored handle
and replays the client messages the handle does not cover. A worker that was only paused learns it at its
next beat and rejoins under a new identity (``workers/heartbeat.py``).

Dead fronts are reaped the same way (removed from ``lg:{fleet}:fronts``); the heartbeats of the workers then
detach the sessions whose caller was on it.

A reaper judges others only while its own heartbeat is fresh: a process that was itself paused (in a dev
stack, every worker shares the paused loop) would otherwise find every peer stale at once.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from livegate.redis import keys, membership, records
from livegate.redis.bus import every

if TYPE_CHECKING:
    from workers.worker import Worker

logger = logging.getLogger(__name__)


class Reaper:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.reaped = 0

    def __repr__(self) -> str:
        return f"<Reaper of {self.worker.id} reaped={self.reaped}>"

    async def run(self) -> None:
        await every(self.worker.settings.heartbeat_interval_s, self.sweep, f"worker {self.worker.id}: reaper sweep")

    async def sweep(self) -> list[str]:
        """Requeue the sessions of every worker whose heartbeat expired, and remove the fronts whose heartbeat
        expired; return the processes reaped."""
        w = self.worker
        if not w.member or not w.heartbeat.fresh():
            return []  # our own beats are late (we were paused too): our view of the others is not to be trusted
        cutoff = records.now_ms() - int(w.settings.heartbeat_ttl_s * 1000)
        pipe = w.redis.pipeline(transaction=False)
        pipe.zrangebyscore(keys.WORKERS, "-inf", f"({cutoff}", withscores=True)
        pipe.zrangebyscore(keys.FRONTS, "-inf", f"({cutoff}", withscores=True)
        stale_workers, stale_fronts = await pipe.execute()
        reaped = []
        for raw_id, score in stale_workers:
            dead = raw_id.decode()
            if dead == w.id or not await membership.reap(w.redis, keys.WORKERS, dead, cutoff):
                continue  # ourselves, another reaper won, or it beat since we read its score
            await self._requeue(dead, int(score))
            reaped.append(dead)
        for raw_id, score in stale_fronts:
            dead = raw_id.decode()
            if await membership.reap(w.redis, keys.FRONTS, dead, cutoff):
                logger.warning("worker %s: front %s is dead (last heartbeat %d ms ago); its callers' sessions are "
                               "detached for a reattach", w.id, dead, records.now_ms() - int(score))
                reaped.append(dead)
        return reaped

    async def _requeue(self, dead: str, last_heartbeat_ms: int) -> None:
        w = self.worker
        r = w.redis
        sids = [s.decode() for s in await r.smembers(keys.worker_sessions(dead))]
        entries: list[dict[str, Any]] = [{"s": sid, "from": dead, "k": "takeover", "hb": last_heartbeat_ms}
                                         for sid in sids]
        # sessions it had read from the allocation stream but not yet acknowledged
        pending = await r.xpending_range(keys.ALLOC_STREAM, keys.ALLOC_GROUP, "-", "+", 1000, consumername=dead)
        for p in pending:
            got = await r.xrange(keys.ALLOC_STREAM, p["message_id"], p["message_id"])
            if got:
                sid = got[0][1][b"s"].decode()
                owner = await r.hget(keys.session_meta(sid), "worker")
                if sid not in sids:
                    entries.append({"s": sid, "from": (owner or b"").decode(), "k": "takeover", "hb": last_heartbeat_ms})
            await r.xack(keys.ALLOC_STREAM, keys.ALLOC_GROUP, p["message_id"])
            await r.xdel(keys.ALLOC_STREAM, p["message_id"])
        pipe = r.pipeline(transaction=False)
        for e in entries:
            pipe.xadd(keys.ALLOC_STREAM, e)
        pipe.delete(keys.worker_sessions(dead), keys.worker_inbox(dead), keys.worker_heartbeat(dead))
        await pipe.execute()
        try:
            await r.xgroup_delconsumer(keys.ALLOC_STREAM, keys.ALLOC_GROUP, dead)
        except Exception:  # the consumer may never have read anything
            pass
        self.reaped += 1
        logger.warning("worker %s: worker %s is dead (last heartbeat %d ms ago); requeued %d sessions",
                       w.id, dead, records.now_ms() - last_heartbeat_ms, len(entries))
