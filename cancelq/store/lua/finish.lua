-- Record an attempt's result and move the job on: settle it, dead-letter it, or schedule
-- its next attempt. Settling happens once: a stale or repeated finish changes nothing.
-- ARGV: prefix, job_id, attempt_no ('0' = settle without a call; attempt_json is then a
--       note, not counted as a call), attempt_json, decision
--       ('settle'|'dead'|'retry'), outcome, now, delay_seconds, retry_entry ("queue_key\npayload"),
--       retention_seconds ('0' = keep forever), http_status ('' = no answer)
-- Returns {applied (0|1), state}
local p, job_id, attempt_no, attempt_json = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local decision, outcome, now, delay = ARGV[5], ARGV[6], ARGV[7], tonumber(ARGV[8])
local retry_payload, retention, http_status = ARGV[9], tonumber(ARGV[10]), ARGV[11]

local job = p .. ':job:' .. job_id
local state, attempts, open, run_id, created = unpack(redis.call('HMGET', job,
  'state', 'attempts', 'attempt_started_at', 'run_id', 'created_at'))
if not state then return {0, 'missing'} end
if state == 'settled' or state == 'dead' then return {0, state} end
if attempt_no ~= '0' then
  if state ~= 'running' or attempts ~= attempt_no or not open or open == '' then
    return {0, state}
  end
  redis.call('RPUSH', p .. ':job:' .. job_id .. ':attempts', attempt_json)
  redis.call('HINCRBY', p .. ':stats', 'attempts', 1)
  if run_id and run_id ~= '' then
    redis.call('HINCRBY', p .. ':run:' .. run_id .. ':stats', 'attempts', 1)
  end
  local second = redis.call('TIME')[1]
  local calls = p .. ':calls:' .. second
  if http_status == '' then http_status = 'none' end
  redis.call('HINCRBY', calls, http_status, 1)
  redis.call('EXPIRE', calls, 120)
elseif attempt_json ~= '' then
  -- a note of why the job ended without a call (invalid input, exhausted, auth blocked)
  redis.call('RPUSH', p .. ':job:' .. job_id .. ':attempts', attempt_json)
end
run_id = run_id or ''

local new_state
if decision == 'retry' then
  new_state = 'retrying'
  local t = redis.call('TIME')
  local due = tonumber(t[1]) + tonumber(t[2]) / 1000000 + delay
  redis.call('ZADD', p .. ':delayed', due, job_id)
  redis.call('HSET', p .. ':delayed:msg', job_id, retry_payload)
  redis.call('HSET', job, 'next_attempt_at', now + delay)
elseif decision == 'dead' then
  new_state = 'dead'
else
  new_state = 'settled'
end

redis.call('HSET', job, 'state', new_state, 'attempt_started_at', '', 'updated_at', now)
redis.call('ZREM', p .. ':idx:state:' .. state, job_id)
redis.call('ZADD', p .. ':idx:state:' .. new_state, created, job_id)
redis.call('HINCRBY', p .. ':stats', 'state:' .. state, -1)
redis.call('HINCRBY', p .. ':stats', 'state:' .. new_state, 1)
if run_id ~= '' then
  redis.call('HINCRBY', p .. ':run:' .. run_id .. ':stats', 'state:' .. state, -1)
  redis.call('HINCRBY', p .. ':run:' .. run_id .. ':stats', 'state:' .. new_state, 1)
end
if new_state ~= 'retrying' then
  redis.call('HSET', job, 'outcome', outcome, 'settled_at', now)
  redis.call('ZADD', p .. ':idx:outcome:' .. outcome, now, job_id)
  redis.call('HINCRBY', p .. ':stats', 'outcome:' .. outcome, 1)
  if run_id ~= '' then
    redis.call('HINCRBY', p .. ':run:' .. run_id .. ':stats', 'outcome:' .. outcome, 1)
  end
  if retention > 0 then
    redis.call('EXPIRE', job, retention)
    redis.call('EXPIRE', p .. ':job:' .. job_id .. ':attempts', retention)
  end
end
return {1, new_state}
