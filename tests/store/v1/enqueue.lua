-- schema v1 (commit 24369ce): this script's own text; library.lua goes in front
-- Record a new job and push its broker message, atomically; or return the live job for the
-- same (case, event) pair and push nothing.
-- The producer's own job id already recorded for the same pair (this script re-run by
-- redis-py after a socket timeout, or the same request sent again) is that job, not a
-- duplicate, and nothing is pushed twice. The id recorded for another pair is refused.
-- `force` makes a new job for a pair whose job has settled (cancelled, already_cancelled:
-- the operator says cancel again); it is refused while the pair's job is queued, running,
-- retrying or dead, so the pair key always points at exactly one live job.
-- ARGV: prefix, job_id, case_id, event_id, run_id, requested_by, reason, now, force,
--       queue_name, queue_key, payload
-- Returns {created (0|1), job_id, state, refused ('' | 'force' | 'job_id')}
local p, job_id, case_id, event_id = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local run_id, requested_by, reason, now = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local force, queue_name, queue_key, payload = ARGV[9], ARGV[10], ARGV[11], ARGV[12]

local own_state, own_case, own_event = unpack(redis.call('HMGET', KEY.job(p, job_id),
  'state', 'case_id', 'event_id'))
if own_state then
  if own_case == case_id and own_event == event_id then
    return {1, job_id, own_state, ''}
  end
  return {0, job_id, own_state, 'job_id'}
end

if force == '1' then
  local other = redis.call('GET', KEY.pair(p, case_id, event_id))
  local state = other and redis.call('HGET', KEY.job(p, other), 'state')
  if state and (in_flight(state) or state == STATE.DEAD) then
    return {0, other, state, 'force'}
  end
else
  local found, found_state = existing_job(p, job_id, case_id, event_id, false)
  if found then
    return {0, found, found_state, ''}
  end
end

create_job(p, {id = job_id, case_id = case_id, event_id = event_id, run_id = run_id,
  requested_by = requested_by, reason = reason, at = now, queue = queue_name,
  queue_key = queue_key}, false)
if payload ~= '' then
  redis.call('LPUSH', queue_key, payload)
end
return {1, job_id, STATE.QUEUED, ''}
