-- ingest: stores one batch of one device atomically. It checks that the
-- incident is open and the device joined as the participant; moves the
-- device's acked-through sequence up to skippedThrough (sequences the
-- device gave up on); then walks the batch in sequence order: a sequence
-- at or below acked-through is a duplicate (exactly once under retries),
-- the next one is processed — stored, or only consumed when the fix was
-- refused for good (empty pb) — and raises acked-through, and the first
-- gap stops the walk (the device resends from acked-through + 1). Stored
-- fixes go to the track (trimmed back to trackMax when it grows 10 % past
-- it, so the trim is not paid on every batch) and to the cell visit
-- counts; the last known position moves only forward in fix time.
--
-- KEYS: 1 inc, 2 seq, 3 dev, 4 last, 5 trk (the participant's track),
--       6 cells, 7 cellt, 8 grid, 9 work, 10 workt, 11 gthr
-- ARGV: 1 device, 2 participant, 3 trackMax, 4 skippedThrough, 5 n, then
--       n times (seq, timeMs, cell, fixPb), 6 + 4n maxSkip, 7 + 4n mark,
--       8 + 4n nowMs.
-- mark asks for the search work the batch makes to be queued, in this
-- same atomic run, so that it survives this process (see searchwork.go in
-- internal/store): 'r' (a rescuer: coverage, when the incident has a
-- search plan and fixes were stored), 'c' (a caller: following its last
-- known position, when that moved) or '' (nothing). The queue is per
-- incident: work (hash) member "<mark>:<participant>" -> a generation,
-- unique in the incident (field '#' counts them), new with every batch,
-- and workt (zset) member -> the time of its
-- oldest unfinished batch or of the worker's last progress. A rescuer's
-- first queued batch also sets its coverage checkpoint (gthr, the fix time
-- through which its track was credited) to just before the batch's oldest
-- fix, so that fixes stored before the plan are not credited. The track's
-- trim keeps the fixes after the checkpoint while coverage is queued (up
-- to 4 x trackMax), so that the worker finds every fix it must credit.
-- Sequences are at most 2^53-1 (checked before the call), so Lua's double
-- numbers hold them exactly, and '%.0f' writes them back exactly.
-- skippedThrough may reach at most maxSkip past the stored acked-through.
-- Returns: {ackedBefore, ackedThrough, stored, lastChanged, lastValue,
--       hasGrid, queued}: the two sequences as decimal strings, stored a
--       count, lastChanged, hasGrid and queued 0 or 1 (hasGrid: the
--       incident has a search plan; queued: search work was queued),
--       lastValue the "<ms>|<LocationFix pb>" last position or "".
-- Errors: SAR_NOTFOUND, SAR_CLOSED, SAR_NOTJOINED, SAR_SKIP_TOO_FAR.
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return redis.error_reply('SAR_NOTFOUND no such incident') end
if state ~= 'open' then return redis.error_reply('SAR_CLOSED incident is closed') end
if redis.call('HGET', KEYS[3], ARGV[1]) ~= ARGV[2] then
  return redis.error_reply('SAR_NOTJOINED device has not joined as the participant')
end
local before = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
local n = tonumber(ARGV[5])
local skip = tonumber(ARGV[4])
if skip > before + tonumber(ARGV[6 + n * 4]) then
  return redis.error_reply('SAR_SKIP_TOO_FAR skipped_through is too far past acked_through')
end
local wm = math.max(before, skip)
local zadd, counts, cellt = {}, {}, {}
local bestT, best = -1, nil
local minT = nil
local stored = 0
for i = 0, n - 1 do
  local o = 6 + i * 4
  local seq = tonumber(ARGV[o])
  if seq > wm + 1 then break end
  if seq == wm + 1 then
    wm = seq
    local m = ARGV[o + 3]
    if m ~= '' then
      local t, c = tonumber(ARGV[o + 1]), ARGV[o + 2]
      zadd[#zadd + 1] = t
      zadd[#zadd + 1] = m
      counts[c] = (counts[c] or 0) + 1
      if not cellt[c] or t > cellt[c] then cellt[c] = t end
      if t > bestT then bestT, best = t, m end
      if not minT or t < minT then minT = t end
      stored = stored + 1
    end
  end
end
if wm > before then redis.call('HSET', KEYS[2], ARGV[1], string.format('%.0f', wm)) end
local last = redis.call('HGET', KEYS[4], ARGV[2])
local changed = 0
if best then
  local prevT = -1
  if last then prevT = tonumber(string.sub(last, 1, string.find(last, '|', 1, true) - 1)) end
  if bestT > prevT then
    last = string.format('%.0f', bestT) .. '|' .. best
    redis.call('HSET', KEYS[4], ARGV[2], last)
    changed = 1
  end
  redis.call('ZADD', KEYS[5], unpack(zadd))
  local keep = tonumber(ARGV[3])
  local size = redis.call('ZCARD', KEYS[5])
  if size > keep + math.floor(keep / 10) then
    -- Fixes not yet credited as coverage stay (the worker reads them from
    -- the track): with coverage queued or about to be, trim only at or
    -- below the checkpoint, up to a hard bound of 4 x keep.
    local covering = redis.call('HEXISTS', KEYS[9], 'r:' .. ARGV[2]) == 1 or
      (ARGV[7 + n * 4] == 'r' and redis.call('EXISTS', KEYS[8]) == 1)
    if covering and size <= 4 * keep then
      local edge = redis.call('ZRANGE', KEYS[5], -(keep + 1), -(keep + 1), 'WITHSCORES')[2]
      local thr = tonumber(redis.call('HGET', KEYS[11], ARGV[2]) or (minT - 1))
      redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', math.min(tonumber(edge), thr))
    else
      redis.call('ZREMRANGEBYRANK', KEYS[5], 0, -(keep + 1))
    end
  end
  local zt = {'GT'}
  for c, cnt in pairs(counts) do
    redis.call('HINCRBY', KEYS[6], c, cnt)
    zt[#zt + 1] = cellt[c]
    zt[#zt + 1] = c
  end
  redis.call('ZADD', KEYS[7], unpack(zt))
end
local hasGrid = redis.call('EXISTS', KEYS[8])
local mark = ARGV[7 + n * 4]
local queued = 0
if (mark == 'r' and hasGrid == 1 and stored > 0) or (mark == 'c' and changed == 1) then
  local member = mark .. ':' .. ARGV[2]
  -- A generation unique in the incident (the '#' field counts them), so
  -- that a worker's stale read never matches an entry queued anew.
  redis.call('HSET', KEYS[9], member, redis.call('HINCRBY', KEYS[9], '#', 1))
  redis.call('ZADD', KEYS[10], 'NX', ARGV[8 + n * 4], member)
  if mark == 'r' then redis.call('HSETNX', KEYS[11], ARGV[2], string.format('%.0f', minT - 1)) end
  queued = 1
end
return {string.format('%.0f', before), string.format('%.0f', wm), stored, changed, last or '', hasGrid, queued}
