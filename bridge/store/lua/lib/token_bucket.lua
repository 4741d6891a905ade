-- A club's MPC request budget: a token bucket in a short-lived hash, refilled at `rate` per second
-- up to `burst`, timed by the Redis server's own clock so every worker shares one budget. Included
-- by the scripts that take tokens (placeholder LIB_TOKEN_BUCKET); not a script of its own.
local function redis_now_ms()
  local clock = redis.call('TIME')
  return tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
end
-- Take up to `wanted` tokens from the bucket at `key` at `now` (ms). Returns the tokens granted
-- and the ms until the next token once this take is done (0: some left). The hash expires once
-- it would be full again anyway.
local function bucket_take(key, wanted, rate, burst, now)
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
  redis.call('PEXPIRE', key, math.ceil(burst / rate * 1000) + 1000)
  local wait = 0
  if tokens < 1 then
    wait = math.ceil((1 - tokens) * 1000 / rate)
  end
  return granted, wait
end
