-- Replace one hash field's value only if it is still the one that was read (compare-and-set), so
-- a re-seal never undoes a token set or a secret rotated meanwhile, nor re-creates what was deleted.
-- KEYS: the hash. ARGV: field, value read, new value. Returns 1 when replaced, 0 when it changed.
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  return 1
end
return 0
