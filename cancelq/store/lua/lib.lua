-- The shared library of the store's scripts: what more than one script does, written once.
-- `cancelq/store/scripts.py` puts it in front of every script, after the generated prelude,
-- which defines the names used here: STATE, OUTCOME, DECISION, BEGIN_VERDICT, VERDICT, BREAKER
-- (cancelq/core/lifecycle.py), KEY.<kind>(p, ...) and COUNTER.<kind>(...)
-- (cancelq/store/keys.py), ATTEMPT_FIELDS and ATTEMPT_OPTIONAL (cancelq/store/records.py).
-- `p` is always the key prefix; a job of no run has run_id ''.

local VARIADIC_STEP = 1000  -- arguments per variadic call, well under Lua's stack limit

-- Add `by` to a counter of the whole store and, for a job of a run, to its run's.
local function count(p, run_id, field, by)
  redis.call('HINCRBY', KEY.stats(p), field, by)
  if run_id ~= '' then
    redis.call('HINCRBY', KEY.run_stats(p, run_id), field, by)
  end
end

-- The pair's job blocks a new one: waiting, working, dead (replay it instead), or done.
local function is_live(p, id)
  local state, outcome = unpack(redis.call('HMGET', KEY.job(p, id), 'state', 'outcome'))
  if not state then return nil end
  if state == STATE.QUEUED or state == STATE.RUNNING or state == STATE.RETRYING
      or state == STATE.DEAD then
    return state
  end
  if state == STATE.SETTLED
      and (outcome == OUTCOME.CANCELLED or outcome == OUTCOME.ALREADY_CANCELLED) then
    return state
  end
  return nil
end

-- The job a new one would repeat, and its state: the same job id, already recorded (its
-- message was sent twice), or else, unless `force`, the live job of the (case, event) pair.
-- Nothing when the new job may be created.
local function existing_job(p, job_id, case_id, event_id, force)
  local own_state = redis.call('HGET', KEY.job(p, job_id), 'state')
  if own_state then return job_id, own_state end
  if force then return nil end
  local other = redis.call('GET', KEY.pair(p, case_id, event_id))
  if not other then return nil end
  local state = is_live(p, other)
  if state then return other, state end
  return nil
end

