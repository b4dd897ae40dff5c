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
// KEYS: inc seq dev last trk cells cellt
// ARGV: device participant trackMax skippedThrough n, then n times
//
//	(seq, timeMs, cell, fixPb)
//
// Returns {ackedBefore, ackedThrough, stored, lastChanged, lastValue}.
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
return {string.format('%.0f', before), string.format('%.0f', wm), stored, changed, last or ''}
`)

// putIncidentScript writes an incident (compare-and-set on its version;
// version 0 creates it) together with the event that announces the change,
// in the incident's outbox. A replay of the same change (the client library
// retries after a timeout) is recognised by the event id and answered with
// the current version. Closing also starts the retention clock on the
// incident's location and personal data: last positions, cell visits,
// participants, devices, sequences and every track.
//
// KEYS: inc outbox last cells cellt parts dev seq pcred (3-9 expire on close)
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
  for i = 3, 9 do redis.call('EXPIRE', KEYS[i], ttl) end
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
// KEYS: inc parts pcred dev seq outbox
// ARGV: device credentialId callerParticipantId newParticipantId newPb eventId eventPb
//
// Returns {participantId, created, ackedThrough, participantPb}.
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
    redis.call('HSET', KEYS[2], pid, ARGV[5])
    redis.call('HSET', KEYS[3], ARGV[2], pid)
    redis.call('HSET', KEYS[6], ARGV[6], ARGV[7])
    created = 1
  end
end
local bound = redis.call('HGET', KEYS[4], ARGV[1])
if bound and bound ~= pid then return redis.error_reply('SAR_DEVICE_TAKEN') end
if not bound then redis.call('HSET', KEYS[4], ARGV[1], pid) end
return {pid, created, redis.call('HGET', KEYS[5], ARGV[1]) or '0', redis.call('HGET', KEYS[2], pid)}
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
