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
  local state, outcome = unpack(redis.call('HMGET', KEY.job(p, id), F.state, F.outcome))
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

-- The job ids a lookup field lists (a case's or an event's jobs), oldest first.
local function lookup_ids(p, field)
  local ids = {}
  local text = redis.call('HGET', KEY.lookup(p), field)
  if text then
    for id in string.gmatch(text, '%S+') do ids[#ids + 1] = id end
  end
  return ids
end

-- List a new job under its case and its event (`lookup`).
local function lookup_add(p, case_id, event_id, id)
  for _, field in ipairs({LOOKUP.case(case_id), LOOKUP.event(event_id)}) do
    local text = redis.call('HGET', KEY.lookup(p), field)
    redis.call('HSET', KEY.lookup(p), field, text and (text .. ' ' .. id) or id)
  end
end

-- Take a deleted job off its case's and its event's lists.
local function lookup_remove(p, case_id, event_id, id)
  for _, field in ipairs({LOOKUP.case(case_id), LOOKUP.event(event_id)}) do
    local kept = {}
    for _, other in ipairs(lookup_ids(p, field)) do
      if other ~= id then kept[#kept + 1] = other end
    end
    if #kept == 0 then
      redis.call('HDEL', KEY.lookup(p), field)
    else
      redis.call('HSET', KEY.lookup(p), field, table.concat(kept, ' '))
    end
  end
end

-- The job that holds the (case, event) pair, or nil: of the event's jobs (usually one) of
-- that case, the one whose record has no `no_pair` flag. The flag marks the exceptions, not
-- the rule, because every job pays for a field it has.
local function pair_holder(p, case_id, event_id)
  for _, id in ipairs(lookup_ids(p, LOOKUP.event(event_id))) do
    local c, kind, lost = unpack(redis.call('HMGET', KEY.job(p, id), F.case_id, F.state,
      F.no_pair))
    if kind and not lost and c == case_id then return id end
  end
  return nil
end

-- `id` takes its (case, event) pair from whichever job held it; with `if_free`, only if no
-- job holds it (else `id` is flagged as not holding it).
local function claim_pair(p, id, case_id, event_id, if_free)
  local holder = pair_holder(p, case_id, event_id)
  if holder == id then return end
  if holder then
    if if_free then
      redis.call('HSET', KEY.job(p, id), F.no_pair, 1)
      return
    end
    redis.call('HSET', KEY.job(p, holder), F.no_pair, 1)
  end
  redis.call('HDEL', KEY.job(p, id), F.no_pair)
end

-- The job a new one would repeat, and its state: the same job id, already recorded (its
-- message was sent twice), or else, unless `force`, the live job of the (case, event) pair.
-- Nothing when the new job may be created.
local function existing_job(p, job_id, case_id, event_id, force)
  local own_state = redis.call('HGET', KEY.job(p, job_id), F.state)
  if own_state then return job_id, own_state end
  if force then return nil end
  local other = pair_holder(p, case_id, event_id)
  if not other then return nil end
  local state = is_live(p, other)
  if state then return other, state end
  return nil
end

-- Write a new job's record (state queued), claim its (case, event) pair and list it by case
-- and event. `j`: id, case_id, event_id, run_id, requested_by, reason, at (created time),
-- queue, queue_key, `source` (optional: who made the record, when not the producer) and
-- `no_pair` (optional: a rejected message, which never takes the pair).
-- `claim_if_free`: take the pair only if no job holds it (a record made late, by begin).
-- Empty fields are not written: every job pays for every field it has.
-- The shared indexes and the counters are `add_queued`'s, so a batch pays them once.
local function record_job(p, j, claim_if_free)
  local fields = {F.case_id, j.case_id, F.event_id, j.event_id, F.state, STATE.QUEUED,
    F.created_at, j.at, F.updated_at, j.at, F.queue, j.queue}
  if j.no_pair then
    fields[#fields + 1] = F.no_pair
    fields[#fields + 1] = 1
  end
  local optional = {{F.run_id, j.run_id}, {F.requested_by, j.requested_by},
    {F.reason, j.reason}, {F.source, j.source}}
  if j.queue_key ~= j.queue then optional[#optional + 1] = {F.queue_key, j.queue_key} end
  for _, pair in ipairs(optional) do
    if pair[2] and pair[2] ~= '' then
      fields[#fields + 1] = pair[1]
      fields[#fields + 1] = pair[2]
    end
  end
  redis.call('HSET', KEY.job(p, j.id), unpack(fields))
  if not j.no_pair then
    -- a rejected message is listed like any job, but it holds no pair
    claim_pair(p, j.id, j.case_id, j.event_id, claim_if_free)
  end
  lookup_add(p, j.case_id, j.event_id, j.id)
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
-- index of jobs; none for `settled`: `index_all` answers for it) and the state counters, of
-- the store and of the job's run.
local function move_state(p, job_id, run_id, from, to, created)
  redis.call('HSET', KEY.job(p, job_id), F.state, to)
  redis.call('ZREM', KEY.index_state(p, from), job_id)
  if to ~= STATE.SETTLED then
    redis.call('ZADD', KEY.index_state(p, to), created, job_id)
  end
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

-- The text of a number field as the JSON `json` spells it (Python's repr: exact), which
-- cjson would round to 14 digits.
local function json_number(json, name)
  return string.match(json, '"' .. name .. '":(%-?%d[%d%.eE+%-]*)')
end

-- An attempt's stored fields, from its JSON object (`Attempt.encode`, `encode_attempt`):
-- {suffix -> value}, '' being its ATTEMPT_CORE values as a JSON array without trailing
-- nulls, each other suffix (ATTEMPT_TEXT) one text it has. Each stays under Redis's 64-byte
-- listpack limit in the common case, so the record stays a listpack. `stored_attempt`
-- (cancelq/store/records.py) makes the same in Python.
local function stored_parts(json)
  local a = cjson.decode(json)
  local core, last = {}, 0
  for i, name in ipairs(ATTEMPT_CORE) do
    local value = a[name]
    if value == nil or value == cjson.null then
      core[i] = 'null'
    else
      if type(value) == 'string' then core[i] = json_string(value)
      else core[i] = json_number(json, name) or tostring(value) end
      last = i
    end
  end
  local parts = {[''] = '[' .. table.concat(core, ',', 1, last) .. ']'}
  for name, suffix in pairs(ATTEMPT_TEXT) do
    if type(a[name]) == 'string' then parts[suffix] = a[name] end
  end
  return parts
end

-- Append an attempt (its JSON) to a job's record, as entry n+1: fields `a<n>` and
-- `a<n><suffix>` (`stored_parts`).
local function add_attempt(p, job_id, json)
  local job = KEY.job(p, job_id)
  local field = F.attempt .. redis.call('HINCRBY', job, F.entries, 1)
  local fields = {}
  for suffix, value in pairs(stored_parts(json)) do
    fields[#fields + 1] = field .. suffix
    fields[#fields + 1] = value
  end
  redis.call('HSET', job, unpack(fields))
end

-- The job's last attempt or note is the one `json` encodes, field for field (the same note
-- is not written twice by a script run twice).
local function last_attempt_is(p, job_id, json)
  local job = KEY.job(p, job_id)
  local n = redis.call('HGET', job, F.entries)
  if not n then return false end
  local field = F.attempt .. n
  local parts = stored_parts(json)
  if redis.call('HGET', job, field) ~= parts[''] then return false end
  for _, suffix in pairs(ATTEMPT_TEXT) do
    if redis.call('HGET', job, field .. suffix) ~= (parts[suffix] or false) then
      return false
    end
  end
  return true
end

-- A job id whose record key holds something other than a job record (a hash): every call on
-- it would fail WRONGTYPE, so the sets that list jobs (leases, outcome indexes) drop it.
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

-- End a job's attempt lease: no owner, off the reaper's list.
local function clear_lease(p, job_id)
  redis.call('HDEL', KEY.job(p, job_id), F.lease_owner, F.lease_until, F.attempt_started_at)
  redis.call('ZREM', KEY.leases(p), job_id)
end

-- Settle or dead-letter a job now (its state index and counters move, its outcome is
-- indexed and counted), drop any retry still pending for it, and list it for the archive
-- (`archive_pending`, scored by when it ended: the archiver's list; without an archive,
-- `trim.lua` drops the entry with the job). Its outcome index entry is also retention's:
-- `trim.lua` deletes it `retention` seconds after `now`. Its `updated_at` goes: it is the
-- settled time now (`JobRecord.from_hash`).
local function close_job(p, job_id, run_id, from, to, outcome, now)
  local job = KEY.job(p, job_id)
  move_state(p, job_id, run_id, from, to, redis.call('HGET', job, F.created_at))
  redis.call('HSET', job, F.outcome, outcome, F.settled_at, now)
  redis.call('HDEL', job, F.updated_at, F.next_attempt_at)
  redis.call('ZADD', KEY.index_outcome(p, outcome), now, job_id)
  count(p, run_id, COUNTER.outcome(outcome), 1)
  redis.call('ZREM', KEY.delayed(p), job_id)
  redis.call('HDEL', KEY.delayed_messages(p), job_id)
  redis.call('ZADD', KEY.archive_pending(p), now, job_id)
end

-- A message that cannot run (it reuses another job's id, or breaks the contract) recorded
-- on a job of its own, settled `invalid_request` with `note` (an attempt JSON) saying why.
-- It never takes the (case, event) pair: it is not a request anyone waits on.
local function record_rejected(p, j, note)
  j.no_pair = true
  create_job(p, j, true)
  add_attempt(p, j.id, note)
  close_job(p, j.id, j.run_id, STATE.QUEUED, STATE.SETTLED, OUTCOME.INVALID_REQUEST, j.at)
end
