-- A club whose watch indexes are all gone (empty) leaves the set of clubs with watch indexes; a
-- watch created meanwhile keeps it there (checked in one step).
-- KEYS: the clubs with watch indexes, then every index of the club. ARGV: the club's slug.
-- Returns 1 when the club was forgotten.
for k = 2, #KEYS do
  if redis.call('EXISTS', KEYS[k]) == 1 then return 0 end
end
return redis.call('SREM', KEYS[1], ARGV[1])
