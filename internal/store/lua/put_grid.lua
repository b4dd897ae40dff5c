-- put_grid: swaps a seeded or rebased search grid in, with the event that
-- announces it (see GridWrite in grid.go). The caller staged the written
-- cells beforehand, in chunks, in two keys of the incident's slot that
-- expire by themselves (a crash leaves no garbage): stage (cell -> weight)
-- and stagev (cell -> 1). The write happens if no other seed or rebase
-- happened since the snapshot (else SAR_CONFLICT) and the version is still
-- the one the event was numbered after (else {'moved', ver}: renumber and
-- resend). A seed drops the old cells (and, with reset, the coverage and
-- tracker states) and renames stage into gpri; a rebase merges stage into
-- gpri; every written cell gets the new version (a ZUNIONSTORE weighting
-- stagev by it).
--
-- The total z = row + sum of the written cells' weight * e^(-coverage) is
-- computed by the caller in Go (geo.Undetected), from the coverage read at
-- coverage version cver: the script stores it only if gcov has not changed
-- since (cver, counted by coverage.lua), else it answers {'coverage'} and
-- the caller reads the coverage again. With reset or clear the written
-- cells end with no coverage whatever was added meanwhile, so the caller
-- sends expectCver '' (no check) and z = row + sum of weights. Either way
-- the z stored is the total of the grid's cells as this run leaves them
-- (a seed writes the whole grid, a rebase every cell of it): every
-- coverage increment made before this run is in it (or was dropped with
-- the coverage), none made after.
--
-- Each write of z counts zver. A batch of coverage adds to the cells
-- (coverage.lua) and then, in a second run, its change of z
-- (coverage_total.lua) only if zver has not moved between the two: a
-- batch whose cells were incremented before this run is already in the z
-- written here (or was reset away), so its change must not be added again;
-- one incremented after this run sees the new zver and adds its change.
--
-- KEYS: 1 inc, 2 grid, 3 gpri, 4 gcov, 5 gver, 6 gtrk, 7 outbox,
--       8 stage, 9 stagev
-- ARGV: 1 expectWver, 2 expectVer, 3 expectCver ('' = no check), 4 flags
--       ("s": seed, "r": reset, "c": clear the written cells' coverage),
--       5 n (cells staged), 6 summaryPb, 7 row, 8 posb, 9 z, 10 evpos
--       (the probability of success with z), 11 eventId, 12 eventPb
-- Returns: {'ok', ver}, {'moved', ver} or {'coverage'} (ver a decimal
--       string).
-- Errors: SAR_NOTFOUND, SAR_CLOSED, SAR_CONFLICT, SAR_STAGE_LOST (the
--       staged cells expired or are incomplete).
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return redis.error_reply('SAR_NOTFOUND no such incident') end
if state ~= 'open' then return redis.error_reply('SAR_CLOSED incident is closed') end
local meta = redis.call('HMGET', KEYS[2], 'wver', 'ver', 'cver')
if tonumber(meta[1] or '0') ~= tonumber(ARGV[1]) then
  return redis.error_reply('SAR_CONFLICT grid was seeded or rebased since the snapshot')
end
local ver = tonumber(meta[2] or '0')
if ver ~= tonumber(ARGV[2]) then return {'moved', tostring(ver)} end
if ARGV[3] ~= '' and tonumber(meta[3] or '0') ~= tonumber(ARGV[3]) then return {'coverage'} end
local n = tonumber(ARGV[5])
if redis.call('HLEN', KEYS[8]) ~= n or redis.call('ZCARD', KEYS[9]) ~= n then
  return redis.error_reply('SAR_STAGE_LOST staged cells expired or incomplete')
end
local nv = ver + 1
local seed = string.find(ARGV[4], 's', 1, true)
local reset = seed and string.find(ARGV[4], 'r', 1, true)
local clear = string.find(ARGV[4], 'c', 1, true)
if seed then
  redis.call('UNLINK', KEYS[3], KEYS[5])
  if reset then redis.call('UNLINK', KEYS[4], KEYS[6]) end
  redis.call('HSET', KEYS[2], 'seedver', nv)
end
if n > 0 then
  if clear then
    local cells = redis.call('HKEYS', KEYS[8])
    for i = 1, #cells, 1000 do redis.call('HDEL', KEYS[4], unpack(cells, i, math.min(i + 999, #cells))) end
  end
  if seed then
    -- RENAME carries the staging key's expiry over: drop it.
    redis.call('RENAME', KEYS[8], KEYS[3])
    redis.call('PERSIST', KEYS[3])
  else
    local kv = redis.call('HGETALL', KEYS[8])
    for i = 1, #kv, 2000 do redis.call('HSET', KEYS[3], unpack(kv, i, math.min(i + 1999, #kv))) end
    redis.call('UNLINK', KEYS[8])
  end
  -- Every version is below nv: MAX gives the written cells nv and keeps
  -- the others' versions.
  redis.call('ZUNIONSTORE', KEYS[5], 2, KEYS[5], KEYS[9], 'WEIGHTS', 1, nv, 'AGGREGATE', 'MAX')
  redis.call('UNLINK', KEYS[9])
end
if reset or (clear and n > 0) then redis.call('HINCRBY', KEYS[2], 'cver', 1) end
redis.call('HSET', KEYS[2], 'pb', ARGV[6], 'ver', nv, 'wver', tonumber(ARGV[1]) + 1, 'row', ARGV[7],
  'z', ARGV[9], 'posb', ARGV[8], 'evpos', ARGV[10])
redis.call('HINCRBY', KEYS[2], 'zver', 1)
redis.call('HSET', KEYS[7], ARGV[11], ARGV[12])
return {'ok', tostring(nv)}
