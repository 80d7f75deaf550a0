-- Bulk intake: enqueue.lua for a whole chunk of rows in one call, same keys, same rules.
-- Each row is recorded and its message pushed, or, when its (case, event) pair already has
-- a live job (from the store, or from an earlier row of this same chunk or file), nothing is
-- written and that job is returned. Never forces. One call instead of one per row is what
-- takes intake past 10,000 rows/s (docs/bulk.md): the per-call overhead, the per-row
-- counters and the list/index writes are paid once per chunk.
-- ARGV: prefix, run_id, requested_by, now, queue_name, queue_key, then one argument per row:
--       "job_id\ncase_id\nevent_id\nreason\npayload" (one argument, not five, because
--       packing arguments is what the producer spends most on; no field holds a newline:
--       ids are UUIDs, the reason is validated single-line, the payload is JSON)
-- Returns the duplicates only, as a flat array of triples {row (1-based), job_id, state}:
-- every other row was created, with its own job id, state 'queued'.
local p, run_id, requested_by, now = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local queue_name, queue_key = ARGV[5], ARGV[6]
local FIRST = 7
local base_us = math.floor(now * 1000000 + 0.5)
local find, sub = string.find, string.sub

local out = {}
local scored = {}   -- created_at, job_id of the rows created, for the shared indexes
local payloads = {}

for i = 0, #ARGV - FIRST do
  local row = ARGV[FIRST + i]
  local a = find(row, '\n', 1, true)
  local b = find(row, '\n', a + 1, true)
  local c = find(row, '\n', b + 1, true)
  local d = find(row, '\n', c + 1, true)
  local job_id, case_id, event_id = sub(row, 1, a - 1), sub(row, a + 1, b - 1), sub(row, b + 1, c - 1)
  local reason, payload = sub(row, c + 1, d - 1), sub(row, d + 1)
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
    payloads[#payloads + 1] = payload
  end
end

if #scored > 0 then
  add_queued(p, run_id, scored)
  for i = 1, #payloads, VARIADIC_STEP do
    redis.call('LPUSH', queue_key,
      unpack(payloads, i, math.min(i + VARIADIC_STEP - 1, #payloads)))
  end
end
return out
