-- A destination has the event, in one step: its delivered mark (deduplication), its outbox entry
-- and retry count removed, and, for a webhook, the delivery's log, its place in the subscription's
-- index and the subscription's health. Writes that would change nothing are left out by the caller.
-- KEYS: the delivered mark, outbox, retry count; then, for a webhook: the delivery log, the
--   subscription's delivery index, the subscription.
-- ARGV: outbox entry, mark TTL (ms), '1' when the retry count exists; then, for a webhook: the log
--   (JSON), retention (ms), index score (ms), index member, logs kept, last success (ms, '' = not
--   recorded).
redis.call('SET', KEYS[1], '1', 'PX', ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[1])
if ARGV[3] == '1' then redis.call('DEL', KEYS[3]) end
if #KEYS > 3 then
  redis.call('SET', KEYS[4], ARGV[4], 'PX', ARGV[5])
  if redis.call('ZADD', KEYS[5], 'NX', ARGV[6], ARGV[7]) == 1 then
    -- A new entry: the index keeps the newest and lives as long as its newest log.
    redis.call('ZREMRANGEBYRANK', KEYS[5], 0, -(tonumber(ARGV[8]) + 1))
    redis.call('PEXPIRE', KEYS[5], ARGV[5])
  end
  if ARGV[9] ~= '' and redis.call('EXISTS', KEYS[6]) == 1 then
    redis.call('HSET', KEYS[6], '${S_LAST_SUCCESS}', ARGV[9])
    redis.call('HDEL', KEYS[6], '${S_FAILING_SINCE}')
  end
end
return 1
