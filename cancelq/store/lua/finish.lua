-- Record an attempt's result and move the job on: settle it, dead-letter it, or schedule
-- its next attempt. Settling happens once: a stale or repeated finish changes nothing.
-- ARGV: prefix, job_id, attempt_no ('0' = settle without a call; attempt_json is then a
--       note, not counted as a call), attempt_json (`Attempt.encode`), decision (DECISION),
--       outcome, now, delay_seconds, retry_entry ("queue_key\npayload"),
--       retention_seconds ('0' = keep forever), http_status ('' = no answer)
-- Returns {applied (0|1), state}
local p, job_id, attempt_no, attempt_json = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local decision, outcome, now, delay = ARGV[5], ARGV[6], ARGV[7], tonumber(ARGV[8])
local retry_payload, retention, http_status = ARGV[9], tonumber(ARGV[10]), ARGV[11]

local job = KEY.job(p, job_id)
local state, attempts, open, run_id, created = unpack(redis.call('HMGET', job,
  'state', 'attempts', 'attempt_started_at', 'run_id', 'created_at'))
if not state then return {0, 'missing'} end
if state == STATE.SETTLED or state == STATE.DEAD then return {0, state} end
run_id = run_id or ''
if attempt_no ~= '0' then
  if state ~= STATE.RUNNING or attempts ~= attempt_no or not open or open == '' then
    return {0, state}
  end
  redis.call('RPUSH', KEY.attempts(p, job_id), attempt_json)
  count(p, run_id, COUNTER.attempts(), 1)
  local calls = KEY.calls(p, redis.call('TIME')[1])
  if http_status == '' then http_status = 'none' end
  redis.call('HINCRBY', calls, http_status, 1)
  redis.call('EXPIRE', calls, 120)
elseif attempt_json ~= '' then
  -- a note of why the job ended without a call (invalid input, exhausted, auth blocked)
  redis.call('RPUSH', KEY.attempts(p, job_id), attempt_json)
end

local new_state
if decision == DECISION.RETRY then
  new_state = STATE.RETRYING
  local t = redis.call('TIME')
  local due = tonumber(t[1]) + tonumber(t[2]) / 1000000 + delay
  redis.call('ZADD', KEY.delayed(p), due, job_id)
  redis.call('HSET', KEY.delayed_messages(p), job_id, retry_payload)
  redis.call('HSET', job, 'next_attempt_at', now + delay)
elseif decision == DECISION.DEAD then
  new_state = STATE.DEAD
else
  new_state = STATE.SETTLED
end

redis.call('HSET', job, 'attempt_started_at', '', 'updated_at', now)
move_state(p, job_id, run_id, state, new_state, created)
if new_state ~= STATE.RETRYING then
  redis.call('HSET', job, 'outcome', outcome, 'settled_at', now)
  redis.call('ZADD', KEY.index_outcome(p, outcome), now, job_id)
  count(p, run_id, COUNTER.outcome(outcome), 1)
  if retention > 0 then
    redis.call('EXPIRE', job, retention)
    redis.call('EXPIRE', KEY.attempts(p, job_id), retention)
  end
end
return {1, new_state}
