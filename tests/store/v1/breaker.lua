-- schema v1 (commit 24369ce): this script's own text; library.lua goes in front
-- The circuit breaker on Care360 calls, shared by every worker (`cancelq.pipeline.breaker`).
-- The hash KEY.breaker holds `state` (BREAKER), `opened_at`, `failures` (consecutive
-- transient failures) and `window_start` (when that streak began); KEY.breaker_probe is the
-- lock that lets one worker at a time probe while it is not closed, and times the probes.
-- ops:
--   check    before a call: CLOSED -> go; otherwise the worker that takes the probe lock
--            probes (state HALF_OPEN), the others wait for the lock's time left
--   failure  a transient failure (connect error, timeout, 5xx): the streak grows (a new one
--            starts when the window since its first failure has passed); at `threshold` it
--            opens; a failed probe opens it again for another probe interval
--   success  any final answer: closes it, ends the streak
-- ARGV: prefix, op, threshold, window_seconds, probe_seconds, probe_lock_seconds,
--       owed ('1' with `failure`: a success this worker has not reported yet came first;
--       it is applied before the failure is counted, so the two stay in order)
-- Returns {state, go ('go' | 'probe' | 'wait'), seconds to wait, changed (0|1),
--          failures (the streak so far)}
local p, op, threshold = ARGV[1], ARGV[2], tonumber(ARGV[3])
local window, probe, lock_for = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local owed = ARGV[7] == '1'
local key, lock = KEY.breaker(p), KEY.breaker_probe(p)
local now = redis_now()
local state, streak = unpack(redis.call('HMGET', key, 'state', 'failures'))
state = state or BREAKER.CLOSED
streak = tonumber(streak or '0')

local function open_now()
  redis.call('HSET', key, 'state', BREAKER.OPEN, 'opened_at', string.format('%.6f', now),
    'failures', 0, 'window_start', '')
  redis.call('SET', lock, 'wait', 'PX', math.max(1, math.floor(probe * 1000)))
  return {BREAKER.OPEN, 'wait', tostring(probe), 1, 0}
end

-- Any final answer: closes the breaker if it is not closed, and ends the streak.
local function success()
  if state ~= BREAKER.CLOSED then
    redis.call('HSET', key, 'state', BREAKER.CLOSED, 'failures', 0, 'window_start', '',
      'closed_at', string.format('%.6f', now))
    redis.call('DEL', lock)
    state, streak = BREAKER.CLOSED, 0
    return {BREAKER.CLOSED, 'go', '0', 1, 0}
  end
  if streak > 0 then
    redis.call('HSET', key, 'failures', 0, 'window_start', '')
    streak = 0
  end
  return {state, 'go', '0', 0, 0}
end

if op == 'check' then
  if state == BREAKER.CLOSED then return {state, 'go', '0', 0, streak} end
  if redis.call('SET', lock, 'probe', 'NX', 'PX', math.max(1, math.floor(lock_for * 1000))) then
    redis.call('HSET', key, 'state', BREAKER.HALF_OPEN)
    return {BREAKER.HALF_OPEN, 'probe', '0', state == BREAKER.OPEN and 1 or 0, 0}
  end
  local left = math.max(0, redis.call('PTTL', lock)) / 1000
  return {state, 'wait', tostring(left), 0, 0}
elseif op == 'failure' then
  local closed = 0
  if owed then closed = success()[4] end
  if state == BREAKER.HALF_OPEN then return open_now() end
  if state == BREAKER.OPEN then return {state, 'wait', '0', 0, 0} end
  local started = tonumber(redis.call('HGET', key, 'window_start') or '')
  local failures = streak
  if not started or now - started > window then
    failures, started = 0, now
  end
  failures = failures + 1
  if failures >= threshold then return open_now() end
  redis.call('HSET', key, 'state', state, 'failures', failures,
    'window_start', string.format('%.6f', started))
  return {state, 'go', '0', closed, failures}
end
return success()
