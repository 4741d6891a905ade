-- A delivery to run again later: its outbox entry due then, and one more run counted when ARGV[3]
-- says so. An entry settled meanwhile is not brought back (nor counted).
-- KEYS: outbox, retry count. ARGV: outbox entry, due (ms), '1' to count, count TTL (ms).
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], 'XX', ARGV[2], ARGV[1])
if ARGV[3] == '1' then
  redis.call('INCR', KEYS[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
return 1
