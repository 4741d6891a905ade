-- Release a Slack card unless a refresh was asked while it was rendered.
-- KEYS: lock, card. ARGV: token, want seen before rendering, lock ttl (ms).
-- 1: released (nothing new asked); 0: still held (render again); -1: not ours any more.
-- Either way the card now shows every refresh asked up to that want: recorded as done.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
if tonumber(redis.call('HGET', KEYS[2], '${C_DONE}') or '0') < tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[2], '${C_DONE}', ARGV[2])
end
if (redis.call('HGET', KEYS[2], '${C_WANT}') or '0') == ARGV[2] then
  redis.call('DEL', KEYS[1])
  return 1
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 0
