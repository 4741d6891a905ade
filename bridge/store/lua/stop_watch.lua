-- Stop an active watch; its import is no longer polled when no other watch needs it.
-- KEYS: schedule, inflight, the club's index of active watches, the club's index of stopped ones.
-- ARGV: wid, now (ms), retention (ms), tid.
-- Returns {1, 'stopped'}, or {0, its state} when it had already ended (false: no such watch).
local wid, now, retention, tid = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local watch = '${WATCH_PREFIX}' .. wid
local state = redis.call('HGET', watch, '${W_STATE}')
if state ~= 'active' then return {0, state or false} end
local tkey = '${TRACKER_PREFIX}' .. tid
local snapshot = redis.call('HGET', tkey, '${F_SNAPSHOT_PREFIX}' .. wid)
redis.call('HSET', watch, '${W_STATE}', 'stopped', '${W_ENDED}', now)
local created = redis.call('ZSCORE', KEYS[3], wid) or now
redis.call('ZREM', KEYS[3], wid)
redis.call('ZADD', KEYS[4], created, wid)
if snapshot then redis.call('HSET', watch, '${W_SNAPSHOT}', snapshot) end
redis.call('HDEL', tkey, '${F_SNAPSHOT_PREFIX}' .. wid)
-- The watch's field on the tracker goes, and with it the fingerprint an identical request finds.
if redis.call('HDEL', tkey, '${F_WATCH_PREFIX}' .. wid) == 1 then
  redis.call('HINCRBY', tkey, '${F_WATCH_COUNT}', -1)
end
redis.call('PEXPIRE', watch, retention)
redis.call('PEXPIRE', '${TIMELINE_PREFIX}' .. wid, retention)
if tonumber(redis.call('HGET', tkey, '${F_WATCH_COUNT}') or '0') <= 0 and not redis.call('ZSCORE', KEYS[2], tid) then
  redis.call('ZREM', KEYS[1], tid)
  redis.call('DEL', tkey)
end
return {1, 'stopped'}
