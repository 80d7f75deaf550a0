-- schema v1 (commit 24369ce): this script's own text; library.lua goes in front
-- Book the next turn of a deferred bulk job under the rate limit: turns are `interval`
-- seconds apart on one timeline shared by every worker, so jobs that could not get a slot
-- come back spread out at the rate bulk may use, instead of all at once (and all deferred
-- again). A scheduling hint only: the limit itself is enforced by the limiter.
-- ARGV: key, interval_seconds, earliest_delay_seconds. Redis's clock (TIME), shared by hosts.
-- Returns the delay in seconds, as a string.
local key, interval, earliest = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local booked = tonumber(redis.call('GET', key) or '0')
local turn = math.max(booked, now + earliest)
local after = turn + interval
redis.call('SET', key, string.format('%.6f', after), 'EX', math.ceil(after - now) + 60)
return string.format('%.6f', turn - now)
