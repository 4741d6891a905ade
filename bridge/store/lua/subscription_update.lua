-- Change a subscription's fields if it still exists (and its doc is still the one expected).
-- KEYS: subscription hash, version counter.
-- ARGV: '1' to bump the version, the doc expected now ('' = no check), n, then n (field, value)
--   pairs to set, then the fields to delete.
-- Returns 1, 0 when the subscription does not exist, -1 when its doc changed meanwhile.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[2] ~= '' and redis.call('HGET', KEYS[1], '${S_DOC}') ~= ARGV[2] then return -1 end
local pairs = tonumber(ARGV[3])
local first = 4
if pairs > 0 then
  redis.call('HSET', KEYS[1], unpack(ARGV, first, first + 2 * pairs - 1))
end
if first + 2 * pairs <= #ARGV then
  redis.call('HDEL', KEYS[1], unpack(ARGV, first + 2 * pairs, #ARGV))
end
if ARGV[1] == '1' then redis.call('INCR', KEYS[2]) end
return 1
