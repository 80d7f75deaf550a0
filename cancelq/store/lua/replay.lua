-- Put a dead job back on its queue as new attempts of the same job, atomically: only a job
-- that is `dead` now; its indexes and counters move dead -> queued and its outcome is
-- cleared; its attempt budget starts again (`attempts` back to 0, `replays` + 1); a note of
-- who replayed it and when goes into its attempts list, after the earlier attempts, which
-- stay; and the fresh message is pushed. Its retention (trim) is cancelled: it leaves its
-- outcome index, which is retention's list.
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
  job, F.state, F.outcome, F.run_id, F.replays, F.replay_token, F.case_id, F.event_id))
if not state then return {0, 'missing', 0, ''} end
if token ~= '' and last == token then return {1, state, tonumber(replays or '0'), ''} end
if state ~= STATE.DEAD then return {0, state, tonumber(replays or '0'), ''} end
local holder = pair_holder(p, case_id, event_id)
if holder and holder ~= job_id and is_live(p, holder) then
  return {0, state, tonumber(replays or '0'), holder}
end
run_id = run_id or ''
outcome = outcome or ''

add_attempt(p, job_id, note)
redis.call('PERSIST', job)  -- a TTL from an older release's retention
replays = redis.call('HINCRBY', job, F.replays, 1)
redis.call('HDEL', job, F.outcome, F.settled_at, F.spared, F.attempt_started_at,
  F.next_attempt_at, F.finished_by)
redis.call('HSET', job, F.attempts, 0, F.updated_at, now, F.replayed_at, now,
  F.replay_token, token)
claim_pair(p, job_id, case_id, event_id, false)

move_state(p, job_id, run_id, STATE.DEAD, STATE.QUEUED, redis.call('HGET', job, F.created_at))
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
