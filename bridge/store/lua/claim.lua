-- Claim due imports for one worker, with a lease (the poll loop's claim).
-- KEYS: schedule, inflight. ARGV: now (ms), lease (ms), limit.
-- Returns {claimed, first due (ms) or false}; each claimed entry is {tid, tracker fields, {wid, doc...}}.
local now, lease, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
-- A lease that ran out belongs to a worker that died: its imports are due again.
for _, tid in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, limit)) do
  redis.call('ZREM', KEYS[2], tid)
  redis.call('ZADD', KEYS[1], now, tid)
end
local claimed = {}
for _, tid in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, limit)) do
  local tkey = '${TRACKER_PREFIX}' .. tid
  local slug = string.match(tid, '^([^/]+)/')
  local paused = tonumber(redis.call('GET', '${CLUB_PAUSE_PREFIX}' .. (slug or '')) or '0')
  if tonumber(redis.call('HGET', tkey, '${F_WATCH_COUNT}') or '0') <= 0 then
    redis.call('ZREM', KEYS[1], tid)
    redis.call('DEL', tkey)
  elseif paused > now then
    redis.call('ZADD', KEYS[1], paused, tid)
  else
    redis.call('ZREM', KEYS[1], tid)
    redis.call('ZADD', KEYS[2], now + lease, tid)
    local fields = redis.call('HGETALL', tkey)
    local docs = {}
    local prefix = '${F_WATCH_PREFIX}'
    for j = 1, #fields, 2 do
      if string.sub(fields[j], 1, #prefix) == prefix then
        local wid = string.sub(fields[j], #prefix + 1)
        local doc = redis.call('HGET', '${WATCH_PREFIX}' .. wid, '${W_DOC}')
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
