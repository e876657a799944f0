"""The session record (``lg:{sid}:meta``) and the atomic operations on it.

One hash per session; every field a front or worker needs to pick the session up. Scripts touch only
that key and the session's logs (the same hash tag), so they run unchanged on Redis Cluster.

The s2c log's entry ids are ``<epoch>-<seq>``: the epoch of the owner that wrote the message, then its seq.
A claim raises the log's last id to ``<new epoch>-0`` in the same script that makes the new owner, so Redis
itself refuses every later append of an earlier owner (a worker presumed dead that still runs): the fence
costs nothing per message. Seqs still run on across owners; ``epochs`` in the record says where each
epoch's seqs start, so a reader finds the id of a seq (:data:`S2C_AFTER`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
import time
from typing import TYPE_CHECKING, Any

from livegate.redis import keys

if TYPE_CHECKING:
    from livegate.redis.connect import AnyRedis

# States (mirrored by livegate.v1.Session.State)
PENDING = "pending"  # waiting for a worker
ACTIVE = "active"  # relaying
RESUMING = "resuming"  # upstream being renewed (go_away, error, takeover)
DETACHED = "detached"  # caller gone, within the reattach grace
CLOSING = "closing"


def reattach_grace_s(options: bytes, settings: Any) -> float:
    """How long a session whose caller is gone waits for a reattach: its SessionOptions.reattach_grace,
    bounded by ``max_reattach_grace_s``, else ``reattach_grace_s``."""
    from livegate.v1 import gateway_pb2 as gw

    opts = gw.SessionOptions.FromString(options) if options else gw.SessionOptions()
    if opts.HasField("reattach_grace"):
        return min(max(0.0, opts.reattach_grace.ToNanoseconds() / 1e9), settings.max_reattach_grace_s)
    return float(settings.reattach_grace_s)


def now_ms() -> int:
    return int(time.time() * 1000)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str, token_hash: str) -> bool:
    return hmac.compare_digest(hash_token(token), token_hash)


@dataclasses.dataclass
class SessionRecord:
    sid: str
    tenant: str
    model: str  # short model id, e.g. gemini-live-2.5-flash
    flavour: str  # gemini | vertex
    front: str
    setup: bytes  # BidiGenerateContentSetup as validated at the front (serialized)
    options: bytes = b""  # SessionOptions (serialized)
    route: str = ""  # the upstream route (livegate/routes.py)
    lease: str = ""  # the admission lease (livegate/admission/control.py), renewed by the owning worker
    reattach_hash: str = ""
    wants_resumption: bool = False  # the caller asked for session_resumption updates
    state: str = PENDING
    worker: str = ""
    epoch: int = 0
    created_ms: int = dataclasses.field(default_factory=now_ms)
    handle: str = dataclasses.field(default="", repr=False)  # latest upstream resumption handle: never leaves the gateway
    resumable: bool = False
    grace_until_ms: int = 0  # DETACHED: when the reattach grace ends (whoever owns the session then ends it)
    close_kind: str = ""  # CLOSING: close (the caller half-closed) | admin_close (CloseSession)
    handle_index: int = 0  # last client message index covered by ``handle``
    connects: int = 0
    go_aways: int = 0
    resumes: int = 0
    reattaches: int = 0
    tenant_label: str = ""  # the tenant's metric label, decided by the front (livegate.metrics.tenant_label)

    _INTS = ("epoch", "created_ms", "grace_until_ms", "handle_index", "connects", "go_aways", "resumes", "reattaches")
    _BOOLS = ("wants_resumption", "resumable")
    _BYTES = ("setup", "options")

    def to_redis(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = int(v) if isinstance(v, bool) else v
        return out

    @classmethod
    def from_redis(cls, raw: dict[bytes, bytes]) -> SessionRecord:
        names = {f.name for f in dataclasses.fields(cls)}
        kw: dict[str, Any] = {}
        for k, v in raw.items():
            name = k.decode()
            if name not in names:
                continue
            if name in cls._BYTES:
                kw[name] = v
            elif name in cls._INTS:
                kw[name] = int(v)
            elif name in cls._BOOLS:
                kw[name] = v not in (b"0", b"")
            else:
                kw[name] = v.decode()
        return cls(**kw)


async def load(redis: AnyRedis, sid: str) -> SessionRecord | None:
    raw = await redis.hgetall(keys.session_meta(sid))
    return SessionRecord.from_redis(raw) if raw else None


# Claim a session for a worker: succeeds only if the current owner is the expected one ("" for a new
# session, the dead worker's id for a takeover). Returns the new epoch (fencing token), 0 if someone else
# owns it, -1 if the session no longer exists. A session whose caller is gone (detached) or that is closing
# stays so: the new owner honours the grace's deadline or the close (see workers/presence.py).
# KEYS: meta, s2c log. The log is fenced at the new epoch (created, empty, if no message was logged yet:
# appends never create it) and the epoch's first seq is recorded in ``epochs`` ("<epoch>:<first seq> ...").
CLAIM = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('HGET', KEYS[1], 'claim') == ARGV[5] then
  -- this very claim, retried after its reply was lost with the connection: same answer
  return tonumber(redis.call('HGET', KEYS[1], 'epoch'))
end
local cur = redis.call('HGET', KEYS[1], 'worker') or ''
if cur ~= ARGV[2] then return 0 end
local epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'detached' and state ~= 'closing' then state = ARGV[3] end
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local seq = last[1] and tonumber(string.match(last[1][1], '%-(%d+)$')) or 0
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('XSETID', KEYS[2], epoch .. '-0')
else
  redis.call('XADD', KEYS[2], epoch .. '-0', 'fence', epoch)
  redis.call('XDEL', KEYS[2], epoch .. '-0')
end
local epochs = (redis.call('HGET', KEYS[1], 'epochs') or '') .. epoch .. ':' .. (seq + 1) .. ' '
redis.call('HSET', KEYS[1], 'worker', ARGV[1], 'state', state, 'claim', ARGV[5], 'epochs', epochs)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return epoch
"""

