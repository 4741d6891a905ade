-- Note a failed webhook attempt. KEYS: subscription hash. ARGV: now (ms).
-- Returns since when the subscription has been failing (ms), or false when it is gone.
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
redis.call('HSETNX', KEYS[1], '${S_FAILING_SINCE}', ARGV[1])
redis.call('HSET', KEYS[1], '${S_LAST_FAILURE}', ARGV[1])
return redis.call('HGET', KEYS[1], '${S_FAILING_SINCE}')
