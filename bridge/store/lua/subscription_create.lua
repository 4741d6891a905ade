-- Store a new webhook subscription unless one of its clubs already has the most allowed, in one step.
-- A subscription counts for its club filter (loyalty_club_slug), else for each club it is limited
-- to (clubs), else for the group of subscriptions to every club ('') -- as cap_groups() in
-- bridge/webhooks/model.py.
-- KEYS: the subscription hash, the subscriptions index, the routing version.
-- ARGV: id, doc (JSON), enabled ('1' / '0'), now (ms), sealed secret, disabled reason ('' none),
--   most subscriptions per club (0: no limit), then the new subscription's groups.
-- Returns '' when stored, else the group that has the most allowed (nothing was written).
local sid, doc, enabled, now, secret, reason = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local most = tonumber(ARGV[7])
local function groups(raw)
  local d = cjson.decode(raw)
  if type(d['loyalty_club_slug']) == 'string' then return {d['loyalty_club_slug']} end
  if type(d['clubs']) == 'table' and #d['clubs'] > 0 then return d['clubs'] end
  return {''}
end
if most > 0 then
  local counts = {}
  for i = 8, #ARGV do counts[ARGV[i]] = 0 end
  for _, other in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
    local raw = redis.call('HGET', '${SUBSCRIPTION_PREFIX}' .. other, '${S_DOC}')
    if raw then
      for _, group in ipairs(groups(raw)) do
        if counts[group] then
          counts[group] = counts[group] + 1
          if counts[group] >= most then return {0, group} end
        end
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
return {1, ''}
