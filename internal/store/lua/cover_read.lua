#!lua flags=no-writes
-- cover_read: reads, in one atomic run, what crediting a rescuer's queued
-- fixes to the search grid needs (see searchwork.go): the queue entry's
-- generation and time, the grid's meta, the searcher's tracker state,
-- searcher type and coverage checkpoint, and the fixes of its track after
-- that checkpoint, oldest first. The acknowledged fixes are the record:
-- whichever process runs the work, and however many batches it covers at
-- once, it reads them here.
--
-- KEYS: 1 inc, 2 grid, 3 gtrk, 4 stype, 5 gthr, 6 work, 7 workt, 8 trk
-- ARGV: 1 participant, 2 member ("r:<participant>"), 3 limit (fixes)
-- Returns: {'none'} (nothing queued), {'nogrid', gen} (closed, or no
--       search plan: the work is void) or {'ok', gen, sinceMs, tracker,
--       type, through} followed by the grid's meta (HMGET grid pb ver
--       seedver row z posb wver, as store.gridMeta reads it) and then, per
--       fix, (LocationFix pb, fix time ms) for at most limit fixes
--       (tracker and type '' when unset, through '0' when unset).
local gen = redis.call('HGET', KEYS[6], ARGV[2])
if not gen then return {'none'} end
if redis.call('HGET', KEYS[1], 'state') ~= 'open' then return {'nogrid', gen} end
local meta = redis.call('HMGET', KEYS[2], 'pb', 'ver', 'seedver', 'row', 'z', 'posb', 'wver')
if not meta[1] then return {'nogrid', gen} end
local since = redis.call('ZSCORE', KEYS[7], ARGV[2]) or '0'
local through = redis.call('HGET', KEYS[5], ARGV[1]) or '0'
local out = {'ok', gen, since, redis.call('HGET', KEYS[3], ARGV[1]) or '', redis.call('HGET', KEYS[4], ARGV[1]) or '', through}
for i = 1, 7 do out[#out + 1] = meta[i] end
local fixes = redis.call('ZRANGEBYSCORE', KEYS[8], '(' .. through, '+inf', 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[3]))
for _, v in ipairs(fixes) do out[#out + 1] = v end
return out
