-- Drop index entries of watches that are gone (their retention ran out), checked and removed in
-- one step so nothing still stored loses its entry.
-- KEYS: the index. ARGV: 'zset' then watch ids (the watch indexes), or 'hash' then
--   (fingerprint, watch id) pairs (the fingerprints: an entry goes when its watch is gone or
--   no longer active, and only if the fingerprint still names that watch).
-- Returns how many entries were dropped.
local dropped = 0
if ARGV[1] == 'zset' then
  for i = 2, #ARGV do
    if redis.call('EXISTS', '${WATCH_PREFIX}' .. ARGV[i]) == 0 then
      dropped = dropped + redis.call('ZREM', KEYS[1], ARGV[i])
    end
  end
else
  for i = 2, #ARGV, 2 do
    local fp, wid = ARGV[i], ARGV[i + 1]
    if redis.call('HGET', KEYS[1], fp) == wid
        and redis.call('HGET', '${WATCH_PREFIX}' .. wid, '${W_STATE}') ~= 'active' then
      dropped = dropped + redis.call('HDEL', KEYS[1], fp)
    end
  end
end
return dropped
