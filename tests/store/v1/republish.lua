-- schema v1 (commit 24369ce): this script's own text; library.lua goes in front
-- Publish a waiting job's message again after the broker lost it (`cancelq/store/lost.py`).
-- Only a job still `queued` or `retrying`, not parked in the delayed set, and unchanged for
-- `min_age` seconds: the record's `updated_at` is set to now, so a second call for the same
-- loss (another worker's pass, a repeated pass) does nothing, and the job is published once.
-- The target is one of our own queue lists (ARGV[6...]), never a message's word.
-- ARGV: prefix, job_id, queue_key, payload, note (an attempt JSON), min_age, allowed keys...
-- Returns 1 when published, else 0.
local p, job_id, target, payload, note = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local min_age = tonumber(ARGV[6])
local allowed = false
for i = 7, #ARGV do
  if ARGV[i] == target then allowed = true end
end
if not allowed then return 0 end
local job = KEY.job(p, job_id)
local state, updated = unpack(redis.call('HMGET', job, 'state', 'updated_at'))
if state ~= STATE.QUEUED and state ~= STATE.RETRYING then return 0 end
if redis.call('ZSCORE', KEY.delayed(p), job_id) then return 0 end
local now = redis_now()
if (tonumber(updated or '') or 0) > now - min_age then return 0 end
local kind = redis.call('TYPE', target)['ok']
if kind ~= 'list' and kind ~= 'none' then return 0 end
redis.call('LPUSH', target, payload)
redis.call('RPUSH', KEY.attempts(p, job_id), note)
redis.call('HSET', job, 'updated_at', now)
redis.call('HDEL', KEY.lost_suspects(p), job_id)
return 1
