-- coverage_total: the second step of adding a batch of coverage (the first
-- is lua/coverage.lua). It adds dz, the change of the total weight z that
-- the caller computed in Go (geo.UndetectedDelta) from the cells' prior
-- weights and coverage before and after that coverage.lua answered, to the
-- stored total, and decides whether the change is worth an event.
--
-- dz is added only if z was not recomputed since the first step: zver,
-- counted by put_grid.lua each time a seed or rebase writes z, is still
-- expectZver (as coverage.lua answered). If it moved, the write computed z
-- from coverage that already holds this batch's increments (put_grid.lua
-- stores a z computed from a coverage snapshot only if cver did not move
-- since the snapshot, and coverage.lua counted cver; a seed with reset or
-- a clear dropped the coverage and counts none), so dz is already in z
-- or void and is dropped: never counted twice, never lost. Settings
-- updates (update_grid_summary.lua) count wver but leave z and zver alone,
-- so they do not void dz. The adds of racing batches commute, so z ends
-- as the sum over the cells whatever order the second steps run in.
--
-- The event throttle: the probability of success 1 - (1 - posb) * z with
-- the new z (no detection model: as flush_grid_event.lua) moved by at
-- least delta since the last event, at least everyMs after it; the event
-- is claimed (evpos, evt) if so.
--
-- Whatever the outcome, when member is given it then ends the queue entry
-- of the search work the batch did, as lua/coverage.lua would have (only
-- if its generation is still gen; else its time moves to nowMs): so the
-- total has followed the cells by the time no work is pending.
--
-- KEYS: 1 inc, 2 grid, 3 work, 4 workt
-- ARGV: 1 expectZver, 2 dz, 3 delta, 4 everyMs, 5 nowMs, 6 member ('' to
--       leave the queue alone), 7 gen
-- Returns: {'nogrid', done}, {'moved', z, posb, row, done} (z recomputed
--       since: dz dropped, no event) or {'ok', z, posb, row, due, done} (the
--       stored values after the add, due 0 or 1); done 1 if the queue entry
--       ended.
local function finish(reply)
  local done = 0
  if ARGV[6] ~= '' then
    if redis.call('HGET', KEYS[3], ARGV[6]) == ARGV[7] then
      redis.call('HDEL', KEYS[3], ARGV[6])
      redis.call('ZREM', KEYS[4], ARGV[6])
      done = 1
    else
      redis.call('ZADD', KEYS[4], 'XX', ARGV[5], ARGV[6])
    end
  end
  reply[#reply + 1] = done
  return reply
end
local m = redis.call('HMGET', KEYS[2], 'ver', 'zver', 'posb', 'row', 'evpos', 'evt', 'z')
if not m[1] then return finish({'nogrid'}) end
if tonumber(m[2] or '0') ~= tonumber(ARGV[1]) then return finish({'moved', m[7] or '0', m[3] or '0', m[4] or '0'}) end
local z = redis.call('HINCRBYFLOAT', KEYS[2], 'z', ARGV[2])
local due = 0
if redis.call('HGET', KEYS[1], 'state') == 'open' then
  local pos = 1 - (1 - tonumber(m[3] or '0')) * tonumber(z)
  local now = tonumber(ARGV[5])
  if math.abs(pos - tonumber(m[5] or '0')) >= tonumber(ARGV[3]) and now - tonumber(m[6] or '0') >= tonumber(ARGV[4]) then
    redis.call('HSET', KEYS[2], 'evpos', string.format('%.17g', pos), 'evt', ARGV[5])
    due = 1
  end
end
return finish({'ok', z, m[3] or '0', m[4] or '0', due})
