-- Replace a sealed value only if it is still the one that was read (compare-and-set), so a
-- re-seal never undoes a token set or a secret rotated meanwhile, nor re-creates what was deleted.
-- (A layout upgrade re-encoding a stored value uses it the same way.)
-- KEYS: the hash (or the string key). ARGV: field ('' for a string key), value read, new value.
-- Returns 1 when replaced, 0 when it changed.
if ARGV[1] == '' then
  if redis.call('GET', KEYS[1]) == ARGV[2] then
    redis.call('SET', KEYS[1], ARGV[3], 'KEEPTTL')
    return 1
  end
  return 0
end
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  return 1
end
return 0
