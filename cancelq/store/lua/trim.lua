-- Retention: delete settled and dead jobs whose retention has ended, a batch at a time,
-- with everything that names them: the record, its attempts, its entries in every index,
-- the pair key if it still points at it, and its run's summary once the run has no job
-- left. `state:*` counters are decremented (they count live records); `jobs`, `attempts`,
-- `replays` and `outcome:*` are lifetime totals and stay.
-- ARGV: prefix, limit. Returns the number of jobs deleted.
local p, limit = ARGV[1], tonumber(ARGV[2])
local ids = redis.call('ZRANGEBYSCORE', KEY.expiry(p), '-inf', redis_now(), 'LIMIT', 0, limit)
local deleted = 0
for _, id in ipairs(ids) do
  local job = KEY.job(p, id)
  local state, outcome, case_id, event_id, run_id = unpack(redis.call('HMGET', job,
    'state', 'outcome', 'case_id', 'event_id', 'run_id'))
  redis.call('ZREM', KEY.expiry(p), id)
  if state == STATE.SETTLED or state == STATE.DEAD then
    run_id = run_id or ''
    redis.call('ZREM', KEY.index_all(p), id)
    redis.call('ZREM', KEY.index_state(p, state), id)
    if outcome and outcome ~= '' then redis.call('ZREM', KEY.index_outcome(p, outcome), id) end
    redis.call('ZREM', KEY.index_case(p, case_id or ''), id)
    redis.call('ZREM', KEY.index_event(p, event_id or ''), id)
    count(p, run_id, COUNTER.state(state), -1)
    if redis.call('GET', KEY.pair(p, case_id or '', event_id or '')) == id then
      redis.call('DEL', KEY.pair(p, case_id, event_id))
    end
    if run_id ~= '' then
      redis.call('ZREM', KEY.index_run(p, run_id), id)
      if redis.call('ZCARD', KEY.index_run(p, run_id)) == 0 then
        redis.call('DEL', KEY.run_stats(p, run_id))
        redis.call('ZREM', KEY.runs(p), run_id)
      end
    end
    redis.call('DEL', job, KEY.attempts(p, id))
    deleted = deleted + 1
  end
end
return deleted
