-- Poll an import as soon as it politely may ("Refresh now" on a Slack card).
-- KEYS: schedule, inflight. ARGV: tid, now (ms), minimum interval (ms), club slug.
-- Returns {outcome, when (ms)}: 'moved' (now due at when), 'unchanged' (already due at when, no
-- later than the floor allows), 'polling' (a worker is polling it right now) or 'idle' (nothing
-- scheduled: no active watch).
-- The earliest allowed is the last poll + the minimum interval, and never before the club's pause
-- (MPC's Retry-After): a refresh only moves an import forward, never past either.
local tid, now, min_interval, slug = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
if redis.call('ZSCORE', KEYS[2], tid) then
  return {'polling', now}
end
local due = redis.call('ZSCORE', KEYS[1], tid)
if not due then
  return {'idle', now}
end
due = tonumber(due)
local last = tonumber(redis.call('HGET', '${TRACKER_PREFIX}' .. tid, '${F_LAST_POLL}') or '0')
local paused = tonumber(redis.call('GET', '${CLUB_PAUSE_PREFIX}' .. slug) or '0')
local at = math.max(now, last + min_interval, paused)
if at < due then
  redis.call('ZADD', KEYS[1], at, tid)
  redis.call('PUBLISH', '${SCHEDULE_WAKE_CHANNEL}', tid) -- idle poll loops look again now
  return {'moved', at}
end
return {'unchanged', due}
