package store

import "github.com/redis/go-redis/v9"

// Errors raised by the scripts, mapped to domain errors in errors.go.
const (
	scriptNotFound   = "SAR_NOTFOUND"
	scriptClosed     = "SAR_CLOSED"
	scriptNotJoined  = "SAR_NOTJOINED"
	scriptConflict   = "SAR_CONFLICT"
	scriptExists     = "SAR_EXISTS"
	scriptDeviceUsed = "SAR_DEVICE_TAKEN"
)

// ingestScript stores one batch of one device atomically: it checks that
// the incident is open and the device joined as the participant; moves the
// device's acked-through sequence up to skippedThrough (sequences the device
// gave up on); then walks the batch in sequence order: a sequence at or
// below acked-through is a duplicate (exactly once under retries), the next
// one is processed — stored, or only consumed when the fix was refused for
// good (empty pb) — and raises acked-through, and the first gap stops the
// walk (the device resends from acked-through + 1). Stored fixes go to the
// track (trimmed back to trackMax when it grows 10 % past it, so the trim is
// not paid on every batch) and to the cell visit counts; the last known
// position moves only forward in fix time.
//
// KEYS: inc seq dev last trk cells cellt grid
// ARGV: device participant trackMax skippedThrough n, then n times
//
//	(seq, timeMs, cell, fixPb)
//
// Returns {ackedBefore, ackedThrough, stored, lastChanged, lastValue,
// hasGrid} (hasGrid: the incident has a search plan, so the caller knows
// whether to add coverage without another round trip).
var ingestScript = redis.NewScript(`
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return redis.error_reply('SAR_NOTFOUND') end
if state ~= 'open' then return redis.error_reply('SAR_CLOSED') end
if redis.call('HGET', KEYS[3], ARGV[1]) ~= ARGV[2] then return redis.error_reply('SAR_NOTJOINED') end
local before = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
local wm = math.max(before, tonumber(ARGV[4]))
local n = tonumber(ARGV[5])
local zadd, counts, cellt = {}, {}, {}
local bestT, best = -1, nil
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
  if redis.call('ZCARD', KEYS[5]) > keep + math.floor(keep / 10) then
    redis.call('ZREMRANGEBYRANK', KEYS[5], 0, -(keep + 1))
  end
  local zt = {'GT'}
  for c, cnt in pairs(counts) do
    redis.call('HINCRBY', KEYS[6], c, cnt)
    zt[#zt + 1] = cellt[c]
    zt[#zt + 1] = c
  end
  redis.call('ZADD', KEYS[7], unpack(zt))
end
return {string.format('%.0f', before), string.format('%.0f', wm), stored, changed, last or '', redis.call('EXISTS', KEYS[8])}
`)

// putIncidentScript writes an incident (compare-and-set on its version;
// version 0 creates it) together with the event that announces the change,
// in the incident's outbox. A replay of the same change (the client library
// retries after a timeout) is recognised by the event id and answered with
// the current version. Closing also starts the retention clock on the
// incident's location and personal data: last positions, cell visits,
// participants, devices, sequences and every track.
//
// KEYS: inc outbox last cells cellt parts dev seq pcred grid gpri gcov gver gtrk
// stype segs (KEYS[3] onwards expire on close)
// ARGV: expectedVer pb state eventId eventPb retentionSeconds incidentId
//
// Returns the new version.
var putIncidentScript = redis.NewScript(`
local ver = tonumber(redis.call('HGET', KEYS[1], 'ver') or '0')
if ver > 0 and redis.call('HGET', KEYS[1], 'ev') == ARGV[4] then return ver end
local want = tonumber(ARGV[1])
if want == 0 and ver ~= 0 then return redis.error_reply('SAR_EXISTS') end
if want ~= 0 and ver == 0 then return redis.error_reply('SAR_NOTFOUND') end
if ver ~= want then return redis.error_reply('SAR_CONFLICT') end
redis.call('HSET', KEYS[1], 'pb', ARGV[2], 'state', ARGV[3], 'ver', ver + 1, 'ev', ARGV[4])
redis.call('HSET', KEYS[2], ARGV[4], ARGV[5])
if ARGV[3] == 'closed' then
  local ttl = tonumber(ARGV[6])
  for i = 3, #KEYS do redis.call('EXPIRE', KEYS[i], ttl) end
  for _, p in ipairs(redis.call('HKEYS', KEYS[6])) do
    redis.call('EXPIRE', 'sar:{' .. ARGV[7] .. '}:trk:' .. p, ttl)
  end
end
return ver + 1
`)

