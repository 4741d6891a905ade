-- A destination has the event: mark it (deduplication) and take it off the outbox, together.
-- The mark lives as long as the event does, at most ARGV[2]: once the event is gone no job can
-- send it again anyway, so a short-lived event (a webhook.test) leaves no long-lived mark.
-- KEYS: the delivered mark, the event, outbox. ARGV: outbox entry, longest mark TTL (ms).
local ttl = redis.call('PTTL', KEYS[2])
local longest = tonumber(ARGV[2])
if ttl <= 0 or ttl > longest then
  ttl = longest
end
redis.call('SET', KEYS[1], '1', 'PX', ttl)
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
