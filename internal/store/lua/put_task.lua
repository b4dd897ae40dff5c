-- put_task: writes one task of an incident by compare-and-set on its
-- version (version 0 creates it), together with what must change with it,
-- atomically: the incident's search segments when the task is a segment's
-- (so that a segment's assignment and its task never disagree), the event
-- that announces the change (in the incident's outbox), the entry of the
-- incident's task feed that teams' devices read (StreamTasks), and the
-- task's answer deadline (a sorted set the escalation sweep reads). A
-- create with a request id already used returns the task made the first
-- time.
--
-- KEYS: 1 inc, 2 tasks, 3 tver, 4 treq, 5 outbox, 6 feed, 7 tdl, 8 segs
-- ARGV: 1 taskId, 2 expectVer (0: create), 3 pb, 4 requestId ("" if none),
--       5 eventId, 6 eventPb, 7 feedTeam ("<agency>/<team>", "*" for all
--       teams), 8 feedKind ("task" or a notice kind), 9 deadlineMs (0:
--       none), 10 segExpectVer ("" to leave segments alone), 11 segJson,
--       14 alsoTeam (a second feed entry for the team the task left, "" for
--       none), 12 allowClosed ("1": the incident may be closed, for the
--       cancellations of a close), 13 feedMax (entries kept, approximate),
--       14 (above), 15 retentionSeconds (a closed incident's task keys
--       expire after it, as put_incident's close does for the others), then
--       pairs (eventId, eventPb) of further events written to the outbox
--       with the change (the copies of a notice for each agency)
-- Returns: {"ok", newVersion, feedId} or {"dup", taskPb, version} for a
--          repeated request id.
-- Errors: SAR_NOTFOUND (incident or task), SAR_CLOSED, SAR_EXISTS,
--         SAR_CONFLICT (task version), SAR_SEG_CONFLICT (segments version).
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return redis.error_reply('SAR_NOTFOUND no such incident') end
if state ~= 'open' and ARGV[12] ~= '1' then return redis.error_reply('SAR_CLOSED incident is closed') end
local id = ARGV[1]
local want = tonumber(ARGV[2])
if want == 0 and ARGV[4] ~= '' then
  local prev = redis.call('HGET', KEYS[4], ARGV[4])
  if prev then
    return {'dup', redis.call('HGET', KEYS[2], prev), redis.call('HGET', KEYS[3], prev)}
  end
end
local ver = tonumber(redis.call('HGET', KEYS[3], id) or '0')
if want == 0 and ver ~= 0 then return redis.error_reply('SAR_EXISTS task exists') end
if want ~= 0 and ver == 0 then return redis.error_reply('SAR_NOTFOUND no such task') end
if ver ~= want then return redis.error_reply('SAR_CONFLICT task changed since it was read') end
if ARGV[10] ~= '' then
  local sv = tonumber(redis.call('HGET', KEYS[8], 'ver') or '0')
  if sv ~= tonumber(ARGV[10]) then return redis.error_reply('SAR_SEG_CONFLICT segments changed since they were read') end
  redis.call('HSET', KEYS[8], 'ver', sv + 1, 'json', ARGV[11])
end
redis.call('HSET', KEYS[2], id, ARGV[3])
redis.call('HSET', KEYS[3], id, ver + 1)
if want == 0 and ARGV[4] ~= '' then redis.call('HSET', KEYS[4], ARGV[4], id) end
redis.call('HSET', KEYS[5], ARGV[5], ARGV[6])
for i = 16, #ARGV, 2 do redis.call('HSET', KEYS[5], ARGV[i], ARGV[i + 1]) end
if ARGV[14] ~= '' then
  redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[13], '*', 'team', ARGV[14], 'kind', ARGV[8], 'pb', ARGV[3])
end
local fid = redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[13], '*', 'team', ARGV[7], 'kind', ARGV[8], 'pb', ARGV[3])
local dl = tonumber(ARGV[9])
if dl > 0 then
  redis.call('ZADD', KEYS[7], dl, id)
else
  redis.call('ZREM', KEYS[7], id)
end
if state ~= 'open' then
  for _, k in ipairs({KEYS[2], KEYS[3], KEYS[4], KEYS[6], KEYS[7]}) do
    if redis.call('TTL', k) == -1 then redis.call('EXPIRE', k, ARGV[15]) end
  end
end
return {'ok', ver + 1, fid}
