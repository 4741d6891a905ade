-- Take tokens from clubs' MPC request budgets: one token bucket per club (lib/token_bucket.lua).
-- KEYS: a bucket per request (a club may appear more than once; each is served in turn).
-- ARGV: rate per second, burst, then the tokens wanted for each key.
-- Returns, per key, {granted, ms until the next token once this take is done (0: some left)}.
${LIB_TOKEN_BUCKET}
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = redis_now_ms()
local answers = {}
for i, key in ipairs(KEYS) do
  local granted, wait = bucket_take(key, tonumber(ARGV[i + 2]), rate, burst, now)
  answers[i] = {granted, wait}
end
return answers
