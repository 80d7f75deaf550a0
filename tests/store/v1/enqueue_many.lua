-- schema v1 (commit 24369ce): this script's own text; library.lua goes in front
-- Bulk intake: enqueue.lua's records for a whole chunk of rows in one call, same keys, same
-- rules, but the accepted rows' messages are batches: one message per `batch_size` jobs
-- (`cancelq.store.messages.build_batch_message`), because Celery's cost per message is what
-- a bulk run spent most on. Each row is recorded and goes into a batch, or, when its
-- (case, event) pair already has a live job (from the store, or from an earlier row of
-- this same chunk or file), nothing is written, it is in no message, and that job is
-- returned. Never forces. Only this script knows which rows are duplicates, so it makes
-- the messages: jobs and their messages are written together or not at all.
-- ARGV: prefix, run_id, requested_by, now, queue_name, queue_key, batch_size,
--       P then the P parts of the message template (`BatchTemplate.parts`: literal, slot
--       name, literal, ..., literal; slots J jobs, I task id, N count, T delivery tag),
--       B then B pairs (task id, delivery tag), one per batch this chunk may need,
--       then one argument per row: "job_id\ncase_id\nevent_id\nreason\njob" where job is
--       the row's `jobs` entry already escaped for the message text (one argument, not
--       five, because packing arguments is what the producer spends most on; no field holds
--       a newline: ids are UUIDs, the reason is validated single-line, job is escaped JSON)
-- The template is filled by concatenation, never gsub: a reason may hold '%'.
-- Returns the duplicates only, as a flat array of triples {row (1-based), job_id, state}:
-- every other row was created, with its own job id, state 'queued'.
local p, run_id, requested_by, now = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local queue_name, queue_key, batch_size = ARGV[5], ARGV[6], tonumber(ARGV[7])
local n_parts = tonumber(ARGV[8])
local IDS = 9 + n_parts
local n_ids = tonumber(ARGV[IDS])
local FIRST = IDS + 1 + 2 * n_ids
local base_us = math.floor(now * 1000000 + 0.5)
local find, sub = string.find, string.sub
if batch_size < 1 or n_ids * batch_size < #ARGV - FIRST + 1 then
  -- refused before anything is written (a script's writes are not rolled back)
  return redis.error_reply('enqueue_many: fewer batch ids than the rows may need')
end

local out = {}
local scored = {}   -- created_at, job_id of the rows created, for the shared indexes
local jobs = {}     -- their `jobs` entries, in file order

for i = 0, #ARGV - FIRST do
  local row = ARGV[FIRST + i]
  local a = find(row, '\n', 1, true)
  local b = find(row, '\n', a + 1, true)
  local c = find(row, '\n', b + 1, true)
  local d = find(row, '\n', c + 1, true)
  local job_id, case_id, event_id = sub(row, 1, a - 1), sub(row, a + 1, b - 1), sub(row, b + 1, c - 1)
  local reason = sub(row, c + 1, d - 1)
  local found, found_state = existing_job(p, job_id, case_id, event_id, false)
  if found then
    out[#out + 1] = i + 1
    out[#out + 1] = found
    out[#out + 1] = found_state
  else
    -- file order is kept in the indexes: a microsecond apart, row by row (counted in whole
    -- microseconds: now + i * 0.000001 in floating point can round two rows to one score)
    local us = base_us + i
    local at = string.format('%d.%06d', math.floor(us / 1000000), us % 1000000)
    record_job(p, {id = job_id, case_id = case_id, event_id = event_id, run_id = run_id,
      requested_by = requested_by, reason = reason, at = at, queue = queue_name,
      queue_key = queue_key}, false)
    scored[#scored + 1] = at
    scored[#scored + 1] = job_id
    jobs[#jobs + 1] = sub(row, d + 1)
  end
end

-- One message per batch_size accepted jobs, in file order (LPUSH: the first batch is
-- pushed first, so a worker takes it first).
local function batch_message(first, last, number)
  local values = {J = table.concat(jobs, ',', first, last), N = tostring(last - first + 1),
    I = ARGV[IDS + 2 * number - 1], T = ARGV[IDS + 2 * number]}
  local text = {}
  for k = 1, n_parts do
    local part = ARGV[8 + k]
    if k % 2 == 1 then text[k] = part else text[k] = values[part] end
  end
  return table.concat(text)
end

if #scored > 0 then
  add_queued(p, run_id, scored)
  local messages = {}
  for first = 1, #jobs, batch_size do
    local number = #messages + 1
    messages[number] = batch_message(first, math.min(first + batch_size - 1, #jobs), number)
  end
  for i = 1, #messages, VARIADIC_STEP do
    redis.call('LPUSH', queue_key,
      unpack(messages, i, math.min(i + VARIADIC_STEP - 1, #messages)))
  end
end
return out
