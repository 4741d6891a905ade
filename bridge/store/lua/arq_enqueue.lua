-- arq's enqueue_job (ArqRedis.enqueue_job: WATCH, EXISTS, MULTI/EXEC) for several jobs, in one
-- atomic step: a job whose key or result already exists is not enqueued again. Written against
-- arq's job layout (see bridge/worker/arq_compat.py for the version). When a job is new, the
-- wake channel hears of it, so idle workers start it at once (nothing is stored for that).
-- KEYS: queue, then (job key, result key) per job
-- ARGV: score, expiry (ms), wake channel, then (id, job) per job
local created = 0
for i = 0, (#KEYS - 1) / 2 - 1 do
  if redis.call('EXISTS', KEYS[2 + 2 * i], KEYS[3 + 2 * i]) == 0 then
    redis.call('PSETEX', KEYS[2 + 2 * i], ARGV[2], ARGV[5 + 2 * i])
    redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4 + 2 * i])
    created = created + 1
  end
end
if created > 0 then
  redis.call('PUBLISH', ARGV[3], created)
end
return created