// joinScript binds a device to a participant of an open incident. A caller
// names its participant; a rescuer's participant is found by credential id
// or created (with its joined event in the outbox).
//
// KEYS: inc parts pcred dev seq outbox stype
// ARGV: device credentialId callerParticipantId newParticipantId newPb eventId eventPb rebindFrom searcherType
// newSearcherType
//
// A device bound to another participant is refused, unless that participant
// is rebindFrom (the caller checked that its credential is gone). A
// non-empty searcherType is recorded for the participant (KEYS[7]), or
// newSearcherType for a participant the join created.
// Returns {participantId, created, ackedThrough, participantPb,
// searcherType}.
var joinScript = redis.NewScript(`
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return redis.error_reply('SAR_NOTFOUND') end
if state ~= 'open' then return redis.error_reply('SAR_CLOSED') end
local pid, created = nil, 0
if ARGV[3] ~= '' then
  pid = ARGV[3]
  if redis.call('HEXISTS', KEYS[2], pid) == 0 then return redis.error_reply('SAR_NOTFOUND') end
else
  pid = redis.call('HGET', KEYS[3], ARGV[2])
  if not pid then
    pid = ARGV[4]
    created = 1
  end
end
-- Checked before anything is written: a refused join leaves no trace.
local bound = redis.call('HGET', KEYS[4], ARGV[1])
if bound and bound ~= pid and bound ~= ARGV[8] then return redis.error_reply('SAR_DEVICE_TAKEN') end
if created == 1 then
  redis.call('HSET', KEYS[2], pid, ARGV[5])
  redis.call('HSET', KEYS[3], ARGV[2], pid)
  redis.call('HSET', KEYS[6], ARGV[6], ARGV[7])
end
if bound ~= pid then redis.call('HSET', KEYS[4], ARGV[1], pid) end
local st = ARGV[9]
if st == '' and created == 1 then st = ARGV[10] end
if st ~= '' then redis.call('HSET', KEYS[7], pid, st) end
return {pid, created, redis.call('HGET', KEYS[5], ARGV[1]) or '0', redis.call('HGET', KEYS[2], pid),
  redis.call('HGET', KEYS[7], pid) or ''}
`)

// addParticipantScript adds a participant made by the server (a share
// link's caller) to an open incident, with its joined event.
//
// KEYS: inc parts outbox
// ARGV: participantId pb eventId eventPb
var addParticipantScript = redis.NewScript(`
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return redis.error_reply('SAR_NOTFOUND') end
if state ~= 'open' then return redis.error_reply('SAR_CLOSED') end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
return 1
`)

