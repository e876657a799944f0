"""Every Redis key livegate uses, in one place.

Layout (see docs/redis.md for the table with owners and TTLs):

- Per session, hash tag ``{<sid>}`` so every multi-key operation on one session stays in one slot:
  ``lg:{sid}:meta``   hash: the session record (tenant, model, owner worker, front, state, handle, counters)
  ``lg:{sid}:c2s``    stream: client messages, entry id ``0-<client index>`` (the upstream replay log)
  ``lg:{sid}:s2c``    stream: server messages, entry id ``0-<seq>`` (the reattach replay log)
- Per worker, hash tag ``{w:<wid>}``: ``lg:{w:wid}:inbox`` (stream, fast-path delivery of client messages to
  the owning worker, all its sessions batched in one XREAD), ``lg:{w:wid}:hb`` (heartbeat, TTL),
  ``lg:{w:wid}:sessions`` (set of owned session ids, for takeover).
- Per front, hash tag ``{f:<fid>}``: ``lg:{f:fid}:outbox`` (stream, fast-path delivery of server messages).
- Fleet-wide: ``lg:{alloc}:pending`` (stream + consumer group: sessions waiting for a worker),
  ``lg:{fleet}:workers`` / ``lg:{fleet}:fronts`` (zsets: process id -> last heartbeat ms).
- Per tenant, hash tag ``{t:<tenant>}``: ``lg:{t:tenant}:sessions`` (zset sid -> created ms, for ListSessions).
- Gateway resumption handles given to callers: ``lg:{h:<handle>}:handle`` (hash, TTL).

The streams keyed per session are the source of truth; the inbox/outbox streams are a delivery fast path
whose loss is repaired from the per-session logs by sequence number (see docs/architecture.md).
"""

from __future__ import annotations

PREFIX = "lg"

ALLOC_STREAM = f"{PREFIX}:{{alloc}}:pending"
ALLOC_GROUP = "workers"
WORKERS = f"{PREFIX}:{{fleet}}:workers"
FRONTS = f"{PREFIX}:{{fleet}}:fronts"


def session_meta(sid: str) -> str:
    return f"{PREFIX}:{{{sid}}}:meta"


def session_c2s(sid: str) -> str:
    return f"{PREFIX}:{{{sid}}}:c2s"


def session_s2c(sid: str) -> str:
    return f"{PREFIX}:{{{sid}}}:s2c"


def session_keys(sid: str) -> tuple[str, str, str]:
    return session_meta(sid), session_c2s(sid), session_s2c(sid)


def worker_inbox(wid: str) -> str:
    return f"{PREFIX}:{{w:{wid}}}:inbox"


def worker_heartbeat(wid: str) -> str:
    return f"{PREFIX}:{{w:{wid}}}:hb"


def worker_sessions(wid: str) -> str:
    return f"{PREFIX}:{{w:{wid}}}:sessions"


def front_outbox(fid: str) -> str:
    return f"{PREFIX}:{{f:{fid}}}:outbox"


def tenant_sessions(tenant: str) -> str:
    return f"{PREFIX}:{{t:{tenant}}}:sessions"


def handle(token: str) -> str:
    return f"{PREFIX}:{{h:{token}}}:handle"


def stream_id(n: int) -> str:
    """Entry id of the n-th client message in a session's c2s log: ``0-n`` (n >= 1). Redis refuses an id
    that is not above the last one: a retried or duplicated write never lands twice."""
    return f"0-{n}"


def log_id(epoch: int, seq: int) -> str:
    """Entry id of server message ``seq`` in a session's s2c log, written at owner ``epoch``: a claim raises
    the log's last id to ``<epoch>-0``, so the appends of every earlier owner are refused from then on
    (see livegate/redis/records.py)."""
    return f"{epoch}-{seq}"


def stream_seq(entry_id: bytes | str) -> int:
    """The message number of a log entry id (the part after the dash)."""
    s = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(s.partition("-")[2])


def admission_keys(scope: str) -> tuple[str, ...]:
    """The keys of one admission scope, in the order its scripts take them; all share ``{adm:<scope>}``:
    leases (zset id -> expiry ms), owner (hash id -> "<ms>:<tenant>"), used (hash tenant -> count), queue
    (zset of waiters, lexically ordered), qexp (zset waiter -> expiry), heads (zset: the fair order), state
    (hash: vt, seq, effective cap), tags (hash tenant -> last tag), gone (zset of withdrawn lease ids ->
    expiry ms: an ACQUIRE that arrives after its waiter gave up is refused)."""
    tag = f"{PREFIX}:{{adm:{scope}}}"
    return tuple(f"{tag}:{name}"
                 for name in ("leases", "owner", "used", "queue", "qexp", "heads", "state", "tags", "gone"))


def rate_bucket(tenant: str) -> str:
    """A tenant's session-creation token bucket (hash: tokens, ts)."""
    return f"{PREFIX}:{{rate:{tenant}}}:bucket"
