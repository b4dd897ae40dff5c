-- put_notice: appends a notice to every team (the subject found, the
-- incident closed) to the incident's task feed, with the events that
-- announce it to each agency, in the outbox.
--
-- KEYS: 1 inc, 2 feed, 3 outbox
-- ARGV: 1 kind (a TaskNoticeKind name), 2 incidentPb, 3 feedMax,
--       4 retentionSeconds (the feed of a closed incident expires after
--       it), then pairs (eventId, eventPb)
-- Records on the incident ("notice:<kind>") that the notice was written,
-- so a repeated request knows whether to write it.
-- Returns: the feed entry's id.
-- Errors: SAR_NOTFOUND.
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return redis.error_reply('SAR_NOTFOUND no such incident') end
redis.call('HSET', KEYS[1], 'notice:' .. ARGV[1], '1')
for i = 5, #ARGV, 2 do redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1]) end
local fid = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'team', '*', 'kind', ARGV[1], 'pb', ARGV[2])
if state ~= 'open' and redis.call('TTL', KEYS[2]) == -1 then redis.call('EXPIRE', KEYS[2], ARGV[4]) end
return fid
