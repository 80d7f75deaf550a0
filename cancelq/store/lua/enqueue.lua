-- Record a new job and push its broker message, atomically; or return the live job for the
-- same (case, event) pair and push nothing.
-- ARGV: prefix, job_id, case_id, event_id, run_id, requested_by, reason, now, force,
--       queue_name, queue_key, payload
-- Returns {created (0|1), job_id, state}
local p, job_id, case_id, event_id = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local run_id, requested_by, reason, now = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local force, queue_name, queue_key, payload = ARGV[9], ARGV[10], ARGV[11], ARGV[12]

local pair = p .. ':pair:' .. case_id .. ':' .. event_id


local own_state = redis.call('HGET', p .. ':job:' .. job_id, 'state')
if own_state then
  return {0, job_id, own_state}
end
if force ~= '1' then
  local existing = redis.call('GET', pair)
  if existing then
    local state = is_live(p, existing)
    if state then return {0, existing, state} end
  end
end

local job = p .. ':job:' .. job_id
redis.call('HSET', job,
  'job_id', job_id, 'case_id', case_id, 'event_id', event_id, 'run_id', run_id,
  'requested_by', requested_by, 'reason', reason, 'state', 'queued', 'outcome', '',
  'attempts', 0, 'created_at', now, 'updated_at', now, 'settled_at', '',
  'queue', queue_name, 'queue_key', queue_key)
redis.call('SET', pair, job_id)
redis.call('ZADD', p .. ':idx:all', now, job_id)
redis.call('ZADD', p .. ':idx:case:' .. case_id, now, job_id)
redis.call('ZADD', p .. ':idx:event:' .. event_id, now, job_id)
redis.call('ZADD', p .. ':idx:state:queued', now, job_id)
redis.call('HINCRBY', p .. ':stats', 'jobs', 1)
redis.call('HINCRBY', p .. ':stats', 'state:queued', 1)
if run_id ~= '' then
  redis.call('ZADD', p .. ':idx:run:' .. run_id, now, job_id)
  redis.call('ZADD', p .. ':runs', 'NX', now, run_id)
  redis.call('HINCRBY', p .. ':run:' .. run_id .. ':stats', 'jobs', 1)
  redis.call('HINCRBY', p .. ':run:' .. run_id .. ':stats', 'state:queued', 1)
end
if payload ~= '' then
  redis.call('LPUSH', queue_key, payload)
end
return {1, job_id, 'queued'}
