-- schema v1 (commit 24369ce): this script's own text; library.lua goes in front
-- The reaper: an attempt whose lease expired (its worker died, hung or lost Redis for longer
-- than the lease) is closed `WorkerLost` and the job scheduled again (a retry), or
-- dead-lettered when its attempt budget is used; it never stays `running`.
-- A job whose lease is live again, or that is no longer running, is only taken off the list.
-- ARGV: prefix, job_id, max_attempts, delay_seconds, retry_entry ("queue_key\npayload"),
--       now, retention_seconds
-- An id that names no job record (`is_poison`) is taken off the list, so it cannot stop
-- the reaper on every pass.
-- Returns {reaped (0|1), state ('poison': such an id, dropped)}
local p, job_id, max_attempts, delay = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local entry, now, retention = ARGV[5], ARGV[6], tonumber(ARGV[7])

if is_poison(p, job_id) then
  redis.call('ZREM', KEY.leases(p), job_id)
  return {0, 'poison'}
end
local job = KEY.job(p, job_id)
local state, attempts, spared, open, until_at, run_id = unpack(redis.call('HMGET', job,
  'state', 'attempts', 'spared', 'attempt_started_at', 'lease_until', 'run_id'))
local t = redis_now()
if state ~= STATE.RUNNING or not open or open == '' then
  redis.call('ZREM', KEY.leases(p), job_id)
  return {0, state or 'missing'}
end
local expires = tonumber(until_at or '') or 0
if expires > t then
  redis.call('ZADD', KEY.leases(p), expires, job_id)
  return {0, state}
end

attempts, spared, run_id = tonumber(attempts or '0'), tonumber(spared or '0'), run_id or ''
redis.call('RPUSH', KEY.attempts(p, job_id), encode_attempt({
  number = tostring(attempts), started_at = open, error_class = json_string('WorkerLost'),
  error = json_string('the lease of this attempt expired: its worker stopped or hung'),
  verdict = json_string(VERDICT.INTERRUPTED)}))
clear_lease(p, job_id)
redis.call('HSET', job, 'updated_at', now)
if attempts - spared >= max_attempts then
  close_job(p, job_id, run_id, state, STATE.DEAD, OUTCOME.RETRIES_EXHAUSTED, now, retention)
  return {1, STATE.DEAD}
end
redis.call('ZADD', KEY.delayed(p), t + delay, job_id)
redis.call('HSET', KEY.delayed_messages(p), job_id, entry)
redis.call('HSET', job, 'next_attempt_at', now + delay)
move_state(p, job_id, run_id, state, STATE.RETRYING, redis.call('HGET', job, 'created_at'))
return {1, STATE.RETRYING}
