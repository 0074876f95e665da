-- [admit]
-- One admission of one virtual key, atomically (see proxy/gateway/limits.py for the semantics).
-- KEYS: 1 state hash (tu: window tokens, tr: reserved tokens, l:<uid>: a lease's reservations),
--       2 rpm zset (uid by time), 3 tpm zset ("uid:tokens" by time), 4 lease zset (uid by expiry),
--       5 budget hash of the current period (s: spend, r: reserved). All share the key's hash tag.
-- ARGV: 1 now, 2 uid, 3 rpm, 4 tpm, 5 tokens, 6 parallel, 7 budget, 8 cost (limits: -1 = none),
--       9 period start, 10 budget hash ttl ms (0: none), 11 seed spend ("" = none), 12 lease expiry,
--       13 state ttl ms
-- Returns {1, spend} or {0, kind, used, reserved, reset_at}.
local now = tonumber(ARGV[1])
local uid = ARGV[2]
local rpm, tpm, tokens = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local par, budget, cost = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local ps, bttl, seed = ARGV[9], tonumber(ARGV[10]), ARGV[11]
local S, R, T, L, B = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local cutoff = now - 60
local leased = par >= 0 or tpm >= 0 or budget >= 0
local function num(x) return string.format('%.17g', x) end

if leased then
  -- Leases past their expiry belong to requests whose replica died: give their reservations back.
  local dead = redis.call('ZRANGEBYSCORE', L, '-inf', now)
  if #dead > 0 then
    for _, id in ipairs(dead) do
      local held = redis.call('HGET', S, 'l:' .. id)
      if held then
        local t, c, p = string.match(held, '^(%S+) (%S+) (%S+)$')
        if tonumber(t) ~= 0 then redis.call('HINCRBY', S, 'tr', -tonumber(t)) end
        -- Only the current period's reservations matter; older periods' hashes expire.
        if p == ps and tonumber(c) ~= 0 then redis.call('HINCRBYFLOAT', B, 'r', -tonumber(c)) end
        redis.call('HDEL', S, 'l:' .. id)
      end
    end
    redis.call('ZREMRANGEBYSCORE', L, '-inf', now)
  end
end

local spend = 0
if budget >= 0 then
  local v = redis.call('HMGET', B, 's', 'r')
  if v[1] then
    spend = tonumber(v[1])
  elseif seed ~= '' then
    spend = tonumber(seed)
    redis.call('HSET', B, 's', seed)
    if bttl > 0 then redis.call('PEXPIRE', B, bttl) end
  end
  local reserved = tonumber(v[2] or '0')
  if spend + reserved + cost > budget + 1e-9 then
    return {0, 'budget', num(spend), num(reserved), '0'}
  end
end

if rpm >= 0 then
  redis.call('ZREMRANGEBYSCORE', R, '-inf', cutoff)
  local n = redis.call('ZCARD', R)
  if n >= rpm then
    local oldest = redis.call('ZRANGE', R, 0, 0, 'WITHSCORES')
    local reset = now + 60
    if oldest[2] then reset = tonumber(oldest[2]) + 60 end
    return {0, 'rpm', tostring(n), '0', num(reset)}
  end
end

if tpm >= 0 then
  local used = 0
  if redis.call('EXISTS', T) == 1 then
    used = tonumber(redis.call('HGET', S, 'tu') or '0')
    local old = redis.call('ZRANGEBYSCORE', T, '-inf', cutoff)
    if #old > 0 then
      for _, m in ipairs(old) do used = used - tonumber(string.match(m, ':(%d+)$')) end
      redis.call('ZREMRANGEBYSCORE', T, '-inf', cutoff)
      redis.call('HSET', S, 'tu', used)
    end
  end
  local held = used + tonumber(redis.call('HGET', S, 'tr') or '0')
  if held + tokens > tpm then
    local excess = held + tokens - tpm
    local reset = now + 60
    local window = redis.call('ZRANGE', T, 0, -1, 'WITHSCORES')
    for i = 1, #window, 2 do
      excess = excess - tonumber(string.match(window[i], ':(%d+)$'))
      if excess <= 0 then
        reset = tonumber(window[i + 1]) + 60
        break
      end
    end
    return {0, 'tpm', tostring(held), '0', num(reset)}
  end
end

if par >= 0 then
  local n = redis.call('ZCARD', L)
  if n >= par then
    return {0, 'parallel', tostring(n), '0', num(now + 1)}
  end
end

if rpm >= 0 then
  redis.call('ZADD', R, now, uid)
  redis.call('PEXPIRE', R, 61000)
end
if leased then
  local keep = tonumber(ARGV[13])
  redis.call('ZADD', L, tonumber(ARGV[12]), uid)
  redis.call('HSET', S, 'l:' .. uid, tokens .. ' ' .. num(cost) .. ' ' .. ps)
  if tpm >= 0 and tokens ~= 0 then redis.call('HINCRBY', S, 'tr', tokens) end
  if budget >= 0 then
    redis.call('HINCRBYFLOAT', B, 'r', cost)
    if bttl > 0 then redis.call('PEXPIRE', B, bttl) end
  end
  redis.call('PEXPIRE', L, keep)
  redis.call('PEXPIRE', S, keep)
end
return {1, num(spend)}
-- [settle]
-- Ends one admission: releases its lease and reservations, counts the actual tokens and cost.
-- KEYS: 1 state hash, 2 tpm zset, 3 lease zset, 4 budget hash of the admission's period.
-- ARGV: 1 uid ("" = nothing to release), 2 reserved tokens, 3 reserved cost, 4 actual tokens,
--       5 actual cost, 6 now, 7 state ttl ms, 8 budget hash ttl ms (0: none), 9 tpm counted (1/0),
--       10 budget counted (1/0)
local S, T, L, B = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local uid = ARGV[1]
local rt, rc, at, ac = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local now, keep, bttl = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local has_budget = ARGV[10] == '1'
-- A lease already reaped (its request outlived the lease TTL) had its reservations given back then.
if uid ~= '' and redis.call('ZREM', L, uid) == 1 then
  redis.call('HDEL', S, 'l:' .. uid)
  if rt ~= 0 then redis.call('HINCRBY', S, 'tr', -rt) end
  if has_budget and rc ~= 0 then redis.call('HINCRBYFLOAT', B, 'r', -rc) end
end
if ARGV[9] == '1' and at > 0 then
  if redis.call('EXISTS', T) == 1 then
    redis.call('HINCRBY', S, 'tu', at)
  else
    redis.call('HSET', S, 'tu', at)
  end
  redis.call('ZADD', T, now, uid .. ':' .. at)
  redis.call('PEXPIRE', T, 61000)
  redis.call('PEXPIRE', S, keep)
end
if has_budget and ac ~= 0 then
  redis.call('HINCRBYFLOAT', B, 's', ac)
end
-- A budget hash recreated here (it had expired) gets an expiry again; a lifetime budget has none.
if has_budget and bttl > 0 and redis.call('PTTL', B) == -1 then
  redis.call('PEXPIRE', B, bttl)
end
return 1
