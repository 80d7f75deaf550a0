-- Retention: delete settled and dead jobs that ended more than `retention` seconds ago, a
-- batch at a time, with everything that names them: the record (its attempts inside it),
-- its entries in every index and lookup, and its run's summary once the run has no job
-- left. The outcome indexes (scored by when a job ended) are the list: a replayed job has
-- left its outcome index, so it is not trimmed. `state:*` counters are decremented (they
-- count live records); `jobs`, `attempts`, `replays` and `outcome:*` are lifetime totals
-- and stay.
-- One bad entry never stops the trim for the others: an id naming no job record
-- (`is_poison`), or one whose deletion fails, is taken off its outcome index and named in
-- the reply, and the rest go on; an id whose record is gone only leaves the index.
-- With an archive (`archived_only` '1'), a job still listed in `archive_pending` is not
-- deleted: the archive has not committed it yet. It is skipped (the archive drains oldest
-- first, so those are few at the old end); at most `limit` x SKIP_FACTOR entries are looked
-- at in one call, so a backlog costs a bounded call, and Redis keeps every record until the
-- archive has it. A job trimmed is taken off `archive_pending` too (without an archive
-- nobody else ever takes it off).
-- ARGV: prefix, limit, archived_only ('1' or '0'), retention_seconds ('0': keep forever),
-- now (optional: a simulated clock, for the week-long RAM bench; Redis's own clock
-- otherwise). Returns {jobs deleted, bad ids...}.
local p, limit, archived_only = ARGV[1], tonumber(ARGV[2]), ARGV[3] == '1'
local retention = tonumber(ARGV[4] or '0') or 0
local SKIP_FACTOR = 10
if retention <= 0 then return {0} end
local now = ARGV[5] and tonumber(ARGV[5]) or redis_now()
local cutoff = now - retention

local function forget(id, listed_in)
  local job = KEY.job(p, id)
  local state, outcome, case_id, event_id, run_id = unpack(redis.call('HMGET', job,
    F.state, F.outcome, F.case_id, F.event_id, F.run_id))
  redis.call('ZREM', listed_in, id)
  if state ~= STATE.SETTLED and state ~= STATE.DEAD then
    if not state then redis.call('ZREM', KEY.index_all(p), id) end
    return 0
  end
  run_id = run_id or ''
  redis.call('ZREM', KEY.index_all(p), id)
  redis.call('ZREM', KEY.index_state(p, state), id)
  if outcome and outcome ~= '' then redis.call('ZREM', KEY.index_outcome(p, outcome), id) end
  lookup_remove(p, case_id or '', event_id or '', id)
  count(p, run_id, COUNTER.state(state), -1)
  if run_id ~= '' then
    redis.call('ZREM', KEY.index_run(p, run_id), id)
    if redis.call('ZCARD', KEY.index_run(p, run_id)) == 0 then
      redis.call('DEL', KEY.run_stats(p, run_id), KEY.run_intake(p, run_id))
      redis.call('ZREM', KEY.runs(p), run_id)
    end
  end
  redis.call('DEL', job)
  return 1
end

local out = {0}
local looked = 0
for _, outcome in pairs(OUTCOME) do
  local key = KEY.index_outcome(p, outcome)
  local skipped = 0
  while out[1] < limit and looked < limit * SKIP_FACTOR do
    local ids = redis.call('ZRANGEBYSCORE', key, '-inf', cutoff, 'LIMIT', skipped, limit)
    if #ids == 0 then break end
    for _, id in ipairs(ids) do
      looked = looked + 1
      if archived_only and redis.call('ZSCORE', KEY.archive_pending(p), id) then
        skipped = skipped + 1
      else
        redis.call('ZREM', KEY.archive_pending(p), id)
        local ok, deleted = false, 0
        if not is_poison(p, id) then ok, deleted = pcall(forget, id, key) end
        if ok then
          out[1] = out[1] + deleted
        else
          redis.call('ZREM', key, id)
          out[#out + 1] = id
        end
      end
      if out[1] >= limit then break end
    end
  end
end
return out
