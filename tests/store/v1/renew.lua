-- schema v1 (commit 24369ce): this script's own text; library.lua goes in front
-- Renew the leases of the attempts one worker process is running, in one call: each job's
-- lease moves to now + lease_seconds, but only while this owner still holds it.
-- ARGV: prefix, lease_seconds, then job_id, owner, job_id, owner, ...
-- Returns the job ids whose lease this owner no longer holds (finished, or taken over).
local p, lease = ARGV[1], tonumber(ARGV[2])
local expires = redis_now() + lease
local lost = {}
for i = 3, #ARGV, 2 do
  local job_id, owner = ARGV[i], ARGV[i + 1]
  local job = KEY.job(p, job_id)
  if redis.call('HGET', job, 'lease_owner') == owner then
    redis.call('HSET', job, 'lease_until', string.format('%.6f', expires))
    redis.call('ZADD', KEY.leases(p), expires, job_id)
  else
    lost[#lost + 1] = job_id
  end
end
return lost
