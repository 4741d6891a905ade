-- Disable an enabled subscription (so the first reason stays).
-- KEYS: subscription hash, version counter. ARGV: reason, now (ms). Returns 1 when disabled now.
if redis.call('HGET', KEYS[1], '${S_ENABLED}') ~= '1' then return 0 end
redis.call('HSET', KEYS[1], '${S_ENABLED}', '0', '${S_REASON}', ARGV[1], '${S_UPDATED}', ARGV[2])
redis.call('INCR', KEYS[2])
return 1
