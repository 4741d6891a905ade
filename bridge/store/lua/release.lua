-- Hand claimed imports back (a worker stopping, a poll that could not run): due again at `due`.
-- KEYS: schedule, inflight. ARGV: due (ms), tid...
-- Returns how many were still leased.
local n = 0
for i = 2, #ARGV do
  if redis.call('ZREM', KEYS[2], ARGV[i]) == 1 then
    redis.call('ZADD', KEYS[1], tonumber(ARGV[1]), ARGV[i])
    n = n + 1
  end
end
if n > 0 then
  redis.call('PUBLISH', '${SCHEDULE_WAKE_CHANNEL}', '') -- other poll loops look again now
end
return n
