-- KEYS: channel pace, this message's slot, channel hold. ARGV: now (ms), interval (ms), slot ttl (ms)
-- Returns the time (ms) this message may be posted: its earlier reservation, else the next free one.
-- A reservation that falls inside a hold (Slack answered 429 since) queues again after it.
local held = tonumber(redis.call('GET', KEYS[3]) or '0')
local slot = redis.call('GET', KEYS[2])
if slot and tonumber(slot) >= held then return tonumber(slot) end
local now, interval = tonumber(ARGV[1]), tonumber(ARGV[2])
local at = math.max(now, tonumber(redis.call('GET', KEYS[1]) or '0'), held)
redis.call('SET', KEYS[1], at + interval, 'PX', math.max(1, at + interval - now))
redis.call('SET', KEYS[2], at, 'PX', ARGV[3])
return at
