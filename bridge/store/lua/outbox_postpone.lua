-- A delivery to run again later: its outbox entry due then (XX: an entry settled meanwhile is not
-- brought back), and one more run counted, when ARGV[3] says so.
-- KEYS: outbox, retry count. ARGV: outbox entry, due (ms), '1' to count, count TTL (ms).
local changed = redis.call('ZADD', KEYS[1], 'XX', 'CH', ARGV[2], ARGV[1])
if ARGV[3] == '1' then
  redis.call('INCR', KEYS[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
return changed
