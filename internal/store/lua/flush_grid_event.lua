-- flush_grid_event: decides whether coverage that moved the probability of
-- success since the last grid event (by at least minDelta) is due for a
-- trailing event: tracks paused for everyMs and everyMs passed since the
-- last event. It claims the event (evpos, evt) if so. The probability of
-- success is 1 - (1 - posb) * z from the stored total z (no detection
-- model here: z is computed in Go, see put_grid.lua and coverage.lua).
--
-- KEYS: 1 inc, 2 grid
-- ARGV: 1 minDelta, 2 everyMs, 3 nowMs
-- Returns: {'nogrid'}, {'quiet'} (nothing to announce), {'wait', ms} or
--       {'due', pb, ver, seedver, row, z, posb, wver}.
if redis.call('HGET', KEYS[1], 'state') ~= 'open' then return {'nogrid'} end
local m = redis.call('HMGET', KEYS[2], 'pb', 'ver', 'seedver', 'row', 'z', 'posb', 'wver', 'evpos', 'evt', 'covt')
if not m[1] then return {'nogrid'} end
local pos = 1 - (1 - tonumber(m[6])) * tonumber(m[5])
if math.abs(pos - tonumber(m[8] or '0')) < tonumber(ARGV[1]) then return {'quiet'} end
local last = math.max(tonumber(m[9] or '0'), tonumber(m[10] or '0'))
local wait = last + tonumber(ARGV[2]) - tonumber(ARGV[3])
if wait > 0 then return {'wait', wait} end
redis.call('HSET', KEYS[2], 'evpos', string.format('%.17g', pos), 'evt', ARGV[3])
return {'due', m[1], m[2], m[3], m[4], m[5], m[6], m[7]}
