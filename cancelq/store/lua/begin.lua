-- A worker starts an attempt. Creates the record when a foreign producer sent the message
-- straight to the broker; closes an attempt a killed worker left open; refuses to run a
-- job that is already settled or dead, or that has used all its attempts.
-- ARGV: prefix, job_id, case_id, event_id, run_id, requested_by, reason, now, max_attempts,
--       queue_name, queue_key
-- Returns {verdict (BEGIN_VERDICT), attempt number or state, outcome}
local p, job_id, case_id, event_id = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local run_id, requested_by, reason, now = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local max_attempts, queue_name, queue_key = tonumber(ARGV[9]), ARGV[10], ARGV[11]

local job = KEY.job(p, job_id)
local state = redis.call('HGET', job, 'state')

if not state then
  state = STATE.QUEUED
  create_job(p, {id = job_id, case_id = case_id, event_id = event_id, run_id = run_id,
    requested_by = requested_by, reason = reason, at = now, queue = queue_name,
    queue_key = queue_key, source = 'broker'}, true)
end

if state == STATE.SETTLED or state == STATE.DEAD then
  return {BEGIN_VERDICT.SETTLED, state, redis.call('HGET', job, 'outcome')}
end

local attempts = tonumber(redis.call('HGET', job, 'attempts') or '0')
local open = redis.call('HGET', job, 'attempt_started_at')
if open and open ~= '' then
  redis.call('RPUSH', KEY.attempts(p, job_id), encode_attempt({
    number = tostring(attempts), started_at = open, error_class = json_string('WorkerLost'),
    error = json_string('the worker stopped before this attempt was recorded'),
    verdict = json_string(VERDICT.INTERRUPTED)}))
  redis.call('HSET', job, 'attempt_started_at', '')
end

if attempts >= max_attempts then
  return {BEGIN_VERDICT.EXHAUSTED, attempts, ''}
end

attempts = attempts + 1
redis.call('HSET', job, 'attempts', attempts, 'attempt_started_at', now, 'updated_at', now,
  'next_attempt_at', '')
if state ~= STATE.RUNNING then
  local created = redis.call('HGET', job, 'created_at')
  move_state(p, job_id, redis.call('HGET', job, 'run_id') or '', state, STATE.RUNNING, created)
end
return {BEGIN_VERDICT.RUN, attempts, ''}
