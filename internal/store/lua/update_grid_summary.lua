-- update_grid_summary: replaces the static summary of a grid if no seed,
-- rebase or other update happened since the meta was read. It counts as a
-- write like a seed or rebase (wver), so that a rebase prepared before it
-- cannot write its older summary over this one.
--
-- KEYS: 1 inc, 2 grid
-- ARGV: 1 expectWver, 2 summaryPb
-- Returns: 1.
-- Errors: SAR_NOTFOUND (no incident or no grid), SAR_CLOSED, SAR_CONFLICT.
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return redis.error_reply('SAR_NOTFOUND no such incident') end
if state ~= 'open' then return redis.error_reply('SAR_CLOSED incident is closed') end
local wver = redis.call('HGET', KEYS[2], 'wver')
if not wver then return redis.error_reply('SAR_NOTFOUND no search grid') end
if tonumber(wver) ~= tonumber(ARGV[1]) then return redis.error_reply('SAR_CONFLICT grid was written since it was read') end
redis.call('HSET', KEYS[2], 'pb', ARGV[2], 'wver', tonumber(wver) + 1)
return 1
