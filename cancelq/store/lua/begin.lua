-- A worker starts an attempt. Creates the record when a foreign producer sent the message
-- straight to the broker; closes an attempt a killed worker left open; refuses to run a
-- job that is already settled or dead, or that has used all its attempts.
-- ARGV: prefix, job_id, case_id, event_id, run_id, requested_by, reason, now, max_attempts,
--       queue_name, queue_key
-- Returns {verdict ('run'|'settled'|'exhausted'), attempt number or state, outcome}
local p, job_id, case_id, event_id = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local run_id, requested_by, reason, now = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local max_attempts, queue_name, queue_key = tonumber(ARGV[9]), ARGV[10], ARGV[11]

local job = p .. ':job:' .. job_id
local state = redis.call('HGET', job, 'state')

if not state then
  state = 'queued'
  redis.call('HSET', job,
    'job_id', job_id, 'case_id', case_id, 'event_id', event_id, 'run_id', run_id,
    'requested_by', requested_by, 'reason', reason, 'state', state, 'outcome', '',
    'attempts', 0, 'created_at', now, 'updated_at', now, 'settled_at', '',
    'queue', queue_name, 'queue_key', queue_key, 'source', 'broker')
  redis.call('SET', p .. ':pair:' .. case_id .. ':' .. event_id, job_id, 'NX')
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
end

if state == 'settled' or state == 'dead' then
  return {'settled', state, redis.call('HGET', job, 'outcome')}
end

local attempts = tonumber(redis.call('HGET', job, 'attempts') or '0')
local open = redis.call('HGET', job, 'attempt_started_at')
if open and open ~= '' then
  redis.call('RPUSH', p .. ':job:' .. job_id .. ':attempts',
    '{"number":' .. attempts .. ',"started_at":' .. open ..
    ',"duration_ms":null,"http_status":null,"error_class":"WorkerLost"' ..
    ',"error":"the worker stopped before this attempt was recorded","verdict":"interrupted"}')
  redis.call('HSET', job, 'attempt_started_at', '')
end

if attempts >= max_attempts then
  return {'exhausted', attempts, ''}
end

attempts = attempts + 1
redis.call('HSET', job, 'attempts', attempts, 'state', 'running', 'attempt_started_at', now,
  'updated_at', now, 'next_attempt_at', '')
if state ~= 'running' then
  local created = redis.call('HGET', job, 'created_at')
  run_id = redis.call('HGET', job, 'run_id') or ''
  redis.call('ZREM', p .. ':idx:state:' .. state, job_id)
  redis.call('ZADD', p .. ':idx:state:running', created, job_id)
  redis.call('HINCRBY', p .. ':stats', 'state:' .. state, -1)
  redis.call('HINCRBY', p .. ':stats', 'state:running', 1)
  if run_id ~= '' then
    redis.call('HINCRBY', p .. ':run:' .. run_id .. ':stats', 'state:' .. state, -1)
    redis.call('HINCRBY', p .. ':run:' .. run_id .. ':stats', 'state:running', 1)
  end
end
return {'run', attempts, ''}
