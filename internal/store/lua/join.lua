-- join: binds a device to a participant of an open incident. A caller
-- names its participant; a rescuer's participant is found by credential id
-- or created (with its joined event in the outbox). A caller's device
-- bound for the first time opened the share link: the caller's record is
-- replaced by newPb (its link state) and the link-opened event eventPb is
-- queued, when given.
--
-- A device bound to another participant is refused, unless that
-- participant is rebindFrom (the caller checked that its credential is
-- gone). A non-empty searcherType is recorded for the participant, or
-- newSearcherType for a participant the join created.
--
-- KEYS: 1 inc, 2 parts, 3 pcred, 4 dev, 5 seq, 6 outbox, 7 stype
-- ARGV: 1 device, 2 credentialId, 3 callerParticipantId,
--       4 newParticipantId, 5 newPb, 6 eventId, 7 eventPb, 8 rebindFrom,
--       9 searcherType, 10 newSearcherType
-- Returns: {participantId, announced (1 when the event was queued: a
--       participant created, or a caller's link opened on a new device),
--       ackedThrough (a decimal string), participantPb, searcherType}.
-- Errors: SAR_NOTFOUND, SAR_CLOSED, SAR_DEVICE_TAKEN.
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return redis.error_reply('SAR_NOTFOUND no such incident') end
if state ~= 'open' then return redis.error_reply('SAR_CLOSED incident is closed') end
local pid, created = nil, 0
if ARGV[3] ~= '' then
  pid = ARGV[3]
  if redis.call('HEXISTS', KEYS[2], pid) == 0 then return redis.error_reply('SAR_NOTFOUND no such participant') end
else
  pid = redis.call('HGET', KEYS[3], ARGV[2])
  if not pid then
    pid = ARGV[4]
    created = 1
  end
end
-- Checked before anything is written: a refused join leaves no trace.
local bound = redis.call('HGET', KEYS[4], ARGV[1])
if bound and bound ~= pid and bound ~= ARGV[8] then
  return redis.error_reply('SAR_DEVICE_TAKEN device is bound to another participant')
end
if created == 1 then
  redis.call('HSET', KEYS[2], pid, ARGV[5])
  redis.call('HSET', KEYS[3], ARGV[2], pid)
  redis.call('HSET', KEYS[6], ARGV[6], ARGV[7])
end
if bound ~= pid then
  redis.call('HSET', KEYS[4], ARGV[1], pid)
  if ARGV[3] ~= '' and ARGV[5] ~= '' then
    redis.call('HSET', KEYS[2], pid, ARGV[5])
    redis.call('HSET', KEYS[6], ARGV[6], ARGV[7])
    created = 1
  end
end
local st = ARGV[9]
if st == '' and created == 1 then st = ARGV[10] end
if st ~= '' then redis.call('HSET', KEYS[7], pid, st) end
return {pid, created, redis.call('HGET', KEYS[5], ARGV[1]) or '0', redis.call('HGET', KEYS[2], pid),
  redis.call('HGET', KEYS[7], pid) or ''}