-- Write a new job's record (state queued), claim its (case, event) pair and index it by case
-- and event. `j`: id, case_id, event_id, run_id, requested_by, reason, at (created time),
-- queue, queue_key, `source` (optional: who made the record, when not the producer) and
-- `no_pair` (optional: a rejected message, which never takes the pair).
-- `claim_if_free`: take the pair only if no job holds it (a record made late, by begin).
-- The shared indexes and the counters are `add_queued`'s, so a batch pays them once.
local function record_job(p, j, claim_if_free)
  local fields = {
    'job_id', j.id, 'case_id', j.case_id, 'event_id', j.event_id, 'run_id', j.run_id,
    'requested_by', j.requested_by, 'reason', j.reason, 'state', STATE.QUEUED, 'outcome', '',
    'attempts', 0, 'created_at', j.at, 'updated_at', j.at, 'settled_at', '',
    'queue', j.queue, 'queue_key', j.queue_key}
  if j.source then
    fields[#fields + 1] = 'source'
    fields[#fields + 1] = j.source
  end
  redis.call('HSET', KEY.job(p, j.id), unpack(fields))
  if j.no_pair then
    -- a rejected message: indexed like any job, but it holds no pair
  elseif claim_if_free then
    redis.call('SET', KEY.pair(p, j.case_id, j.event_id), j.id, 'NX')
  else
    redis.call('SET', KEY.pair(p, j.case_id, j.event_id), j.id)
  end
  redis.call('ZADD', KEY.index_case(p, j.case_id), j.at, j.id)
  redis.call('ZADD', KEY.index_event(p, j.event_id), j.at, j.id)
end

-- Index and count jobs `record_job` just wrote, all of one run (or none) and all queued.
-- `scored`: {created_at, job_id, created_at, job_id, ...}, oldest first.
local function add_queued(p, run_id, scored)
  local created = #scored / 2
  for i = 1, #scored, VARIADIC_STEP do
    local last = math.min(i + VARIADIC_STEP - 1, #scored)
    redis.call('ZADD', KEY.index_all(p), unpack(scored, i, last))
    redis.call('ZADD', KEY.index_state(p, STATE.QUEUED), unpack(scored, i, last))
    if run_id ~= '' then
      redis.call('ZADD', KEY.index_run(p, run_id), unpack(scored, i, last))
    end
  end
  count(p, run_id, COUNTER.jobs(), created)
  count(p, run_id, COUNTER.state(STATE.QUEUED), created)
  if run_id ~= '' then
    redis.call('ZADD', KEY.runs(p), 'NX', scored[1], run_id)
  end
end

-- One new job: recorded, indexed and counted (`record_job` and `add_queued`).
local function create_job(p, j, claim_if_free)
  record_job(p, j, claim_if_free)
  add_queued(p, j.run_id, {j.at, j.id})
end

-- The state move: the record's state, its state index (scored by created time, as every
-- index of jobs) and the state counters, of the store and of the job's run.
local function move_state(p, job_id, run_id, from, to, created)
  redis.call('HSET', KEY.job(p, job_id), 'state', to)
  redis.call('ZREM', KEY.index_state(p, from), job_id)
  redis.call('ZADD', KEY.index_state(p, to), created, job_id)
  count(p, run_id, COUNTER.state(from), -1)
  count(p, run_id, COUNTER.state(to), 1)
end

local JSON_ESCAPES = {['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f',
  ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t'}

-- An ASCII text as a JSON string, escaped as Python's json.dumps escapes it.
local function json_string(text)
  local escaped = string.gsub(text, '[%c"\\]', function(c)
    return JSON_ESCAPES[c] or string.format('\\u%04x', string.byte(c))
  end)
  return '"' .. escaped .. '"'
end

-- An attempt's JSON object, byte for byte what `Attempt.encode` writes: the fields in
-- ATTEMPT_FIELDS order. `values` maps a field to its JSON text (a number's digits,
-- `json_string(...)`); a field without one is null, or left out if it is optional.
local function encode_attempt(values)
  local parts = {}
  for _, name in ipairs(ATTEMPT_FIELDS) do
    local value = values[name]
    if value == nil and not ATTEMPT_OPTIONAL[name] then value = 'null' end
    if value ~= nil then parts[#parts + 1] = '"' .. name .. '":' .. value end
  end
  return '{' .. table.concat(parts, ',') .. '}'
end

-- A job id whose record key holds something other than a job record (a hash), e.g. a
-- poison id `<victim>:attempts` naming another job's attempt list: every call on it would
-- fail WRONGTYPE, so the sets that list jobs (leases, expiry) drop it instead.
local function is_poison(p, job_id)
  local kind = redis.call('TYPE', KEY.job(p, job_id))['ok']
  return kind ~= 'hash' and kind ~= 'none'
end

-- Redis's own clock, in seconds: leases, due times and the breaker are shared by every host.
local function redis_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

-- A job that is waiting or working: a second job for its pair would call Care360 twice.
local function in_flight(state)
  return state == STATE.QUEUED or state == STATE.RUNNING or state == STATE.RETRYING
end

-- A settled or dead job is trimmed (record, attempts, index entries) once its retention
-- ends: `trim.lua` reads this set. `retention` 0 keeps it forever.
local function schedule_expiry(p, job_id, at, retention)
  if retention > 0 then
    redis.call('ZADD', KEY.expiry(p), at + retention, job_id)
  end
end

-- End a job's attempt lease: no owner, off the reaper's list.
local function clear_lease(p, job_id)
  redis.call('HDEL', KEY.job(p, job_id), 'lease_owner', 'lease_until')
  redis.call('HSET', KEY.job(p, job_id), 'attempt_started_at', '')
  redis.call('ZREM', KEY.leases(p), job_id)
end

-- Settle or dead-letter a job now (its state index and counters move, its outcome is
-- indexed and counted), drop any retry still pending for it, schedule its trim, and list
-- it for the archive (`archive_pending`, scored by when it ended: the archiver's list;
-- without an archive, `trim.lua` drops the entry with the job).
local function close_job(p, job_id, run_id, from, to, outcome, now, retention)
  local job = KEY.job(p, job_id)
  move_state(p, job_id, run_id, from, to, redis.call('HGET', job, 'created_at'))
  redis.call('HSET', job, 'outcome', outcome, 'settled_at', now, 'updated_at', now)
  redis.call('ZADD', KEY.index_outcome(p, outcome), now, job_id)
  count(p, run_id, COUNTER.outcome(outcome), 1)
  redis.call('ZREM', KEY.delayed(p), job_id)
  redis.call('HDEL', KEY.delayed_messages(p), job_id)
  schedule_expiry(p, job_id, tonumber(now), retention)
  redis.call('ZADD', KEY.archive_pending(p), now, job_id)
end

-- A message that cannot run (it reuses another job's id, or breaks the contract) recorded
-- on a job of its own, settled `invalid_request` with `note` (an attempt JSON) saying why.
-- It never takes the (case, event) pair: it is not a request anyone waits on.
local function record_rejected(p, j, note, retention)
  j.no_pair = true
  create_job(p, j, true)
  redis.call('RPUSH', KEY.attempts(p, j.id), note)
  close_job(p, j.id, j.run_id, STATE.QUEUED, STATE.SETTLED, OUTCOME.INVALID_REQUEST, j.at,
    retention)
end
