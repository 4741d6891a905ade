-- Claim due deliveries: outbox entries whose score (when they are next due, ms) has come, up to
-- ARGV[2] of them. Each one's score becomes the end of its lease, so a worker that dies holding it
-- leaves it to be claimed again then. With each entry: its delivered mark, the event's body and
-- how many runs of it ended in "retry later" (one read per entry).
-- KEYS: outbox. ARGV: now (ms), most entries, lease end (ms).
-- Returns {entry, mark, body, tries, ...}, then the earliest score left when fewer than asked were
-- due ('' when the outbox is empty; nil when it was not looked at).
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
if #due > 0 then
  local scored = {}
  for _, entry in ipairs(due) do
    scored[#scored + 1] = ARGV[3]
    scored[#scored + 1] = entry
  end
  redis.call('ZADD', KEYS[1], 'XX', unpack(scored))
  for _, entry in ipairs(due) do
    local split = string.find(entry, '${OUTBOX_SEPARATOR}', 1, true)
    local state = redis.call('MGET', '${DELIVERED_PREFIX}' .. entry,
      '${EVENT_PREFIX}' .. string.sub(entry, 1, split - 1), '${OUTBOX_TRIES_PREFIX}' .. entry)
    out[#out + 1] = entry
    out[#out + 1] = state[1] or ''
    out[#out + 1] = state[2] or ''
    out[#out + 1] = state[3] or '0'
  end
end
if #due < tonumber(ARGV[2]) then
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  out[#out + 1] = first[2] or ''
end
return out
