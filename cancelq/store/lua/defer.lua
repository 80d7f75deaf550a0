-- Park a job in the delayed set without using an attempt: a gate (rate limit) said "not
-- now". A settled or dead job is left alone.
-- A job with no record yet (sent straight to the broker by a foreign producer) is deferred
-- too: its record is made when it finally begins.
-- ARGV: prefix, job_id, delay_seconds, entry ("queue_key\npayload"). Returns 1 or 0.
local p, job_id, delay, payload = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local state = redis.call('HGET', p .. ':job:' .. job_id, 'state')
if state == 'settled' or state == 'dead' then return 0 end
local t = redis.call('TIME')
redis.call('ZADD', p .. ':delayed', tonumber(t[1]) + tonumber(t[2]) / 1000000 + delay, job_id)
redis.call('HSET', p .. ':delayed:msg', job_id, payload)
return 1
