-- revoke_credential: marks a credential revoked, keeping its record (and
-- its expiry) so that its holder is told "revoked" rather than "invalid".
-- A missing record is left missing: HSET would create it without expiry.
--
-- KEYS: 1 cred
-- ARGV: 1 revokedAtMs
-- Returns: 1 when marked, nil when there was no record.
-- Errors: none.
if redis.call('EXISTS', KEYS[1]) == 0 then return nil end
redis.call('HSET', KEYS[1], 'r', ARGV[1])
return 1
