"""The Lua scripts of admission control (livegate/admission/control.py): every state change of a scope is one atomic
script over keys that share the scope's hash tag, so they run unchanged on Redis Cluster."""

from __future__ import annotations

# --------------------------------------------------------------------------------------------
# KEYS: 1 leases (zset id -> expiry ms), 2 owner (hash id -> "<granted ms>:<tenant>"), 3 used (hash tenant ->
# live leases), 4 queue (zset, score 0, member "<tenant>\0<tag:15>\0<arrival:6>\0<id>": per-tenant FIFO by
# lex range), 5 qexp (zset member -> expiry ms), 6 heads (zset tenant -> tag * 1e6 + arrival of its first
# waiter: the fair order), 7 state (hash: vt, seq, eff, at, hold_ms), 8 tags (hash tenant -> its last tag),
# 9 gone (zset withdrawn lease id -> expiry ms: fences an ACQUIRE that reaches Redis after its give-up).
# ARGV: 1 lease ttl ms, 2 waiter ttl ms, 3 recover ms, 4 cap, 5 default max (-1 none), 6 n listed tenants,
# n x (tenant, guaranteed, max), then the operation's own arguments from ARGV[OP].
_COMMON = r"""
local LEASE_TTL, WAITER_TTL, RECOVER_MS = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local CAP, DEFAULT_MAX, N = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local G, M = {}, {}
for i = 0, N - 1 do
  G[ARGV[7 + 3 * i]] = tonumber(ARGV[8 + 3 * i])
  M[ARGV[7 + 3 * i]] = tonumber(ARGV[9 + 3 * i])
end
local OP = 7 + 3 * N
local clock = redis.call('TIME')
local NOW = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

local function max_of(t)
  local m = M[t] or DEFAULT_MAX
  if m < 0 then return nil end
  return m
end

local function add_lease(id, tenant)
  redis.call('ZADD', KEYS[1], NOW + LEASE_TTL, id)
  redis.call('HSET', KEYS[2], id, NOW .. ':' .. tenant)
  redis.call('HINCRBY', KEYS[3], tenant, 1)
end

local function drop_lease(id)  -- the tenant and grant time of a lease that was live, nil otherwise
  if redis.call('ZREM', KEYS[1], id) == 0 then return nil end
  local v = redis.call('HGET', KEYS[2], id)
  redis.call('HDEL', KEYS[2], id)
  if not v then return nil end
  local sep = string.find(v, ':', 1, true)
  local tenant = string.sub(v, sep + 1)
  if redis.call('HINCRBY', KEYS[3], tenant, -1) <= 0 then redis.call('HDEL', KEYS[3], tenant) end
  return tenant, tonumber(string.sub(v, 1, sep - 1))
end

local function parse_waiter(member)  -- tenant, tag, order (tag, then arrival), id
  local a = string.find(member, '\0', 1, true)
  local tag = tonumber(string.sub(member, a + 1, a + 15))
  return string.sub(member, 1, a - 1), tag, tag * 1000000 + tonumber(string.sub(member, a + 17, a + 22)),
         string.sub(member, a + 24)
end

local function fix_head(tenant)  -- re-point heads at the tenant's first waiter; returns it (or nil)
  local h = redis.call('ZRANGEBYLEX', KEYS[4], '[' .. tenant .. '\0', '(' .. tenant .. '\1', 'LIMIT', 0, 1)[1]
  if h then
    local _, _, order = parse_waiter(h)
    redis.call('ZADD', KEYS[6], order, tenant)
  else
    redis.call('ZREM', KEYS[6], tenant)
    redis.call('HDEL', KEYS[8], tenant)
  end
  return h
end

local function remove_waiter(member)
  if redis.call('ZREM', KEYS[4], member) == 0 then return end
  redis.call('ZREM', KEYS[5], member)
  fix_head((parse_waiter(member)))
end

local function purge()  -- expired leases and waiters that stopped polling
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', NOW, 'LIMIT', 0, 1000)) do drop_lease(id) end
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', NOW, 'LIMIT', 0, 1000)) do remove_waiter(m) end
  redis.call('ZREMRANGEBYSCORE', KEYS[9], '-inf', NOW)
end

local function effective_cap()  -- the configured cap, or less after quota closes (+1 per RECOVER_MS)
  local s = redis.call('HMGET', KEYS[7], 'eff', 'at')
  local eff = tonumber(s[1])
  if not eff then return CAP end
  local at = tonumber(s[2]) or NOW
  local steps = math.max(0, math.floor((NOW - at) / RECOVER_MS))
  eff = eff + steps
  if eff >= CAP then
    redis.call('HDEL', KEYS[7], 'eff', 'at')
    return CAP
  end
  if steps > 0 then redis.call('HSET', KEYS[7], 'eff', eff, 'at', at + steps * RECOVER_MS) end
  return eff
end

-- Grant free slots to waiters: repeatedly the eligible tenant whose first waiter has the lowest tag.
local function grant(cap)
  local granted = {}
  local total = redis.call('ZCARD', KEYS[1])
  if total >= cap then return granted end
  local hs = redis.call('ZRANGE', KEYS[6], 0, -1, 'WITHSCORES')
  if #hs == 0 then return granted end
  local heads, used, reserved = {}, {}, 0
  for i = 1, #hs, 2 do heads[#heads + 1] = {hs[i], tonumber(hs[i + 1])} end
  local u = redis.call('HGETALL', KEYS[3])
  for i = 1, #u, 2 do used[u[i]] = tonumber(u[i + 1]) end
  for t, g in pairs(G) do reserved = reserved + math.max(0, g - (used[t] or 0)) end
  local vt = tonumber(redis.call('HGET', KEYS[7], 'vt')) or 0
  while total < cap and #granted < 256 do
    local best = nil
    for i, h in ipairs(heads) do
      if h[2] and (best == nil or h[2] < heads[best][2]) then
        local ut, gt, mt = used[h[1]] or 0, G[h[1]] or 0, max_of(h[1])
        -- ut >= gt: its own unused guarantee is 0, so `reserved` is exactly the others' unused guarantees
        if not (mt and ut >= mt) and (ut < gt or total + reserved < cap) then best = i end
      end
    end
    if not best then break end
    local t = heads[best][1]
    local member = redis.call('ZRANGEBYLEX', KEYS[4], '[' .. t .. '\0', '(' .. t .. '\1', 'LIMIT', 0, 1)[1]
    if member then
      local _, tag, _, id = parse_waiter(member)
      redis.call('ZREM', KEYS[4], member)
      redis.call('ZREM', KEYS[5], member)
      add_lease(id, t)
      if (used[t] or 0) < (G[t] or 0) then reserved = reserved - 1 end
      used[t] = (used[t] or 0) + 1
      total = total + 1
      vt = math.max(vt, tag)
      granted[#granted + 1] = id
    end
    local nxt = fix_head(t)
    heads[best][2] = nxt and select(3, parse_waiter(nxt)) or nil
  end
  if #granted > 0 then redis.call('HSET', KEYS[7], 'vt', vt) end
  return granted
end

local function touch()
  for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], LEASE_TTL * 3 + 60000) end
  for i = 4, 6 do redis.call('PEXPIRE', KEYS[i], WAITER_TTL * 3 + 60000) end
  redis.call('PEXPIRE', KEYS[7], 86400000)
  redis.call('PEXPIRE', KEYS[8], WAITER_TTL * 3 + 60000)
  if redis.call('EXISTS', KEYS[9]) == 1 then redis.call('PEXPIRE', KEYS[9], LEASE_TTL + 60000) end
end
"""

