"""The Lua scripts that make each multi-key step atomic.

Key names are built from prefixes passed in ``ARGV`` (see :mod:`bridge.store.keys`), so this
module holds no key literal. The scripts touch keys they were not given in ``KEYS``: fine on a
single Redis or a Sentinel-managed primary, which is what the bridge supports (arq cannot run on
Redis Cluster either). Timestamps are integer milliseconds.
"""

from __future__ import annotations

from typing import Final

CLAIM: Final = """
-- KEYS: schedule, inflight
-- ARGV: now, lease, limit, tracker prefix, pause prefix, watch prefix, watch field prefix
local now, lease, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local P_TRACKER, P_PAUSE, P_WATCH, F_WATCH = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
-- A lease that ran out belongs to a worker that died: its imports are due again.
for _, tid in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, limit)) do
  redis.call('ZREM', KEYS[2], tid)
  redis.call('ZADD', KEYS[1], now, tid)
end
local claimed = {}
for _, tid in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, limit)) do
  local tkey = P_TRACKER .. tid
  local slug = string.match(tid, '^([^/]+)/')
  local paused = tonumber(redis.call('GET', P_PAUSE .. (slug or '')) or '0')
  if tonumber(redis.call('HGET', tkey, 'n') or '0') <= 0 then
    redis.call('ZREM', KEYS[1], tid)
    redis.call('DEL', tkey)
  elseif paused > now then
    redis.call('ZADD', KEYS[1], paused, tid)
  else
    redis.call('ZREM', KEYS[1], tid)
    redis.call('ZADD', KEYS[2], now + lease, tid)
    local fields = redis.call('HGETALL', tkey)
    local docs = {}
    for j = 1, #fields, 2 do
      if string.sub(fields[j], 1, #F_WATCH) == F_WATCH then
        local wid = string.sub(fields[j], #F_WATCH + 1)
        local doc = redis.call('HGET', P_WATCH .. wid, 'doc')
        if doc then
          docs[#docs + 1] = wid
          docs[#docs + 1] = doc
        end
      end
    end
    claimed[#claimed + 1] = {tid, fields, docs}
  end
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {claimed, first[2] or false}
"""

COMMIT: Final = """
-- KEYS: schedule, inflight, outbox, fingerprints
local i = 0
local function arg() i = i + 1; return ARGV[i] end
local P_TRACKER, P_WATCH, P_TIMELINE, P_EVENT = arg(), arg(), arg(), arg()
local F_WATCH, F_SNAP, P_BY_STATE = arg(), arg(), arg()
local tid, expected, now, due = arg(), arg(), tonumber(arg()), tonumber(arg())
local retention, event_ttl = tonumber(arg()), tonumber(arg())
local P_UNMASKED, unmasked_ttl = arg(), tonumber(arg())
local tkey = P_TRACKER .. tid
local function watching(wid) return redis.call('HEXISTS', tkey, F_WATCH .. wid) == 1 end
-- Compare-and-set: whoever polled this import since our claim has already written its news.
if (redis.call('HGET', tkey, 'v') or '0') ~= expected then return {0} end
redis.call('HINCRBY', tkey, 'v', 1)
for _ = 1, tonumber(arg()) do
  local field, value = arg(), arg()
  local wid = string.sub(field, 1, #F_SNAP) == F_SNAP and string.sub(field, #F_SNAP + 1) or nil
  if wid == nil or watching(wid) then
    redis.call('HSET', tkey, field, value)
  end
end
local inserted = {}
for _ = 1, tonumber(arg()) do
  local wid, eid, body, unmasked = arg(), arg(), arg(), arg()
  local dests = {}
  for d = 1, tonumber(arg()) do dests[d] = arg() end
  -- A watch stopped while we polled gets nothing more; an id already stored is not news.
  if watching(wid) and redis.call('SET', P_EVENT .. eid, body, 'NX', 'PX', event_ttl) then
    redis.call('RPUSH', P_TIMELINE .. wid, eid)
    if unmasked ~= '' then redis.call('SET', P_UNMASKED .. eid, unmasked, 'PX', unmasked_ttl) end
    for _, dest in ipairs(dests) do
      redis.call('ZADD', KEYS[3], 'NX', now, eid .. '|' .. dest)
    end
    inserted[#inserted + 1] = eid
  end
end
for _ = 1, tonumber(arg()) do
  local wid, state, snapshot = arg(), arg(), arg()
  if redis.call('HDEL', tkey, F_WATCH .. wid) == 1 then
    redis.call('HINCRBY', tkey, 'n', -1)
    local watch = P_WATCH .. wid
    redis.call('HSET', watch, 'state', state, 'updated_at', now, 'ended_at', now, 'snapshot', snapshot)
    redis.call('ZREM', P_BY_STATE .. 'active', wid)
    redis.call('ZADD', P_BY_STATE .. state, redis.call('HGET', watch, 'created_at') or now, wid)
    redis.call('HDEL', tkey, F_SNAP .. wid)
    local fp = redis.call('HGET', watch, 'fp')
    if fp and redis.call('HGET', KEYS[4], fp) == wid then redis.call('HDEL', KEYS[4], fp) end
    redis.call('PEXPIRE', watch, retention)
    redis.call('PEXPIRE', P_TIMELINE .. wid, retention)
  end
end
redis.call('ZREM', KEYS[2], tid)
if tonumber(redis.call('HGET', tkey, 'n') or '0') <= 0 then
  redis.call('DEL', tkey)
  redis.call('ZREM', KEYS[1], tid)
else
  redis.call('ZADD', KEYS[1], due, tid)
end
return {1, inserted}
"""

