-- schema v1 (commit 24369ce): this script's own text; library.lua goes in front
-- Park a job in the delayed set without using an attempt: a gate (rate limit) said "not
-- now". A settled or dead job is left alone.
-- A job with no record yet (sent straight to the broker by a foreign producer) is deferred
-- too: its record is made when it finally begins.
-- ARGV: prefix, job_id, delay_seconds, entry ("queue_key\npayload"). Returns 1 or 0.
local p, job_id, delay, payload = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local state = redis.call('HGET', KEY.job(p, job_id), 'state')
if state == STATE.SETTLED or state == STATE.DEAD then return 0 end
local t = redis.call('TIME')
redis.call('ZADD', KEY.delayed(p), tonumber(t[1]) + tonumber(t[2]) / 1000000 + delay, job_id)
redis.call('HSET', KEY.delayed_messages(p), job_id, payload)
return 1
