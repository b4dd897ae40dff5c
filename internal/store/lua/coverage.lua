-- coverage: adds one searcher's batch of coverage to the search grid. The
-- caller read a snapshot (coverage version cver, write version wver, the
-- total z, the touched cells' weights and coverage) and computed in Go
-- (geo.UndetectedDelta) the cells' new cumulative coverage and the new
-- total z; the script stores them only if neither coverage nor weights
-- changed since (cver and wver as read), else it answers {'retry'} and the
-- caller reads again. So the total stays exact and consistent with the
-- cells in every run, and the detection model lives in Go only.
--
-- It also saves the searcher's tracker state (compare-and-set against the
-- state the batch was computed from), bumps the version of the grid and
-- of the grid cells touched, and decides whether the change is worth an
-- event: the probability of success (pos, computed by the caller with the
-- new z) moved by at least delta since the last event, at least everyMs
-- ago.
--
-- KEYS: 1 inc, 2 grid, 3 gcov, 4 gver, 5 gtrk
-- ARGV: 1 participant, 2 trackerBefore, 3 trackerAfter, 4 expectCver,
--       5 expectWver, 6 z, 7 pos, 8 delta, 9 everyMs, 10 nowMs, 11 n, then
--       n times (cell, coverage, inGrid 0 or 1)
-- Returns: {'nogrid'}, {'stale'} (tracker state moved), {'retry'}
--       (coverage or weights moved) or {'ok', ver, changed, due} (ver a
--       decimal string, changed the grid cells touched, due 0 or 1).
if redis.call('HGET', KEYS[1], 'state') ~= 'open' then return {'nogrid'} end
local m = redis.call('HMGET', KEYS[2], 'ver', 'evpos', 'evt', 'cver', 'wver')
if not m[1] then return {'nogrid'} end
if (redis.call('HGET', KEYS[5], ARGV[1]) or '') ~= ARGV[2] then return {'stale'} end
if tonumber(m[4] or '0') ~= tonumber(ARGV[4]) or tonumber(m[5] or '0') ~= tonumber(ARGV[5]) then return {'retry'} end
local n = tonumber(ARGV[11])
local h, changed = {}, {}
for i = 0, n - 1 do
  local c = ARGV[12 + 3 * i]
  h[#h + 1] = c
  h[#h + 1] = ARGV[13 + 3 * i]
  if ARGV[14 + 3 * i] == '1' then changed[#changed + 1] = c end
  if #h >= 2000 then
    redis.call('HSET', KEYS[3], unpack(h))
    h = {}
  end
end
if #h > 0 then redis.call('HSET', KEYS[3], unpack(h)) end
if n > 0 then redis.call('HINCRBY', KEYS[2], 'cver', 1) end
redis.call('HSET', KEYS[5], ARGV[1], ARGV[3])
local ver = tonumber(m[1])
local due = 0
if #changed > 0 then
  ver = redis.call('HINCRBY', KEYS[2], 'ver', 1)
  local zv = {}
  for _, c in ipairs(changed) do
    zv[#zv + 1] = ver
    zv[#zv + 1] = c
    if #zv >= 2000 then
      redis.call('ZADD', KEYS[4], unpack(zv))
      zv = {}
    end
  end
  if #zv > 0 then redis.call('ZADD', KEYS[4], unpack(zv)) end
  redis.call('HSET', KEYS[2], 'z', ARGV[6], 'covt', ARGV[10])
  local now = tonumber(ARGV[10])
  if math.abs(tonumber(ARGV[7]) - tonumber(m[2] or '0')) >= tonumber(ARGV[8]) and now - tonumber(m[3] or '0') >= tonumber(ARGV[9]) then
    redis.call('HSET', KEYS[2], 'evpos', ARGV[7], 'evt', ARGV[10])
    due = 1
  end
end
return {'ok', tostring(ver), #changed, due}
