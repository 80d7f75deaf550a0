-- schema v1 (commit 24369ce): this script's own text; library.lua goes in front
-- A worker starts an attempt, under a lease. Creates the record when a foreign producer sent
-- the message straight to the broker; refuses to run a job that is settled or dead, or that
-- has used its attempt budget; never runs a message on a job of another (case, event).
--
-- The lease: the attempt's owner (worker node + a random token) and its expiry (Redis time),
-- renewed by the running attempt (`renew.lua`). A second copy of the job (the same message
-- delivered twice) that finds a live lease neither calls nor closes the first attempt: it
-- is told `leased` and how long the lease has left. Only an expired lease means the worker
-- was lost: that attempt is closed `WorkerLost` and a new one starts. The same owner
-- beginning again (redis-py re-running this script after a socket timeout) gets its own
-- attempt back, not a second one.
--
-- A foreign message (no record yet) for a (case, event) pair that already has a live job is
-- a duplicate of that job, exactly as `enqueue.lua` makes a producer's: no record of its
-- own, no call; a note (`dup_note_json`) on the live job says it came. And a job with an
-- entry in the delayed set that is not due yet (a retry waiting out its backoff or
-- Retry-After, a deferral) is started by that entry only: a second copy of its message (a
-- redelivery) is told `not_due` and acked without a call. Due times are Redis's clock, as
-- `promote.lua` reads them, so a refused copy always has an entry that brings the job back.
-- ARGV: prefix, job_id, case_id, event_id, run_id, requested_by, reason, now, max_attempts,
--       queue_name, queue_key, owner, lease_seconds, alt_job_id, note_json, retention,
--       dup_note_json
--       (alt_job_id and note_json: the rejected job and its note, used on a conflict)
-- Returns {verdict (BEGIN_VERDICT), value, extra}:
--   RUN {attempt number, attempts used of the budget}; SETTLED {state, outcome};
--   EXHAUSTED {attempts, ''}; LEASED {attempt, seconds left}; CONFLICT {alt_job_id, ''};
--   DUPLICATE {live job id, its state}; NOT_DUE {attempts, seconds until due}
local p, job_id, case_id, event_id = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local run_id, requested_by, reason, now = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local max_attempts, queue_name, queue_key = tonumber(ARGV[9]), ARGV[10], ARGV[11]
local owner, lease, alt_id, note = ARGV[12], tonumber(ARGV[13]), ARGV[14], ARGV[15]
local retention, dup_note = tonumber(ARGV[16]), ARGV[17]

local job = KEY.job(p, job_id)
local state, rec_case, rec_event = unpack(redis.call('HMGET', job, 'state', 'case_id',
  'event_id'))

if not state then
  local live, live_state = existing_job(p, job_id, case_id, event_id, false)
  if live then
    local notes = KEY.attempts(p, live)
    if redis.call('LINDEX', notes, -1) ~= dup_note then  -- not twice for one re-run
      redis.call('RPUSH', notes, dup_note)
    end
    return {BEGIN_VERDICT.DUPLICATE, live, live_state}
  end
  state = STATE.QUEUED
  create_job(p, {id = job_id, case_id = case_id, event_id = event_id, run_id = run_id,
    requested_by = requested_by, reason = reason, at = now, queue = queue_name,
    queue_key = queue_key, source = 'broker'}, true)
elseif rec_case ~= case_id or rec_event ~= event_id then
  if redis.call('EXISTS', KEY.job(p, alt_id)) == 0 then
    record_rejected(p, {id = alt_id, case_id = case_id, event_id = event_id, run_id = run_id,
      requested_by = requested_by, reason = reason, at = now, queue = queue_name,
      queue_key = queue_key, source = VERDICT.REJECTED}, note, retention)
  end
  return {BEGIN_VERDICT.CONFLICT, alt_id, ''}
end

if state == STATE.SETTLED or state == STATE.DEAD then
  return {BEGIN_VERDICT.SETTLED, state, redis.call('HGET', job, 'outcome')}
end

local attempts, spared, open, holder, until_at = unpack(redis.call('HMGET', job, 'attempts',
  'spared', 'attempt_started_at', 'lease_owner', 'lease_until'))
attempts, spared = tonumber(attempts or '0'), tonumber(spared or '0')
local t = redis_now()
local due = tonumber(redis.call('ZSCORE', KEY.delayed(p), job_id) or '')
if due and due > t then
  return {BEGIN_VERDICT.NOT_DUE, attempts, string.format('%.3f', due - t)}
end
if open and open ~= '' then
  if holder == owner then
    return {BEGIN_VERDICT.RUN, attempts, attempts - spared}
  end
  local left = tonumber(until_at or '') or 0
  if left > t then
    return {BEGIN_VERDICT.LEASED, attempts, string.format('%.3f', left - t)}
  end
  redis.call('RPUSH', KEY.attempts(p, job_id), encode_attempt({
    number = tostring(attempts), started_at = open, error_class = json_string('WorkerLost'),
    error = json_string('the worker stopped before this attempt was recorded'),
    verdict = json_string(VERDICT.INTERRUPTED)}))
  clear_lease(p, job_id)
end

if attempts - spared >= max_attempts then
  return {BEGIN_VERDICT.EXHAUSTED, attempts, ''}
end

attempts = attempts + 1
local expires = t + lease
redis.call('HSET', job, 'attempts', attempts, 'attempt_started_at', now, 'updated_at', now,
  'next_attempt_at', '', 'lease_owner', owner, 'lease_until', string.format('%.6f', expires))
redis.call('ZADD', KEY.leases(p), expires, job_id)
if state ~= STATE.RUNNING then
  local created = redis.call('HGET', job, 'created_at')
  move_state(p, job_id, redis.call('HGET', job, 'run_id') or '', state, STATE.RUNNING, created)
end
return {BEGIN_VERDICT.RUN, attempts, attempts - spared}
