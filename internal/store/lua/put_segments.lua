-- put_segments: writes a segmentation (compare-and-set on its version)
-- with the event that announces it.
--
-- KEYS: 1 inc, 2 segs, 3 outbox
-- ARGV: 1 expectVer, 2 json, 3 eventId, 4 eventPb
-- Returns: the new version (an integer).
-- Errors: SAR_NOTFOUND, SAR_CLOSED, SAR_CONFLICT.
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return redis.error_reply('SAR_NOTFOUND no such incident') end
if state ~= 'open' then return redis.error_reply('SAR_CLOSED incident is closed') end
local ver = tonumber(redis.call('HGET', KEYS[2], 'ver') or '0')
if ver ~= tonumber(ARGV[1]) then return redis.error_reply('SAR_CONFLICT segments changed since they were read') end
redis.call('HSET', KEYS[2], 'ver', ver + 1, 'json', ARGV[2])
redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
return ver + 1