# ARGV[OP..]: tenant, lease id, waiter member ("" the first time).
# -> {admitted 1|0, member, waiting, live, cap, mean hold ms (-1: none yet), tenant's live}, then granted ids;
#    {-1, member} if this waiter already gave up (a late or retried ACQUIRE: it must neither queue nor take a slot).
_ACQUIRE = _COMMON + r"""
purge()
local cap = effective_cap()
local tenant, id, member = ARGV[OP], ARGV[OP + 1], ARGV[OP + 2]
if redis.call('ZSCORE', KEYS[9], id) then return {-1, member} end
if not redis.call('ZSCORE', KEYS[1], id) then
  if member == '' or not redis.call('ZSCORE', KEYS[5], member) then
    local vt = tonumber(redis.call('HGET', KEYS[7], 'vt')) or 0
    local tag = math.max(vt, tonumber(redis.call('HGET', KEYS[8], tenant)) or 0) + 1
    redis.call('HSET', KEYS[8], tenant, tag)
    local seq = redis.call('HINCRBY', KEYS[7], 'seq', 1) % 1000000
    member = tenant .. '\0' .. string.format('%015d', tag) .. '\0' .. string.format('%06d', seq) .. '\0' .. id
    redis.call('ZADD', KEYS[4], 0, member)
    if not redis.call('ZSCORE', KEYS[6], tenant) then redis.call('ZADD', KEYS[6], tag * 1000000 + seq, tenant) end
  end
  redis.call('ZADD', KEYS[5], NOW + WAITER_TTL, member)
end
local out = {0, member, redis.call('ZCARD', KEYS[5]), 0, cap,
             tonumber(redis.call('HGET', KEYS[7], 'hold_ms')) or -1, 0}
for _, g in ipairs(grant(cap)) do out[#out + 1] = g end
touch()
if redis.call('ZSCORE', KEYS[1], id) then
  redis.call('ZADD', KEYS[1], NOW + LEASE_TTL, id)
  out[1] = 1
end
out[4] = redis.call('ZCARD', KEYS[1])
out[7] = tonumber(redis.call('HGET', KEYS[3], tenant)) or 0
return out
"""