// putGridScript writes a seeded or rebased search grid (see grid.go and
// sar.GridWrite) with the event announcing it, if no other seed or rebase
// happened since the snapshot (else SAR_CONFLICT) and the version is still
// the one the event was numbered after (else {'moved', ver}: renumber and
// resend). The maintained total z is computed from the written weights
// and the coverage as it is now; a seed drops the old cells (and, with
// reset, the coverage and tracker states); every written cell gets the new
// version.
//
// KEYS: inc grid gpri gcov gver gtrk outbox
// ARGV: expectWver expectVer flags("s": seed, "r": reset, "c": clear the written cells' coverage) summaryPb
// row posb eventId eventPb n, then n times (cell, weight)
//
// Returns {'ok', ver} or {'moved', ver}.
var putGridScript = redis.NewScript(`
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return redis.error_reply('SAR_NOTFOUND') end
if state ~= 'open' then return redis.error_reply('SAR_CLOSED') end
local meta = redis.call('HMGET', KEYS[2], 'wver', 'ver')
if tonumber(meta[1] or '0') ~= tonumber(ARGV[1]) then return redis.error_reply('SAR_CONFLICT') end
local ver = tonumber(meta[2] or '0')
if ver ~= tonumber(ARGV[2]) then return {'moved', tostring(ver)} end
local nv = ver + 1
local n = tonumber(ARGV[9])
local reset = string.find(ARGV[3], 'r', 1, true)
if string.find(ARGV[3], 's', 1, true) then
  redis.call('DEL', KEYS[3], KEYS[5])
  if reset then redis.call('DEL', KEYS[4], KEYS[6]) end
  redis.call('HSET', KEYS[2], 'seedver', nv)
end
-- z = rest of world + sum of weight * e^(-coverage), from the coverage as
-- it is now (coverage added since the snapshot, inside or outside the old
-- grid, is counted).
local z = tonumber(ARGV[5])
local h, zv, cs, ws = {}, {}, {}, {}
local clear = string.find(ARGV[3], 'c', 1, true)
local function flush()
  if #h == 0 then return end
  if clear then redis.call('HDEL', KEYS[4], unpack(cs)) end
  redis.call('HSET', KEYS[3], unpack(h))
  redis.call('ZADD', KEYS[5], unpack(zv))
  local cov = redis.call('HMGET', KEYS[4], unpack(cs))
  for j = 1, #cs do z = z + ws[j] * math.exp(-(tonumber(cov[j]) or 0)) end
  h, zv, cs, ws = {}, {}, {}, {}
end
for i = 0, n - 1 do
  local c = ARGV[10 + 2 * i]
  h[#h + 1] = c
  h[#h + 1] = ARGV[11 + 2 * i]
  zv[#zv + 1] = nv
  zv[#zv + 1] = c
  cs[#cs + 1] = c
  ws[#ws + 1] = tonumber(ARGV[11 + 2 * i])
  if #cs >= 1000 then flush() end
end
flush()
local pos = 1 - (1 - tonumber(ARGV[6])) * z
redis.call('HSET', KEYS[2], 'pb', ARGV[4], 'ver', nv, 'wver', tonumber(ARGV[1]) + 1, 'row', ARGV[5],
  'z', string.format('%.17g', z), 'posb', ARGV[6], 'evpos', string.format('%.17g', pos))
redis.call('HSET', KEYS[7], ARGV[7], ARGV[8])
return {'ok', tostring(nv)}
`)

// coverageScript adds one searcher's batch of coverage to the search grid:
// the cumulative coverage of each cell, the maintained total weight z, the
// versions of the grid cells touched; it saves the searcher's tracker
// state (compare-and-set against the state the batch was computed from) and
// decides whether the change is worth an event: the probability of success
// moved by at least delta since the last event, at least everyMs ago.
//
// KEYS: inc grid gpri gcov gver gtrk
// ARGV: participant trackerBefore trackerAfter delta everyMs nowMs n, then n
// times (cell, coverage)
//
// Returns {'nogrid'}, {'stale'} or {'ok', ver, z, posb, row, changed, due}.
var coverageScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'state') ~= 'open' then return {'nogrid'} end
local meta = redis.call('HMGET', KEYS[2], 'ver', 'z', 'posb', 'row', 'evpos', 'evt')
if not meta[1] then return {'nogrid'} end
if (redis.call('HGET', KEYS[6], ARGV[1]) or '') ~= ARGV[2] then return {'stale'} end
local ver, z = tonumber(meta[1]), tonumber(meta[2])
local n = tonumber(ARGV[7])
local changed = {}
for i = 0, n - 1 do
  local c, d = ARGV[8 + 2 * i], ARGV[9 + 2 * i]
  local new = tonumber(redis.call('HINCRBYFLOAT', KEYS[4], c, d))
  local w = redis.call('HGET', KEYS[3], c)
  if w then
    z = z + tonumber(w) * (math.exp(-new) - math.exp(-(new - tonumber(d))))
    changed[#changed + 1] = c
  end
end
redis.call('HSET', KEYS[6], ARGV[1], ARGV[3])
local due = 0
if #changed > 0 then
  ver = redis.call('HINCRBY', KEYS[2], 'ver', 1)
  local zv = {}
  for _, c in ipairs(changed) do
    zv[#zv + 1] = ver
    zv[#zv + 1] = c
  end
  redis.call('ZADD', KEYS[5], unpack(zv))
  local zs = string.format('%.17g', z)
  redis.call('HSET', KEYS[2], 'z', zs, 'covt', ARGV[6])
  local pos = 1 - (1 - tonumber(meta[3])) * z
  local now = tonumber(ARGV[6])
  if math.abs(pos - tonumber(meta[5] or '0')) >= tonumber(ARGV[4]) and now - tonumber(meta[6] or '0') >= tonumber(ARGV[5]) then
    redis.call('HSET', KEYS[2], 'evpos', string.format('%.17g', pos), 'evt', ARGV[6])
    due = 1
  end
end
return {'ok', tostring(ver), string.format('%.17g', z), meta[3], meta[4], #changed, due}
`)
