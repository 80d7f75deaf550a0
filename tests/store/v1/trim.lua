-- schema v1 (commit 24369ce): this script's own text; library.lua goes in front
-- Retention: delete settled and dead jobs whose retention has ended, a batch at a time,
-- with everything that names them: the record, its attempts, its entries in every index,
-- the pair key if it still points at it, and its run's summary once the run has no job
-- left. `state:*` counters are decremented (they count live records); `jobs`, `attempts`,
-- `replays` and `outcome:*` are lifetime totals and stay.
-- One bad entry never stops the trim for the others: an id naming no job record
-- (`is_poison`), or one whose deletion fails, is taken off the expiry set and named in the
-- reply, and the rest go on.
-- With an archive (`archived_only` '1'), a job still listed in `archive_pending` is not
-- deleted: the archive has not committed it yet. Its expiry moves `ARCHIVE_RECHECK_SECONDS`
-- later, so a backlog never hides the archived jobs behind it, and Redis keeps every record
-- until the archive has it. A job trimmed is taken off `archive_pending` too (without an
-- archive nobody else ever takes it off).
-- ARGV: prefix, limit, archived_only ('1' or absent), now (optional: a simulated clock, for
-- the week-long RAM bench; Redis's own clock otherwise). Returns {jobs deleted, bad ids...}.
local p, limit, archived_only = ARGV[1], tonumber(ARGV[2]), ARGV[3] == '1'
local ARCHIVE_RECHECK_SECONDS = 60

local function forget(id)
  local job = KEY.job(p, id)
  local state, outcome, case_id, event_id, run_id = unpack(redis.call('HMGET', job,
    'state', 'outcome', 'case_id', 'event_id', 'run_id'))
  if state ~= STATE.SETTLED and state ~= STATE.DEAD then return 0 end
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
  return 1
end

local now = ARGV[4] and tonumber(ARGV[4]) or redis_now()
local ids = redis.call('ZRANGEBYSCORE', KEY.expiry(p), '-inf', now, 'LIMIT', 0, limit)
local out = {0}
for _, id in ipairs(ids) do
  if archived_only and redis.call('ZSCORE', KEY.archive_pending(p), id) then
    redis.call('ZADD', KEY.expiry(p), now + ARCHIVE_RECHECK_SECONDS, id)
  else
    redis.call('ZREM', KEY.expiry(p), id)
    redis.call('ZREM', KEY.archive_pending(p), id)
    local ok, deleted = false, 0
    if not is_poison(p, id) then ok, deleted = pcall(forget, id) end
    if ok then
      out[1] = out[1] + deleted
    else
      out[#out + 1] = id
    end
  end
end
return out
