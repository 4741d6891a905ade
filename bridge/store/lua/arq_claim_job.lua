-- arq's claim of a due job (Worker.start_jobs: WATCH, EXISTS, ZSCORE, MULTI/PSETEX), as one
-- atomic step. Written against arq's job layout (see bridge/worker/arq_compat.py).
-- KEYS: in-progress key, queue; ARGV: job id, now (ms), in-progress timeout (ms)
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[2]) then return false end
redis.call('PSETEX', KEYS[1], ARGV[3], '1')
return score
