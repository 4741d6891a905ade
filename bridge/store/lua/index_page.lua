-- A page of watch ids from several watch indexes merged newest first: by created (the score)
-- descending, then by id descending, the order ZREVRANGE gives within one index. Scores are whole
-- milliseconds.
-- KEYS: the indexes (any number; missing ones are empty). ARGV: start (a position in the merged
--   order, 0 the newest), count.
-- Returns {ids, for each id the position in KEYS of the index that holds it}.
local start, count = tonumber(ARGV[1]), tonumber(ARGV[2])
local sources, total = {}, 0
for k = 1, #KEYS do
  local n = redis.call('ZCARD', KEYS[k])
  if n > 0 then
    sources[#sources + 1] = k
    total = total + n
  end
end
local ids, from = {}, {}
if start >= total or count <= 0 then return {ids, from} end
if #sources == 1 then
  local k = sources[1]
  for _, id in ipairs(redis.call('ZREVRANGE', KEYS[k], start, start + count - 1)) do
    ids[#ids + 1] = id
    from[#from + 1] = k
  end
  return {ids, from}
end
local function above(k, score)
  return redis.call('ZCOUNT', KEYS[k], '(' .. string.format('%.0f', score), '+inf')
end
local function newer(score)
  local n = 0
  for _, k in ipairs(sources) do n = n + above(k, score) end
  return n
end
-- The score of the entry at `start`: the lowest with at most `start` entries above it.
local lo, hi
for _, k in ipairs(sources) do
  local oldest = tonumber(redis.call('ZRANGE', KEYS[k], 0, 0, 'WITHSCORES')[2])
  local newest = tonumber(redis.call('ZRANGE', KEYS[k], -1, -1, 'WITHSCORES')[2])
  if lo == nil or oldest < lo then lo = oldest end
  if hi == nil or newest > hi then hi = newest end
end
if start == 0 then lo = hi end
while lo < hi do
  local mid = math.floor((lo + hi) / 2)
  if newer(mid) <= start then hi = mid else lo = mid + 1 end
end
-- Merge from each index's first entry at or below that score, skipping the entries of that
-- score that come before `start`.
local skip = start - newer(lo)
local rank, buffer, at, done = {}, {}, {}, {}
for _, k in ipairs(sources) do
  rank[k] = above(k, lo)
  buffer[k] = {}
  at[k] = 1
end
local function head(k)
  if done[k] then return nil end
  if at[k] > #buffer[k] then
    buffer[k] = redis.call('ZREVRANGE', KEYS[k], rank[k], rank[k] + count - 1, 'WITHSCORES')
    at[k] = 1
    rank[k] = rank[k] + #buffer[k] / 2
    if #buffer[k] == 0 then
      done[k] = true
      return nil
    end
  end
  return buffer[k][at[k]], tonumber(buffer[k][at[k] + 1])
end
while #ids < count do
  local best, best_id, best_score
  for _, k in ipairs(sources) do
    local id, score = head(k)
    if id and (best == nil or score > best_score or (score == best_score and id > best_id)) then
      best, best_id, best_score = k, id, score
    end
  end
  if best == nil then break end
  at[best] = at[best] + 2
  if skip > 0 then
    skip = skip - 1
  else
    ids[#ids + 1] = best_id
    from[#from + 1] = best
  end
end
return {ids, from}