# The logged server messages after seq ARGV[1], at most ARGV[2] of them ("": all). KEYS: meta, s2c log.
# The range starts at the id of seq ARGV[1] + 1: in the latest epoch that started at or before it (ids
# without an epoch, 0-<seq>, were written before epochs were recorded: they sort first, as epoch 0).
S2C_AFTER = """
local from = tonumber(ARGV[1]) + 1
local epoch = '0'
for e, first in string.gmatch(redis.call('HGET', KEYS[1], 'epochs') or '', '(%d+):(%d+)') do
  if tonumber(first) <= from then epoch = e end
end
if ARGV[2] == '' then return redis.call('XRANGE', KEYS[2], epoch .. '-' .. from, '+') end
return redis.call('XRANGE', KEYS[2], epoch .. '-' .. from, '+', 'COUNT', ARGV[2])
"""

# The caller of a session is gone (front ARGV[1] lost its stream): mark the session detached until ARGV[2]
# (ms since the epoch). Returns its owner ("" while no worker has claimed it: the front then ends it at the
# deadline unless a worker took it meanwhile, see END_UNCLAIMED); nil if the session is gone or its caller
# has reattached through another front since.
DETACH = """
local cur = redis.call('HMGET', KEYS[1], 'front', 'worker')
if cur[1] ~= ARGV[1] then return false end
redis.call('HSET', KEYS[1], 'state', 'detached', 'grace_until_ms', ARGV[2])
return cur[2] or ''
"""

# A detached session that no worker has claimed, at the end of its grace (ARGV[1]: now, ms): delete its
# record (a later claim finds it gone) and return its admission lease for the caller of this script to give
# back. nil when a worker owns it now (that worker ends it), the caller came back, or a later detach moved
# the deadline.
END_UNCLAIMED = """
local cur = redis.call('HMGET', KEYS[1], 'worker', 'state', 'grace_until_ms', 'lease')
if (cur[1] and cur[1] ~= '') or cur[2] ~= 'detached' or (tonumber(cur[3]) or 0) > tonumber(ARGV[1]) then
  return false
end
redis.call('DEL', KEYS[1])
return cur[4] or ''
"""

