-- Store a new watch and schedule its import; an identical active watch is answered instead.
-- KEYS: schedule, inflight, the club's index of active watches, the clubs with watch indexes.
-- ARGV: wid, tid, fingerprint, doc, now (ms), minimum interval (ms), club slug, most active
--   watches the club may have (0: no limit).
-- Returns {1, wid} when created, {0, existing wid} when an identical active watch exists,
-- {-1, ''} when the club already has that many active watches (nothing was written).
local wid, tid, fp, doc = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local now, min_interval, slug = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
local most = tonumber(ARGV[8] or '0')
local tkey = '${TRACKER_PREFIX}' .. tid
-- An identical request names the same import: its active watches are on the import's tracker,
-- each with the fingerprint of the request that created it.
local prefix = '${F_WATCH_PREFIX}'
local cursor = '0'
repeat
  local page = redis.call('HSCAN', tkey, cursor, 'MATCH', prefix .. '*', 'COUNT', 100)
  cursor = page[1]
  for j = 1, #page[2], 2 do
    if page[2][j + 1] == fp then
      return {0, string.sub(page[2][j], #prefix + 1)}
    end
  end
until cursor == '0'
if most > 0 and redis.call('ZCARD', KEYS[3]) >= most then
  return {-1, ''}
end
redis.call('HSET', '${WATCH_PREFIX}' .. wid, '${W_DOC}', doc, '${W_STATE}', 'active')
redis.call('ZADD', KEYS[3], now, wid)
redis.call('SADD', KEYS[4], slug)
if redis.call('HSETNX', tkey, prefix .. wid, fp) == 1 then
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
