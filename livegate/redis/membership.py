"""The fleet's registries, ``lg:{fleet}:workers`` and ``lg:{fleet}:fronts`` (zsets: process id -> its last
heartbeat, ms since the epoch), and the atomic verbs that keep them race-free.

* **join**: a plain ``ZADD`` by the process itself, under an identity never used before (a process that
  rejoins takes a new incarnation id: :func:`incarnation`).
* **beat**: :data:`BEAT` refreshes the score *only if the process is still a member*. A process paused past
  the heartbeat TTL (GC, CPU throttling, a VM stall, SIGSTOP) that a reaper removed meanwhile gets 0: it was
  declared dead, its work was given to others, and it must not carry on half-alive under that identity.
* **reap**: :data:`REAP` removes a member *only if its score is still older than the cutoff*. A beat and a
  reap of the same member are each atomic, so exactly one of them wins: either the beat landed first (the
  member is fresh and the reap refuses), or the reap did (and every later beat of that identity returns 0).
  A reaper that read a stale score just before the member's beat never removes a live process.

Workers reap dead workers (their sessions are requeued: ``workers/takeover.py``) and dead fronts (their
sessions' callers are detached: ``workers/heartbeat.py``). Both registries share the ``{fleet}`` hash tag.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from livegate.redis.connect import AnyRedis

logger = logging.getLogger(__name__)

# KEYS: the registry. ARGV: member, now (ms). 1: refreshed; 0: not a member (declared dead), nothing written.
BEAT = """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return 1
"""

# KEYS: the registry. ARGV: member, cutoff (ms). 1: removed (the caller owns its clean-up); 0: not a member,
# or it beat since the caller read its score.
REAP = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
return 1
"""


def incarnation(base_id: str, generation: int) -> str:
    """The identity of a process's ``generation``-th membership: the configured id first, then
    ``<id>-r<n>`` after each time the fleet declared it dead. A new identity means new inbox/outbox keys and
    a new consumer name, so nothing a reaper still does to the old one (a late delete) touches the new."""
    return base_id if generation <= 1 else f"{base_id}-r{generation}"


async def reap(redis: AnyRedis, registry: str, member: str, cutoff_ms: int) -> bool:
    """Remove ``member`` if its last heartbeat is still older than ``cutoff_ms``; True if this call did."""
    return bool(await redis.eval(REAP, 1, registry, member, cutoff_ms))


def oldest_peer_age_s(members: list[tuple[Any, float]], own_id: str, now_ms: int) -> float:
    """The age (s) of the oldest heartbeat among ``members`` (ZRANGE ... WITHSCORES), not counting this
    process; 0 when it has no peer."""
    ages = [now_ms - score for member, score in members
            if (member.decode() if isinstance(member, bytes) else member) != own_id]
    return max(0.0, max(ages) / 1000) if ages else 0.0


def warn_if_slow(who: str, started: float, ttl_s: float) -> None:
    """Log a beat whose round trip (from ``started``, monotonic) took half the TTL or more: a process can be
    declared dead without any pause of its own when Redis answers late (or a connection waits for its socket
    timeout); the event-loop lag monitor tells the two apart."""
    took = time.monotonic() - started
    if took >= ttl_s / 2:
        logger.warning("%s: a heartbeat took %.2f s to reach Redis and come back (the heartbeat TTL is %.1f s)",
                       who, took, ttl_s)
