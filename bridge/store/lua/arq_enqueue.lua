-- arq's enqueue_job (ArqRedis.enqueue_job: WATCH, EXISTS, MULTI/EXEC) for several jobs, in one
-- atomic step: a job whose key or result already exists is not enqueued again. Written against
-- arq's job layout (see bridge/worker/arq_compat.py for the version).
-- KEYS: queue, then (job key, result key) per job; ARGV: score, expiry (ms), then (id, job) per job
local created = 0
for i = 0, (#KEYS - 1) / 2 - 1 do
  if redis.call('EXISTS', KEYS[2 + 2 * i], KEYS[3 + 2 * i]) == 0 then
    redis.call('PSETEX', KEYS[2 + 2 * i], ARGV[2], ARGV[4 + 2 * i])
    redis.call('ZADD', KEYS[1], ARGV[1], ARGV[3 + 2 * i])
    created = created + 1
  end
end
return created