CREATE_WATCH: Final = """
-- KEYS: schedule, inflight, watches, fingerprints
-- ARGV: tracker prefix, watch prefix, watch field prefix, wid, tid, fingerprint, doc, now,
--       min interval, by-club index prefix, by-state index prefix, slug
local P_TRACKER, P_WATCH, F_WATCH = ARGV[1], ARGV[2], ARGV[3]
local wid, tid, fp, doc = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local now, min_interval = tonumber(ARGV[8]), tonumber(ARGV[9])
local P_BY_CLUB, P_BY_STATE, slug = ARGV[10], ARGV[11], ARGV[12]
local existing = redis.call('HGET', KEYS[4], fp)
if existing and redis.call('HGET', P_WATCH .. existing, 'state') == 'active' then
  return {0, existing}
end
redis.call('HSET', P_WATCH .. wid, 'doc', doc, 'state', 'active', 'fp', fp,
  'created_at', now, 'updated_at', now)
redis.call('HSET', KEYS[4], fp, wid)
redis.call('ZADD', KEYS[3], now, wid)
redis.call('ZADD', P_BY_CLUB .. slug, now, wid)
redis.call('ZADD', P_BY_STATE .. 'active', now, wid)
if redis.call('HSETNX', P_TRACKER .. tid, F_WATCH .. wid, 1) == 1 then
  redis.call('HINCRBY', P_TRACKER .. tid, 'n', 1)
end
-- Due now, unless the import was polled less than the minimum interval ago; an import being
-- polled right now is rescheduled by that poll, and the new watch joins its next one.
if not redis.call('ZSCORE', KEYS[2], tid) then
  local last = tonumber(redis.call('HGET', P_TRACKER .. tid, 'lp') or '0')
  redis.call('ZADD', KEYS[1], 'LT', math.max(now, last + min_interval), tid)
end
return {1, wid}
"""

STOP_WATCH: Final = """
-- KEYS: schedule, inflight, fingerprints
-- ARGV: tracker prefix, watch prefix, timeline prefix, watch field prefix, snapshot field prefix,
--       wid, now, retention, tid, by-state index prefix
local P_TRACKER, P_WATCH, P_TIMELINE, F_WATCH, F_SNAP = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local wid, now, retention = ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8])
local P_BY_STATE = ARGV[10]
local watch = P_WATCH .. wid
local state = redis.call('HGET', watch, 'state')
if state ~= 'active' then return {0, state or false} end
local tid = ARGV[9]
local tkey = P_TRACKER .. tid
local snapshot = redis.call('HGET', tkey, F_SNAP .. wid)
redis.call('HSET', watch, 'state', 'stopped', 'updated_at', now, 'ended_at', now)
redis.call('ZREM', P_BY_STATE .. 'active', wid)
redis.call('ZADD', P_BY_STATE .. 'stopped', redis.call('HGET', watch, 'created_at') or now, wid)
if snapshot then redis.call('HSET', watch, 'snapshot', snapshot) end
redis.call('HDEL', tkey, F_SNAP .. wid)
if redis.call('HDEL', tkey, F_WATCH .. wid) == 1 then redis.call('HINCRBY', tkey, 'n', -1) end
local fp = redis.call('HGET', watch, 'fp')
if fp and redis.call('HGET', KEYS[3], fp) == wid then redis.call('HDEL', KEYS[3], fp) end
redis.call('PEXPIRE', watch, retention)
redis.call('PEXPIRE', P_TIMELINE .. wid, retention)
if tonumber(redis.call('HGET', tkey, 'n') or '0') <= 0 and not redis.call('ZSCORE', KEYS[2], tid) then
  redis.call('ZREM', KEYS[1], tid)
  redis.call('DEL', tkey)
end
return {1, 'stopped'}
"""

RELEASE: Final = """
-- KEYS: schedule, inflight. ARGV: now, tid...
-- Hand imports back (graceful stop): due at once for another worker.
local n = 0
for i = 2, #ARGV do
  if redis.call('ZREM', KEYS[2], ARGV[i]) == 1 then
    redis.call('ZADD', KEYS[1], tonumber(ARGV[1]), ARGV[i])
    n = n + 1
  end
end
return n
"""
