-- Layout 4 -> 5 for one watch, in one step: its hash's fields get their short names (the creation
-- time is its spec's, an update time is kept only when it is neither the creation nor the end; the
-- final snapshot, a map in layout 4, is given as an array),
-- its fingerprint moves onto its import's tracker while it is active, and it gets its one entry
-- in its club's index of its state. The hash keeps its TTL. A watch already upgraded is left alone.
-- KEYS: the watch, its club's index of its state ('' when its spec could not be read: then it is
--   in no index), its import's tracker, the clubs with watch indexes.
-- ARGV: wid, club slug, created (ms), its final snapshot as an array ('' when it has none).
-- Returns 1 when the watch was upgraded, 0 when there was nothing to do.
local watch, index, tracker, clubs = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local wid, slug, created = ARGV[1], ARGV[2], ARGV[3]
local old = redis.call('HMGET', watch, '${L4_W_DOC}', '${L4_W_STATE}', '${L4_W_FINGERPRINT}',
  '${L4_W_CREATED}', '${L4_W_UPDATED}', '${L4_W_ENDED}', '${L4_W_SNAPSHOT}')
local doc, state, fp, was_created, updated, ended, snapshot =
  old[1], old[2], old[3], old[4], old[5], old[6], old[7]
if not doc then return 0 end
local fields = {'${W_DOC}', doc}
if state then
  fields[#fields + 1] = '${W_STATE}'
  fields[#fields + 1] = state
end
if ended then
  fields[#fields + 1] = '${W_ENDED}'
  fields[#fields + 1] = ended
end
if snapshot and ARGV[4] ~= '' then
  fields[#fields + 1] = '${W_SNAPSHOT}'
  fields[#fields + 1] = ARGV[4]
end
if updated and updated ~= (ended or was_created) then
  fields[#fields + 1] = '${W_UPDATED}'
  fields[#fields + 1] = updated
end
-- The new fields first: the hash is never empty, so it keeps its TTL.
redis.call('HSET', watch, unpack(fields))
redis.call('HDEL', watch, '${L4_W_DOC}', '${L4_W_STATE}', '${L4_W_FINGERPRINT}', '${L4_W_CREATED}',
  '${L4_W_UPDATED}', '${L4_W_ENDED}', '${L4_W_SNAPSHOT}')
if fp and state == 'active' and redis.call('HEXISTS', tracker, '${F_WATCH_PREFIX}' .. wid) == 1 then
  redis.call('HSET', tracker, '${F_WATCH_PREFIX}' .. wid, fp)
end
if index ~= '' then
  redis.call('ZADD', index, created, wid)
  redis.call('SADD', clubs, slug)
end
return 1
