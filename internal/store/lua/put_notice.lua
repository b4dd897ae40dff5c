-- put_notice: appends a notice to every team (the subject found, the
-- incident closed) to the incident's task feed, with the events that
-- announce it to each agency, in the outbox.
--
-- KEYS: 1 inc, 2 feed, 3 outbox
-- ARGV: 1 kind (a TaskNoticeKind name), 2 incidentPb, 3 feedMax, then
--       pairs (eventId, eventPb)
-- Returns: the feed entry's id.
-- Errors: SAR_NOTFOUND.
if not redis.call('HGET', KEYS[1], 'state') then return redis.error_reply('SAR_NOTFOUND no such incident') end
for i = 4, #ARGV, 2 do redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1]) end
return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'team', '*', 'kind', ARGV[1], 'pb', ARGV[2])
