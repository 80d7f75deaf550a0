-- Record a new job and push its broker message, atomically; or return the live job for the
-- same (case, event) pair and push nothing.
-- ARGV: prefix, job_id, case_id, event_id, run_id, requested_by, reason, now, force,
--       queue_name, queue_key, payload
-- Returns {created (0|1), job_id, state}
local p, job_id, case_id, event_id = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local run_id, requested_by, reason, now = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local force, queue_name, queue_key, payload = ARGV[9], ARGV[10], ARGV[11], ARGV[12]

local found, found_state = existing_job(p, job_id, case_id, event_id, force == '1')
if found then
  return {0, found, found_state}
end

create_job(p, {id = job_id, case_id = case_id, event_id = event_id, run_id = run_id,
  requested_by = requested_by, reason = reason, at = now, queue = queue_name,
  queue_key = queue_key}, false)
if payload ~= '' then
  redis.call('LPUSH', queue_key, payload)
end
return {1, job_id, STATE.QUEUED}
