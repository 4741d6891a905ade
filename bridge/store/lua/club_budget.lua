-- Take tokens from clubs' MPC request budgets: one token bucket per club, refilled at ARGV[1] per
-- second up to ARGV[2], timed by the Redis server's own clock so every worker shares one budget.
-- KEYS: a bucket per request (a club may appear more than once; each is served in turn).
-- ARGV: rate per second, burst, then the tokens wanted for each key.
-- Returns, per key, {granted, ms until the next token once this take is done (0: some left)}.
-- The bucket is a short-lived hash: it expires once it would be full again anyway.
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local ttl = math.ceil(burst / rate * 1000) + 1000
local answers = {}
for i, key in ipairs(KEYS) do
  local wanted = tonumber(ARGV[i + 2])
  local state = redis.call('HMGET', key, '${B_TOKENS}', '${B_AT}')
  local tokens = tonumber(state[1]) or burst
  local at = tonumber(state[2]) or now
  if now > at then
    tokens = math.min(burst, tokens + (now - at) * rate / 1000)
    at = now
  end
  local granted = math.max(0, math.min(wanted, math.floor(tokens)))
  tokens = tokens - granted
  redis.call('HSET', key, '${B_TOKENS}', tostring(tokens), '${B_AT}', tostring(at))
  redis.call('PEXPIRE', key, ttl)
  local wait = 0
  if tokens < 1 then
    wait = math.ceil((1 - tokens) * 1000 / rate)
  end
  answers[i] = {granted, wait}
end
return answers
