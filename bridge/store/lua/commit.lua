-- One poll of one import, atomically: snapshots, new events with their timeline entries, outbox
-- entries and attachments, watches that ended, and the import's next due time.
-- KEYS: schedule, inflight, outbox, the club's index of active watches.
-- ARGV: tid, expected version, now (ms), due (ms), retention (ms), event ttl (ms), attachment
--   ttl (ms); then n fields and n (field, value) pairs for the tracker hash; then m events, each
--   (wid, eid, body, d destinations, the destinations, a attachments, (destination, payload)
--   pairs); then k ended watches, each (wid, state, final snapshot, the club's index of that state).
-- Returns {0} when another poll committed first (compare-and-set on the version), else {1, new eids}.
local i = 0
local function arg() i = i + 1; return ARGV[i] end
local tid, expected, now, due = arg(), arg(), tonumber(arg()), tonumber(arg())
local retention, event_ttl, attachment_ttl = tonumber(arg()), tonumber(arg()), tonumber(arg())
local tkey = '${TRACKER_PREFIX}' .. tid
local function watching(wid) return redis.call('HEXISTS', tkey, '${F_WATCH_PREFIX}' .. wid) == 1 end
-- Compare-and-set: whoever polled this import since our claim has already written its news.
if (redis.call('HGET', tkey, '${F_VERSION}') or '0') ~= expected then return {0} end
redis.call('HINCRBY', tkey, '${F_VERSION}', 1)
local snap_prefix = '${F_SNAPSHOT_PREFIX}'
for _ = 1, tonumber(arg()) do
  local field, value = arg(), arg()
  local wid = string.sub(field, 1, #snap_prefix) == snap_prefix and string.sub(field, #snap_prefix + 1) or nil
  if wid == nil or watching(wid) then
    redis.call('HSET', tkey, field, value)
  end
end
local inserted = {}
for _ = 1, tonumber(arg()) do
  local wid, eid, body = arg(), arg(), arg()
  local dests = {}
  for d = 1, tonumber(arg()) do dests[d] = arg() end
  local attached = {}
  for a = 1, tonumber(arg()) do attached[a] = {arg(), arg()} end
  -- A watch stopped while we polled gets nothing more; an id already stored is not news.
  if watching(wid) and redis.call('SET', '${EVENT_PREFIX}' .. eid, body, 'NX', 'PX', event_ttl) then
    redis.call('RPUSH', '${TIMELINE_PREFIX}' .. wid, eid)
    for _, dest in ipairs(dests) do
      redis.call('ZADD', KEYS[3], 'NX', now, eid .. '${OUTBOX_SEPARATOR}' .. dest)
    end
    for _, pair in ipairs(attached) do
      redis.call('SET', '${ATTACHMENT_PREFIX}' .. eid .. '${OUTBOX_SEPARATOR}' .. pair[1], pair[2],
        'PX', attachment_ttl)
    end
    inserted[#inserted + 1] = eid
  end
end
for _ = 1, tonumber(arg()) do
  local wid, state, snapshot, index = arg(), arg(), arg(), arg()
  -- The watch's field on the tracker goes, and with it the fingerprint an identical request finds.
  if redis.call('HDEL', tkey, '${F_WATCH_PREFIX}' .. wid) == 1 then
    redis.call('HINCRBY', tkey, '${F_WATCH_COUNT}', -1)
    local watch = '${WATCH_PREFIX}' .. wid
    redis.call('HSET', watch, '${W_STATE}', state, '${W_ENDED}', now, '${W_SNAPSHOT}', snapshot)
    local created = redis.call('ZSCORE', KEYS[4], wid) or now
    redis.call('ZREM', KEYS[4], wid)
    redis.call('ZADD', index, created, wid)
    redis.call('HDEL', tkey, snap_prefix .. wid)
    redis.call('PEXPIRE', watch, retention)
    redis.call('PEXPIRE', '${TIMELINE_PREFIX}' .. wid, retention)
  end
end
redis.call('ZREM', KEYS[2], tid)
if tonumber(redis.call('HGET', tkey, '${F_WATCH_COUNT}') or '0') <= 0 then
  redis.call('DEL', tkey)
  redis.call('ZREM', KEYS[1], tid)
else
  redis.call('ZADD', KEYS[1], due, tid)
end
return {1, inserted}
