-- Store a new webhook subscription unless its club already has the most allowed, in one step.
-- KEYS: the subscription hash, the subscriptions index, the routing version.
-- ARGV: id, doc (JSON), enabled ('1' / '0'), now (ms), sealed secret, disabled reason ('' none),
--   the doc's club ('' when it filters no club), most subscriptions per club (0: no limit).
-- Subscriptions without a club filter count as one more group, with the same limit.
-- Returns 1 when stored, 0 when the limit is reached (nothing was written).
local sid, doc, enabled, now, secret, reason = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local club, most = ARGV[7], tonumber(ARGV[8])
if most > 0 then
  local count = 0
  for _, other in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
    local raw = redis.call('HGET', '${SUBSCRIPTION_PREFIX}' .. other, '${S_DOC}')
    if raw then
      local slug = cjson.decode(raw)['loyalty_club_slug']
      if type(slug) ~= 'string' then slug = '' end
      if slug == club then
        count = count + 1
        if count >= most then return 0 end
      end
    end
  end
end
redis.call('HSET', KEYS[1], '${S_DOC}', doc, '${S_ENABLED}', enabled, '${S_CREATED}', now,
  '${S_UPDATED}', now, '${S_SECRET}', secret)
if reason ~= '' then
  redis.call('HSET', KEYS[1], '${S_REASON}', reason)
end
redis.call('ZADD', KEYS[2], now, sid)
redis.call('INCR', KEYS[3])
return 1
