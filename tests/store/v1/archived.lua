-- schema v1 (commit 24369ce): this script's own text; library.lua goes in front
-- Take jobs off `archive_pending` once the archive has committed them, but only the entry
-- that was read: a job settled again since (a replayed dead job that ended once more) has a
-- new score, stays listed, and is archived again with its new attempts.
-- ARGV: prefix, then job_id, score (as read from the set), job_id, score, ...
-- Returns how many entries were removed.
local p = ARGV[1]
local key = KEY.archive_pending(p)
local removed = 0
for i = 2, #ARGV, 2 do
  local id, score = ARGV[i], ARGV[i + 1]
  local now_score = redis.call('ZSCORE', key, id)
  if now_score and tonumber(now_score) == tonumber(score) then
    removed = removed + redis.call('ZREM', key, id)
  end
end
return removed