# A caller returns through front ARGV[1] at ARGV[2] (ms): make it the session's front and, if the session
# was detached, bring it back (active if a worker owns it, else pending). Returns {owner ("" if none yet),
# the previous front, the previous state}: a previous stream that was not detached is ended by the caller of
# this script (one stream per session); nil if the session is gone, or detached with its grace over
# (whoever owns it is ending it). With ARGV[3] (a front that rejoins the fleet under a new id,
# service/membership.py), only a session whose front is still ARGV[3] is taken: else nothing is written and
# the previous state returned is "moved" (its caller reattached through another front meanwhile).
REATTACH = """
local cur = redis.call('HMGET', KEYS[1], 'worker', 'state', 'grace_until_ms', 'front')
if not cur[2] then return false end
if ARGV[3] and cur[4] ~= ARGV[3] then return {cur[1] or '', cur[4] or '', 'moved'} end
if cur[2] == 'detached' and (tonumber(cur[3]) or 0) <= tonumber(ARGV[2]) then return false end
local owner = cur[1] or ''
redis.call('HSET', KEYS[1], 'front', ARGV[1])
redis.call('HINCRBY', KEYS[1], 'reattaches', 1)
if cur[2] == 'detached' then
  redis.call('HSET', KEYS[1], 'state', owner ~= '' and 'active' or 'pending')
end
return {owner, cur[4] or '', cur[2]}
"""

# Mark a session closing (ARGV[1]: close | admin_close | resumed) and return {owner, "", 1}; if no worker owns
# it yet, delete its record so no worker will take it (a later claim sees it gone) and return {"", its
# admission lease, 1} for the caller to give back. {"", "", 0}: there was no record.
CLOSE_OR_OWNER = """
local cur = redis.call('HMGET', KEYS[1], 'worker', 'lease', 'state')
if cur[1] and cur[1] ~= '' then
  redis.call('HSET', KEYS[1], 'state', 'closing', 'close_kind', ARGV[1])
  return {cur[1], '', 1}
end
redis.call('DEL', KEYS[1])
return {'', cur[2] or '', cur[3] and 1 or 0}
"""

# A conversation resumed by its gateway handle (KEYS[1]) goes on in session ARGV[1]: the handle names it
# from now on (a resume with it while that session lives ends it or is refused). Not if the handle expired.
HANDLE_SESSION = """
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'sid', ARGV[1]) end
return 0
"""

# The owner's own record of a detach (a front ARGV[3] lost the caller, until ARGV[4] ms), fenced by epoch
# like FENCED_HSET and by the front: 1 written; 0 not the owner any more; -1 the session's front is another
# one now (the caller reattached elsewhere and that front's attach is still on its way: a stale detach,
# which must not overwrite the reattach).
FENCED_DETACH = """
if redis.call('HGET', KEYS[1], 'worker') ~= ARGV[1] or redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[2] then
  return 0
end
if redis.call('HGET', KEYS[1], 'front') ~= ARGV[3] then return -1 end
redis.call('HSET', KEYS[1], 'state', 'detached', 'grace_until_ms', ARGV[4])
return 1
"""

# Update fields only while this worker still owns the session at this epoch (fenced write).
FENCED_HSET = """
if redis.call('HGET', KEYS[1], 'worker') ~= ARGV[1] or redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[2] then
  return 0
end
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
"""

async def claim(redis: AnyRedis, sid: str, worker: str, *, expected: str = "", state: str = ACTIVE,
                ttl_s: int = 900) -> int:
    nonce = secrets.token_hex(8)  # makes a retried EVAL (connection lost after it ran) idempotent
    return int(await redis.eval(CLAIM, 2, keys.session_meta(sid), keys.session_s2c(sid), worker, expected, state,
                                ttl_s * 1000, nonce))


async def s2c_after(redis: AnyRedis, sid: str, seq: int, count: int | None = None) -> list[tuple[int, bytes]]:
    """The logged server messages after ``seq`` (at most ``count``), as (seq, serialized ServerMessage)."""
    entries = await redis.eval(S2C_AFTER, 2, keys.session_meta(sid), keys.session_s2c(sid), seq,
                               "" if count is None else count)
    return [(keys.stream_seq(eid), _field(fields, b"m")) for eid, fields in entries]


def _field(flat: list[bytes], name: bytes) -> bytes:
    """A field of an entry as a script returns it (a flat [name, value, ...] list)."""
    for i in range(0, len(flat) - 1, 2):
        if flat[i] == name:
            return flat[i + 1]
    return b""
