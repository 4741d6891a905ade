-- Store a new watch and schedule its import; an identical active watch is answered instead.
-- KEYS: schedule, inflight, watches, fingerprints.
-- ARGV: wid, tid, fingerprint, doc, now (ms), minimum interval (ms), club slug, most active
--   watches the club may have (0: no limit).
-- Returns {1, wid} when created, {0, existing wid} when an identical active watch exists,
-- {-1, ''} when the club already has that many active watches (nothing was written).
local wid, tid, fp, doc = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local now, min_interval, slug = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
local most = tonumber(ARGV[8] or '0')
local existing = redis.call('HGET', KEYS[4], fp)
if existing and redis.call('HGET', '${WATCH_PREFIX}' .. existing, '${W_STATE}') == 'active' then
  return {0, existing}
end
-- The club's watches in retention bound its active ones: only a club with at least that many
-- pays for counting the active ones (an intersection, stopped at the limit).
if most > 0 and redis.call('ZCARD', '${WATCHES_BY_CLUB_PREFIX}' .. slug) >= most
    and redis.call('ZINTERCARD', 2, '${WATCHES_BY_CLUB_PREFIX}' .. slug,
      '${WATCHES_BY_STATE_PREFIX}active', 'LIMIT', most) >= most then
  return {-1, ''}
end
redis.call('HSET', '${WATCH_PREFIX}' .. wid, '${W_DOC}', doc, '${W_STATE}', 'active', '${W_FINGERPRINT}', fp,
  '${W_CREATED}', now, '${W_UPDATED}', now)
redis.call('HSET', KEYS[4], fp, wid)
redis.call('ZADD', KEYS[3], now, wid)
redis.call('ZADD', '${WATCHES_BY_CLUB_PREFIX}' .. slug, now, wid)
redis.call('ZADD', '${WATCHES_BY_STATE_PREFIX}active', now, wid)
local tkey = '${TRACKER_PREFIX}' .. tid
if redis.call('HSETNX', tkey, '${F_WATCH_PREFIX}' .. wid, 1) == 1 then
  redis.call('HINCRBY', tkey, '${F_WATCH_COUNT}', 1)
end
-- Due now, unless the import was polled less than the minimum interval ago; an import being
-- polled right now is rescheduled by that poll, and the new watch joins its next one.
if not redis.call('ZSCORE', KEYS[2], tid) then
  local last = tonumber(redis.call('HGET', tkey, '${F_LAST_POLL}') or '0')
  redis.call('ZADD', KEYS[1], 'LT', math.max(now, last + min_interval), tid)
  redis.call('PUBLISH', '${SCHEDULE_WAKE_CHANNEL}', tid) -- idle poll loops claim it at once
end
return {1, wid}
