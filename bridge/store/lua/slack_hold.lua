-- KEYS: channel pace, channel hold. ARGV: now (ms), until (ms)
-- Slack said to wait (429): nothing more is posted or updated there before `until`.
local now, until_ms = tonumber(ARGV[1]), tonumber(ARGV[2])
for _, key in ipairs(KEYS) do
  if until_ms > tonumber(redis.call('GET', key) or '0') then
    redis.call('SET', key, until_ms, 'PX', math.max(1, until_ms - now))
  end
end
return 1
