-- add_participant: adds a participant made by the server (a share link's
-- caller) to an open incident, with its joined event.
--
-- KEYS: 1 inc, 2 parts, 3 outbox
-- ARGV: 1 participantId, 2 pb, 3 eventId, 4 eventPb
-- Returns: 1.
-- Errors: SAR_NOTFOUND, SAR_CLOSED.
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return redis.error_reply('SAR_NOTFOUND no such incident') end
if state ~= 'open' then return redis.error_reply('SAR_CLOSED incident is closed') end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
return 1
