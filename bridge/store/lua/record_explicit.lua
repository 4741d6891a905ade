-- A delivery someone asked for (a test event, a redelivery), in one step: the event when it is
-- new, the delivery's log and its place in the subscription's index, and its outbox entry.
-- KEYS: event, delivery log, the subscription's delivery index, outbox.
-- ARGV: event body ('' = already stored), event ttl (ms), delivery log (JSON), retention (ms),
--   created (ms), delivery id, logs kept per subscription, outbox entry, now (ms).
-- Returns 1, or 0 when the event is not stored (nothing was written).
if ARGV[1] ~= '' then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
elseif redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
redis.call('ZADD', KEYS[3], 'NX', ARGV[5], ARGV[6])
redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -(tonumber(ARGV[7]) + 1))
redis.call('PEXPIRE', KEYS[3], ARGV[4])
redis.call('ZADD', KEYS[4], ARGV[9], ARGV[8])
return 1
