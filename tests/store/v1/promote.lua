-- schema v1 (commit 24369ce): this script's own text; library.lua goes in front
-- Move retries that are due from the delayed set to their broker queue, atomically, so a
-- crash between the two steps can neither lose a job nor push it twice.
-- An entry is pushed only to one of our own queue lists (ARGV[3...], from our settings,
-- never from a message) that is a list or absent. Any other entry (unknown queue, a key of
-- another type, no separator) is moved aside to the `delayed_bad` hash, and the rest keep
-- flowing: one bad entry cannot stop every retry in the system.
-- ARGV: prefix, limit, queue_key... Due times are Redis's own clock (TIME), shared by hosts.
-- Returns {moved, bad job ids...}
local p, limit = ARGV[1], tonumber(ARGV[2])
local allowed = {}
for i = 3, #ARGV do allowed[ARGV[i]] = true end

local ids = redis.call('ZRANGEBYSCORE', KEY.delayed(p), '-inf', redis_now(), 'LIMIT', 0, limit)
local out = {0}
for _, id in ipairs(ids) do
  local entry = redis.call('HGET', KEY.delayed_messages(p), id)
  local cut = entry and string.find(entry, '\n', 1, true)
  local target = cut and string.sub(entry, 1, cut - 1)
  local kind = target and allowed[target] and redis.call('TYPE', target)['ok']
  if kind == 'list' or kind == 'none' then
    redis.call('LPUSH', target, string.sub(entry, cut + 1))
    out[1] = out[1] + 1
  else
    redis.call('HSET', KEY.delayed_bad(p), id, entry or '')
    out[#out + 1] = id
  end
  redis.call('ZREM', KEY.delayed(p), id)
  redis.call('HDEL', KEY.delayed_messages(p), id)
end
return out
