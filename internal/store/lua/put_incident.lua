-- put_incident: writes an incident (compare-and-set on its version;
-- version 0 creates it) together with the event that announces the change,
-- in the incident's outbox. A replay of the same change (the client library
-- retries after a timeout) is recognised by the event id and answered with
-- the current version. Closing also starts the retention clock on the
-- incident's location and personal data: last positions, cell visits,
-- participants, devices, sequences, the search grid and every track.
--
-- Every key is declared: on close the caller reads the participants first
-- and passes their track keys (KEYS[25] onwards) and ids (ARGV[8]
-- onwards); the script refuses with SAR_PARTS_CHANGED, before writing
-- anything, unless they are still exactly the incident's participants (a
-- join between the read and the script), and the caller reads again.
--
-- KEYS: 1 inc, 2 outbox, 3 last, 4 cells, 5 cellt, 6 parts, 7 dev, 8 seq,
--       9 pcred, 10 grid, 11 gpri, 12 gcov, 13 gver, 14 gtrk, 15 stype,
--       16 segs, 17 tasks, 18 tver, 19 treq, 20 feed, 21 tdl, 22 gthr,
--       23 work, 24 workt, then n track keys (KEYS[3] onwards expire on
--       close)
-- ARGV: 1 expectVer, 2 pb, 3 state ("open" or "closed"), 4 eventId,
--       5 eventPb, 6 retentionSeconds, 7 n (participants passed; 0 unless
--       closing), then n participant ids in the order of their track keys
-- Returns: the new version (an integer).
-- Errors: SAR_EXISTS, SAR_NOTFOUND, SAR_CONFLICT, SAR_PARTS_CHANGED.
local ver = tonumber(redis.call('HGET', KEYS[1], 'ver') or '0')
if ver > 0 and redis.call('HGET', KEYS[1], 'ev') == ARGV[4] then return ver end
local want = tonumber(ARGV[1])
if want == 0 and ver ~= 0 then return redis.error_reply('SAR_EXISTS incident exists') end
if want ~= 0 and ver == 0 then return redis.error_reply('SAR_NOTFOUND no such incident') end
if ver ~= want then return redis.error_reply('SAR_CONFLICT incident changed since it was read') end
local closing = ARGV[3] == 'closed'
if closing then
  local n = tonumber(ARGV[7])
  if redis.call('HLEN', KEYS[6]) ~= n then
    return redis.error_reply('SAR_PARTS_CHANGED participants changed since they were read')
  end
  for i = 1, n do
    if redis.call('HEXISTS', KEYS[6], ARGV[7 + i]) == 0 then
      return redis.error_reply('SAR_PARTS_CHANGED participants changed since they were read')
    end
  end
end
redis.call('HSET', KEYS[1], 'pb', ARGV[2], 'state', ARGV[3], 'ver', ver + 1, 'ev', ARGV[4])
redis.call('HSET', KEYS[2], ARGV[4], ARGV[5])
if closing then
  local ttl = tonumber(ARGV[6])
  for i = 3, #KEYS do redis.call('EXPIRE', KEYS[i], ttl) end
end
return ver + 1
