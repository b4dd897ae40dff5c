#!lua flags=no-writes
-- load_changed: reads a grid's meta and the cells changed after version
-- since, in one run, so that weights, coverage and the total belong
-- together even while tracks and rebases write. Read-only.
--
-- KEYS: 1 grid, 2 gpri, 3 gcov, 4 gver
-- ARGV: 1 since
-- Returns: {} without a grid, else {pb, ver, seedver, row, z, posb, wver}
--       followed by (cell, prior, coverage, version) per changed cell
--       (prior and coverage nil when absent, version a decimal string),
--       unless since is older than the last seed (then the meta alone:
--       the caller reads the whole grid).
local m = redis.call('HMGET', KEYS[1], 'pb', 'ver', 'seedver', 'row', 'z', 'posb', 'wver')
if not m[1] then return {} end
if tonumber(ARGV[1]) < tonumber(m[3] or '0') then return m end
local out = m
local z = redis.call('ZRANGEBYSCORE', KEYS[4], '(' .. ARGV[1], '+inf', 'WITHSCORES')
-- 1000 cells per HMGET.
for i = 1, #z, 2000 do
  local cells, vers = {}, {}
  for j = i, math.min(i + 1999, #z), 2 do
    cells[#cells + 1] = z[j]
    vers[#vers + 1] = z[j + 1]
  end
  local p = redis.call('HMGET', KEYS[2], unpack(cells))
  local c = redis.call('HMGET', KEYS[3], unpack(cells))
  for k = 1, #cells do
    out[#out + 1] = cells[k]
    out[#out + 1] = p[k]
    out[#out + 1] = c[k]
    out[#out + 1] = vers[k]
  end
end
return out
