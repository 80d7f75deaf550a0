-- Shared by the scripts that create jobs (prepended when a script is loaded).

-- The pair's job blocks a new one: waiting, working, dead (replay it instead), or done.
local function is_live(p, id)
  local state, outcome = unpack(redis.call('HMGET', p .. ':job:' .. id, 'state', 'outcome'))
  if not state then return nil end
  if state == 'queued' or state == 'running' or state == 'retrying' or state == 'dead' then
    return state
  end
  if state == 'settled' and (outcome == 'cancelled' or outcome == 'already_cancelled') then
    return state
  end
  return nil
end
