-- A new signing secret; the current one keeps signing alongside until a given time.
-- KEYS: subscription hash. ARGV: new sealed secret, old one valid until (ms), now (ms).
-- Returns 1, or 0 when the subscription is gone.
local current = redis.call('HGET', KEYS[1], '${S_SECRET}')
if not current then return 0 end
redis.call('HSET', KEYS[1], '${S_PREVIOUS}', current, '${S_PREVIOUS_UNTIL}', ARGV[2], '${S_SECRET}', ARGV[1],
  '${S_UPDATED}', ARGV[3])
return 1
