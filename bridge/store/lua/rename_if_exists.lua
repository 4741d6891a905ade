-- Move a key (its TTL with it) if it still exists. KEYS: from, to. Returns 1 when moved.
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('RENAME', KEYS[1], KEYS[2])
  return 1
end
return 0
