-- Move retries that are due from the delayed set to their broker queue, atomically, so a
-- crash between the two steps can neither lose a job nor push it twice.
-- ARGV: prefix, limit. Due times are Redis's own clock (TIME), shared by every host.
-- Returns the number of jobs moved.
local p, limit = ARGV[1], tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local ids = redis.call('ZRANGEBYSCORE', KEY.delayed(p), '-inf', now, 'LIMIT', 0, limit)
for _, id in ipairs(ids) do
  local entry = redis.call('HGET', KEY.delayed_messages(p), id)
  if entry then
    local cut = string.find(entry, '\n', 1, true)
    redis.call('LPUSH', string.sub(entry, 1, cut - 1), string.sub(entry, cut + 1))
  end
  redis.call('ZREM', KEY.delayed(p), id)
  redis.call('HDEL', KEY.delayed_messages(p), id)
end
return #ids
