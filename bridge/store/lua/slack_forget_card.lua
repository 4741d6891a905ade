-- KEYS: card. ARGV: ts of the message Slack no longer has. The next refresh posts a new card.
if redis.call('HGET', KEYS[1], '${C_TS}') == ARGV[1] then
  redis.call('HDEL', KEYS[1], '${C_CHANNEL}', '${C_TS}', '${C_REV}', '${C_DIGEST}')
  return 1
end
return 0
