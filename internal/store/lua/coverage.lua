-- coverage: adds one searcher's batch of coverage to the search grid, the
-- first of two steps (the second is lua/coverage_total.lua). Each cell's
-- cumulative coverage grows by HINCRBYFLOAT, so batches that race on the
-- same cells all land, in whatever order Redis runs them: nothing is
-- checked against a snapshot and nothing is retried.
--
-- The script holds no detection model: it answers, per cell asked, the
-- cell's prior weight ('' if the cell is not in the grid) and its coverage
-- before and after the increment, read in the same atomic run, and the
-- caller computes in Go the change of the total, dz = sum of
-- geo.UndetectedDelta(prior, before, after), then adds it to the stored
-- total z with coverage_total.lua if no seed or rebase recomputed z in
-- between (zver, the count of the writes of z by put_grid.lua, as
-- answered here). Because each (before, after) pair is read atomically
-- with its increment, the pairs of the batches that touched a cell chain
-- up (one's after is the next one's before), so the sum of their deltas
-- is exactly the change of that cell's undetected weight, whatever order
-- the deltas are added to z in.
--
-- It also saves the searcher's tracker state (compare-and-set against the
-- state the batch was computed from: per participant, so not contended),
-- counts the change of gcov (cver, which a seed or rebase that computed z
-- from a coverage snapshot checks, see put_grid.lua), bumps the version of
-- the grid and of the grid cells touched and notes the time of the last
-- coverage (covt, for the trailing event). With the tracker state it moves
-- the searcher's coverage checkpoint (gthr: the fix time through which
-- its track is credited) and, when member is given, ends the queue entry
-- of the search work this batch did (as lua/work_done.lua: only if its
-- generation is still gen), in the same atomic run: coverage is credited
-- once, and the queue never forgets fixes not credited. When the batch
-- changed cells of the grid, lua/coverage_total.lua ends the entry
-- instead, once it has added the change of the total (done is then 0
-- here).
--
-- KEYS: 1 inc, 2 grid, 3 gpri, 4 gcov, 5 gver, 6 gtrk, 7 gthr, 8 work,
--       9 workt
-- ARGV: 1 participant, 2 trackerBefore, 3 trackerAfter, 4 nowMs, 5 n,
--       then n times (cell, coverage to add: a finite number >= 0), then
--       6 + 2n through (the new checkpoint, ms), 7 + 2n member ('' to
--       leave the queue alone), 8 + 2n gen
-- Returns: {'nogrid'}, {'stale'} (tracker state moved; nothing written) or
--       {'ok', ver, changed, zver, z, posb, row, done} followed by n times
--       (prior or '', coverage before, coverage after) in the order asked
--       (ver and zver decimal strings, changed the grid cells touched,
--       z, posb and row as stored, done 1 if the queue entry ended, before
--       '0' for a cell never covered).
if redis.call('HGET', KEYS[1], 'state') ~= 'open' then return {'nogrid'} end
local m = redis.call('HMGET', KEYS[2], 'ver', 'zver', 'z', 'posb', 'row')
if not m[1] then return {'nogrid'} end
if (redis.call('HGET', KEYS[6], ARGV[1]) or '') ~= ARGV[2] then return {'stale'} end
local n = tonumber(ARGV[5])
local cells = {}
for i = 1, n do cells[i] = ARGV[4 + 2 * i] end
-- Weights and coverage before, 1000 cells per HMGET.
local pri, cov = {}, {}
for i = 1, n, 1000 do
  local part = {unpack(cells, i, math.min(i + 999, n))}
  local p = redis.call('HMGET', KEYS[3], unpack(part))
  local c = redis.call('HMGET', KEYS[4], unpack(part))
  for k = 1, #part do
    pri[i + k - 1] = p[k]
    cov[i + k - 1] = c[k]
  end
end
local out = {}
local changed = {}
for i = 1, n do
  local after = redis.call('HINCRBYFLOAT', KEYS[4], cells[i], ARGV[5 + 2 * i])
  out[#out + 1] = pri[i] or ''
  out[#out + 1] = cov[i] or '0'
  out[#out + 1] = after
  if pri[i] then changed[#changed + 1] = cells[i] end
end
if n > 0 then redis.call('HINCRBY', KEYS[2], 'cver', 1) end
redis.call('HSET', KEYS[6], ARGV[1], ARGV[3])
local thr = tonumber(redis.call('HGET', KEYS[7], ARGV[1]) or '0')
if tonumber(ARGV[6 + 2 * n]) > thr then redis.call('HSET', KEYS[7], ARGV[1], ARGV[6 + 2 * n]) end
local done = 0
local member = ARGV[7 + 2 * n]
-- With cells of the grid changed, the caller runs lua/coverage_total.lua
-- next, which ends the queue entry after the total follows the cells: a
-- reader that sees no search work pending sees the total of all of it.
if member ~= '' and #changed == 0 then
  if redis.call('HGET', KEYS[8], member) == ARGV[8 + 2 * n] then
    redis.call('HDEL', KEYS[8], member)
    redis.call('ZREM', KEYS[9], member)
    done = 1
  else
    redis.call('ZADD', KEYS[9], 'XX', ARGV[4], member)
  end
end
local ver = tonumber(m[1])
if #changed > 0 then
  ver = redis.call('HINCRBY', KEYS[2], 'ver', 1)
  local zv = {}
  for _, c in ipairs(changed) do
    zv[#zv + 1] = ver
    zv[#zv + 1] = c
    if #zv >= 2000 then
      redis.call('ZADD', KEYS[5], unpack(zv))
      zv = {}
    end
  end
  if #zv > 0 then redis.call('ZADD', KEYS[5], unpack(zv)) end
  redis.call('HSET', KEYS[2], 'covt', ARGV[4])
end
local head = {'ok', tostring(ver), #changed, m[2] or '0', m[3] or '0', m[4] or '0', m[5] or '0', done}
for _, v in ipairs(out) do head[#head + 1] = v end
return head
