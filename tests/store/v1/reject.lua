-- schema v1 (commit 24369ce): this script's own text; library.lua goes in front
-- A message that breaks the contract (a foreign producer's) still ends in a recorded
-- outcome: a job settled `invalid_request`, with a note of why, and no call. Under its own
-- job id if that id is new; if the id already belongs to a job, on a job of its own
-- (`alt_job_id`): a bad message never settles, or runs on, someone else's job. The same bad
-- message delivered again changes nothing.
-- ARGV: prefix, job_id, alt_job_id, case_id, event_id, run_id, requested_by, now,
--       queue_name, queue_key, note_json, retention_seconds
-- Returns {recorded (0|1), the job id it is recorded on}
local p, job_id, alt_id, case_id, event_id = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local run_id, requested_by, now, queue_name = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local queue_key, note, retention = ARGV[10], ARGV[11], tonumber(ARGV[12])

local j = {id = job_id, case_id = case_id, event_id = event_id, run_id = run_id,
  requested_by = requested_by, reason = '', at = now, queue = queue_name,
  queue_key = queue_key, source = VERDICT.REJECTED}
local state, outcome, rec_case, rec_event = unpack(redis.call('HMGET', KEY.job(p, job_id),
  'state', 'outcome', 'case_id', 'event_id'))
if state then
  if state == STATE.SETTLED and outcome == OUTCOME.INVALID_REQUEST
      and rec_case == case_id and rec_event == event_id then
    return {0, job_id}
  end
  if redis.call('EXISTS', KEY.job(p, alt_id)) == 1 then return {0, alt_id} end
  j.id = alt_id
end
record_rejected(p, j, note, retention)
return {1, j.id}
