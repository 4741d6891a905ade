-- Drop index entries of watches that are gone (their retention ran out), checked and removed in
-- one step so nothing still stored loses its entry.
-- KEYS: the index. ARGV: watch ids.
-- Returns how many entries were dropped.
local dropped = 0
for i = 1, #ARGV do
  if redis.call('EXISTS', '${WATCH_PREFIX}' .. ARGV[i]) == 0 then
    dropped = dropped + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return dropped
