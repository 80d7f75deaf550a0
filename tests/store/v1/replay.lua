-- schema v1 (commit 24369ce): this script's own text; library.lua goes in front
-- Put a dead job back on its queue as new attempts of the same job, atomically: only a job
-- that is `dead` now; its indexes and counters move dead -> queued and its outcome is
-- cleared; its attempt budget starts again (`attempts` back to 0, `replays` + 1); a note of
-- who replayed it and when goes into its attempts list, after the earlier attempts, which
-- stay; and the fresh message is pushed. Its retention (trim) is cancelled.
-- Refused when its (case, event) pair now belongs to another live job: a replay never
-- leaves two live jobs for one pair. The same replay run twice (redis-py re-running it
-- after a socket timeout: same `token`) is answered "applied" again, and pushes once.
-- ARGV: prefix, job_id, now, note_json, queue_key, payload, token
-- Returns {applied (0|1), state (STATE.QUEUED when applied, else the current state or
--          'missing'), replays, the job holding the pair when refused for it ('' if not)}
local p, job_id, now, note = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local queue_key, payload, token = ARGV[5], ARGV[6], ARGV[7]

local job = KEY.job(p, job_id)
local state, outcome, run_id, replays, last, case_id, event_id = unpack(redis.call('HMGET',
  job, 'state', 'outcome', 'run_id', 'replays', 'replay_token', 'case_id', 'event_id'))
if not state then return {0, 'missing', 0, ''} end
if token ~= '' and last == token then return {1, state, tonumber(replays or '0'), ''} end
if state ~= STATE.DEAD then return {0, state, tonumber(replays or '0'), ''} end
local pair = KEY.pair(p, case_id, event_id)
local holder = redis.call('GET', pair)
if holder and holder ~= job_id and is_live(p, holder) then
  return {0, state, tonumber(replays or '0'), holder}
end
run_id = run_id or ''
outcome = outcome or ''

local attempts_key = KEY.attempts(p, job_id)
redis.call('RPUSH', attempts_key, note)
redis.call('ZREM', KEY.expiry(p), job_id)
redis.call('PERSIST', job)  -- a TTL from an older release's retention
replays = redis.call('HINCRBY', job, 'replays', 1)
redis.call('HSET', job, 'outcome', '', 'settled_at', '', 'attempts', 0, 'spared', 0,
  'attempt_started_at', '', 'next_attempt_at', '', 'updated_at', now, 'replayed_at', now,
  'replay_token', token, 'finished_by', '')
redis.call('SET', pair, job_id)

move_state(p, job_id, run_id, STATE.DEAD, STATE.QUEUED, redis.call('HGET', job, 'created_at'))
count(p, run_id, COUNTER.replays(), 1)
if outcome ~= '' then
  redis.call('ZREM', KEY.index_outcome(p, outcome), job_id)
  count(p, run_id, COUNTER.outcome(outcome), -1)
end
-- a dead job has no retry pending; make sure none can fire on top of the replay
redis.call('ZREM', KEY.delayed(p), job_id)
redis.call('HDEL', KEY.delayed_messages(p), job_id)
redis.call('LPUSH', queue_key, payload)
return {1, STATE.QUEUED, replays, ''}
