-- schema v1 (commit 24369ce): this script's own text; library.lua goes in front
-- Record an attempt's result and move the job on: settle it, dead-letter it, or schedule
-- its next attempt. Applies only for the attempt's owner (the lease `begin.lua` gave it):
-- a stale or repeated finish changes nothing, and a repeat of an applied finish (redis-py
-- re-running it after a socket timeout) is answered "applied" again.
-- ARGV: prefix, job_id, attempt_no ('0' = settle without a call; attempt_json is then a
--       note, not counted as a call), attempt_json (`Attempt.encode`), decision (DECISION),
--       outcome, now, delay_seconds, retry_entry ("queue_key\npayload"),
--       retention_seconds ('0' = keep forever), http_status ('' = no answer), owner,
--       spare ('1': this failed call does not count against the attempt budget: a probe
--       of the open circuit breaker)
-- Returns {applied (0|1), state}
local p, job_id, attempt_no, attempt_json = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local decision, outcome, now, delay = ARGV[5], ARGV[6], ARGV[7], tonumber(ARGV[8])
local retry_payload, retention, http_status = ARGV[9], tonumber(ARGV[10]), ARGV[11]
local owner, spare = ARGV[12], ARGV[13]

local job = KEY.job(p, job_id)
local state, attempts, holder, until_at, run_id, last = unpack(redis.call('HMGET', job,
  'state', 'attempts', 'lease_owner', 'lease_until', 'run_id', 'finished_by'))
if not state then return {0, 'missing'} end
local signature = owner .. '#' .. attempt_no
if owner ~= '' and last == signature then return {1, state} end
if state == STATE.SETTLED or state == STATE.DEAD then return {0, state} end
run_id = run_id or ''
if attempt_no ~= '0' then
  if state ~= STATE.RUNNING or attempts ~= attempt_no or holder ~= owner then
    return {0, state}
  end
  redis.call('RPUSH', KEY.attempts(p, job_id), attempt_json)
  count(p, run_id, COUNTER.attempts(), 1)
  local calls = KEY.calls(p, redis.call('TIME')[1])
  if http_status == '' then http_status = 'none' end
  redis.call('HINCRBY', calls, http_status, 1)
  redis.call('EXPIRE', calls, 120)
  if spare == '1' then redis.call('HINCRBY', job, 'spared', 1) end
else
  -- a note of why the job ends without a call: never over another copy's live attempt
  if holder and holder ~= '' and holder ~= owner
      and (tonumber(until_at or '') or 0) > redis_now() then
    return {0, state}
  end
  if attempt_json ~= '' then
    redis.call('RPUSH', KEY.attempts(p, job_id), attempt_json)
  end
end

clear_lease(p, job_id)
redis.call('HSET', job, 'updated_at', now, 'finished_by', signature)
if decision == DECISION.RETRY then
  local due = redis_now() + delay
  redis.call('ZADD', KEY.delayed(p), due, job_id)
  redis.call('HSET', KEY.delayed_messages(p), job_id, retry_payload)
  redis.call('HSET', job, 'next_attempt_at', now + delay)
  move_state(p, job_id, run_id, state, STATE.RETRYING, redis.call('HGET', job, 'created_at'))
  return {1, STATE.RETRYING}
end
local new_state = STATE.SETTLED
if decision == DECISION.DEAD then new_state = STATE.DEAD end
close_job(p, job_id, run_id, state, new_state, outcome, now, retention)
return {1, new_state}