# ARGV[OP..]: lease id -> {1 if it was live, granted ids...}
_RELEASE = _COMMON + r"""
purge()
local cap = effective_cap()
local tenant, born = drop_lease(ARGV[OP])
local out = {0}
if tenant then
  out[1] = 1
  local avg = tonumber(redis.call('HGET', KEYS[7], 'hold_ms'))
  local hold = NOW - born
  redis.call('HSET', KEYS[7], 'hold_ms', math.floor(avg and (avg * 0.9 + hold * 0.1) or hold))
end
for _, g in ipairs(grant(cap)) do out[#out + 1] = g end
touch()
return out
"""

# ARGV[OP..]: lease id, waiter member ("": its first ACQUIRE was never answered), keep ("1": a lease granted
# meanwhile is kept), tenant -> {1 kept | 0, granted...}. A withdrawn id is fenced for a lease TTL.
_GIVE_UP = _COMMON + r"""
purge()
local cap = effective_cap()
local id, member, tenant = ARGV[OP], ARGV[OP + 1], ARGV[OP + 3]
if redis.call('ZSCORE', KEYS[1], id) then
  if ARGV[OP + 2] == '1' then return {1} end
  drop_lease(id)
else
  if member == '' then  -- find it among the tenant's waiters by its lease id
    local suffix = '\0' .. id
    for _, m in ipairs(redis.call('ZRANGEBYLEX', KEYS[4], '[' .. tenant .. '\0', '(' .. tenant .. '\1')) do
      if string.sub(m, -#suffix) == suffix then member = m break end
    end
  end
  if member ~= '' then remove_waiter(member) end
end
redis.call('ZADD', KEYS[9], NOW + LEASE_TTL, id)
local out = {0}
for _, g in ipairs(grant(cap)) do out[#out + 1] = g end
touch()
return out
"""

# -> {new effective cap, live leases}
_QUOTA = _COMMON + r"""
purge()
local cap = effective_cap()
local live = redis.call('ZCARD', KEYS[1])
local new = math.max(1, math.min(cap, live - 1))
redis.call('HSET', KEYS[7], 'eff', new, 'at', NOW)
touch()
return {new, live}
"""

# -> {effective cap, live leases, waiting}
_STATUS = _COMMON + r"""
purge()
return {effective_cap(), redis.call('ZCARD', KEYS[1]), redis.call('ZCARD', KEYS[5])}
"""

# KEYS: leases, owner, used. ARGV: lease ttl ms, then (id, tenant) pairs. A lease that is gone (expired and
# purged, or lost with Redis data) is put back: the session it stands for is real. -> ids put back
_RENEW = r"""
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local ttl = tonumber(ARGV[1])
local back = {}
for i = 2, #ARGV, 2 do
  if not redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    redis.call('HSET', KEYS[2], ARGV[i], now .. ':' .. ARGV[i + 1])
    redis.call('HINCRBY', KEYS[3], ARGV[i + 1], 1)
    back[#back + 1] = ARGV[i]
  end
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[i])
end
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ttl * 3 + 60000) end
return back
"""

# KEYS: the tenant's bucket. ARGV: per second, burst. -> {1, 0} taken | {0, ms until a token}
_RATE = r"""
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local s = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens, ts = tonumber(s[1]) or burst, tonumber(s[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate / 1000)
local ok = 0
if tokens >= 1 then
  tokens = tokens - 1
  ok = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
if ok == 1 then return {1, 0} end
return {0, math.ceil((1 - tokens) * 1000 / rate)}
"""
