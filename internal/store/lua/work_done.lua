-- work_done: ends a queue entry of search work (see searchwork.go) if no
-- batch queued more since the worker read it: the entry's generation is
-- still gen, or if only its time is left (a stray: it is dropped).
-- Otherwise the entry stays, and its time moves to nowMs (the worker made
-- progress: the entry is not stale).
--
-- KEYS: 1 work, 2 workt
-- ARGV: 1 member, 2 gen, 3 nowMs
-- Returns: 1 (ended) or 0 (more was queued meanwhile).
local gen = redis.call('HGET', KEYS[1], ARGV[1])
if not gen then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 1
end
if gen == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 1
end
redis.call('ZADD', KEYS[2], 'XX', ARGV[3], ARGV[1])
return 0
