package store

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/sar"
)

// credentialRetention is how long a credential's record outlives its
// expiry or revocation, so that its holder hears "expired" or "revoked"
// rather than "invalid": a lost person whose link ran out is told so.
const credentialRetention = 30 * 24 * time.Hour

// PutCredential stores a credential under its id: the token's hash and the
// principal, kept until credentialRetention after it expires. The token
// itself is never stored.
func (s *Store) PutCredential(ctx context.Context, hash string, p *sarv1.Principal) error {
	key := kCred(p.GetCredentialId())
	_, err := s.rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		pipe.HSet(ctx, key, "h", hash, "pb", marshal(p))
		pipe.ExpireAt(ctx, key, p.GetExpireTime().AsTime().Add(credentialRetention))
		return nil
	})
	return fail(err, "credential")
}

// Credential returns a credential's stored hash and principal by id. A
// credential that expired or was revoked answers KindNotFound wrapping
// sar.ErrCredentialExpired or sar.ErrCredentialRevoked, with its hash, so
// that the caller can tell its holder (and only its holder, who presents
// the matching secret) which it was.
func (s *Store) Credential(ctx context.Context, id string) (hash string, p *sarv1.Principal, err error) {
	vals, err := s.rdb.HMGet(ctx, kCred(id), "h", "pb", "r").Result()
	if err != nil {
		return "", nil, fail(err, "credential")
	}
	h, ok1 := vals[0].(string)
	pb, ok2 := vals[1].(string)
	if !ok1 || !ok2 {
		return "", nil, sar.NotFound("credential")
	}
	p = &sarv1.Principal{}
	if err := unmarshal(pb, p); err != nil {
		return "", nil, err
	}
	if _, revoked := vals[2].(string); revoked {
		return h, nil, sar.Wrap(sar.KindNotFound, sar.ErrCredentialRevoked, "credential not found")
	}
	if !p.GetExpireTime().AsTime().After(time.Now()) {
		return h, nil, sar.Wrap(sar.KindNotFound, sar.ErrCredentialExpired, "credential not found")
	}
	return h, p, nil
}

// DeleteCredential revokes a credential by id: its record stays, marked,
// until it would have been dropped anyway.
func (s *Store) DeleteCredential(ctx context.Context, id string) error {
	// HSET on a missing key would create it without an expiry: only mark
	// a record that exists.
	err := revokeScript.Run(ctx, s.rdb, []string{kCred(id)}, strconv.FormatInt(time.Now().UnixMilli(), 10)).Err()
	if err == redis.Nil {
		err = nil
	}
	return fail(err, "credential")
}
