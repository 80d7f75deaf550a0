-- Put a dead job back on its queue as new attempts of the same job, atomically: only a job
-- that is `dead` now; its indexes and counters move dead -> queued and its outcome is
-- cleared; its attempt budget starts again (`attempts` back to 0, `replays` + 1); a note of
-- who replayed it and when goes into its attempts list, after the earlier attempts, which
-- stay; and the fresh message is pushed. A TTL set when the job died (retention) is removed.
-- ARGV: prefix, job_id, now, note_json, queue_key, payload
-- Returns {applied (0|1), state ('queued' when applied, else the current state or 'missing'),
--          replays}
local p, job_id, now, note = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local queue_key, payload = ARGV[5], ARGV[6]

local job = p .. ':job:' .. job_id
local state, outcome, run_id, created, replays = unpack(redis.call('HMGET', job,
  'state', 'outcome', 'run_id', 'created_at', 'replays'))
if not state then return {0, 'missing', 0} end
if state ~= 'dead' then return {0, state, tonumber(replays or '0')} end
run_id = run_id or ''
outcome = outcome or ''

local attempts_key = job .. ':attempts'
redis.call('RPUSH', attempts_key, note)
redis.call('PERSIST', job)
redis.call('PERSIST', attempts_key)
replays = redis.call('HINCRBY', job, 'replays', 1)
redis.call('HSET', job, 'state', 'queued', 'outcome', '', 'settled_at', '', 'attempts', 0,
  'attempt_started_at', '', 'next_attempt_at', '', 'updated_at', now, 'replayed_at', now)

redis.call('ZREM', p .. ':idx:state:dead', job_id)
redis.call('ZADD', p .. ':idx:state:queued', created, job_id)
redis.call('HINCRBY', p .. ':stats', 'state:dead', -1)
redis.call('HINCRBY', p .. ':stats', 'state:queued', 1)
redis.call('HINCRBY', p .. ':stats', 'replays', 1)
if outcome ~= '' then
  redis.call('ZREM', p .. ':idx:outcome:' .. outcome, job_id)
  redis.call('HINCRBY', p .. ':stats', 'outcome:' .. outcome, -1)
end
if run_id ~= '' then
  local run_stats = p .. ':run:' .. run_id .. ':stats'
  redis.call('HINCRBY', run_stats, 'state:dead', -1)
  redis.call('HINCRBY', run_stats, 'state:queued', 1)
  redis.call('HINCRBY', run_stats, 'replays', 1)
  if outcome ~= '' then
    redis.call('HINCRBY', run_stats, 'outcome:' .. outcome, -1)
  end
end
-- a dead job has no retry pending; make sure none can fire on top of the replay
redis.call('ZREM', p .. ':delayed', job_id)
redis.call('HDEL', p .. ':delayed:msg', job_id)
redis.call('LPUSH', queue_key, payload)
return {1, 'queued', replays}
