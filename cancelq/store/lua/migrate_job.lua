-- `cancelq migrate`: one job's v1 keys rewritten as v2, atomically (cancelq.store.upgrade).
-- Python read the v1 record and its attempts list and made the v2 fields (`fields`); this
-- writes them only if the v1 record is still what was read (`seen`: its state, updated_at
-- and attempts count), so nothing written meanwhile is lost; a job already in v2 (no
-- `job_id` field) or gone is left alone, so the migration resumes and may run twice.
-- Then the v1 keys that named the job go: its attempts list, its pair key (the record has
-- no `no_pair` flag when it held the pair, one otherwise), its case and event index entries
-- (now in `lookup`), and its entries in `expiry` and the settled state index. A TTL on the record (an older release's
-- retention) is kept.
-- ARGV: prefix, job_id, seen ("state|updated_at|attempts"), then field, value, ...
-- Returns 1 migrated, 0 nothing to do, -1 changed since read (read it again).
local p, job_id, seen = ARGV[1], ARGV[2], ARGV[3]
local job = KEY.job(p, job_id)
local v1_id, state, updated, case_id, event_id = unpack(redis.call('HMGET', job, 'job_id',
  'state', 'updated_at', 'case_id', 'event_id'))
if not v1_id then return 0 end
local attempts = KEY_V1.attempts(p, job_id)
if (state or '') .. '|' .. (updated or '') .. '|' .. redis.call('LLEN', attempts) ~= seen then
  return -1
end
case_id, event_id = case_id or '', event_id or ''
local ttl = redis.call('PTTL', job)
redis.call('DEL', job, attempts)
redis.call('HSET', job, unpack(ARGV, 4))
if ttl > 0 then redis.call('PEXPIRE', job, ttl) end
local pair = KEY_V1.pair(p, case_id, event_id)
if redis.call('GET', pair) == job_id then
  redis.call('DEL', pair)
else
  redis.call('HSET', job, F.no_pair, 1)
end
lookup_add(p, case_id, event_id, job_id)
for _, index in ipairs({KEY_V1.index_case(p, case_id), KEY_V1.index_event(p, event_id)}) do
  redis.call('ZREM', index, job_id)
  if redis.call('ZCARD', index) == 0 then redis.call('DEL', index) end
end
redis.call('ZREM', KEY_V1.expiry(p), job_id)
redis.call('ZREM', KEY.index_state(p, STATE.SETTLED), job_id)
return 1
