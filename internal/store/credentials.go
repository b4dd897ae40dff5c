package store

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/sar"
)

// PutCredential stores a credential under its id: the token's hash and the
// principal, expiring with it. The token itself is never stored.
func (s *Store) PutCredential(ctx context.Context, hash string, p *sarv1.Principal) error {
	key := kCred(p.GetCredentialId())
	_, err := s.rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		pipe.HSet(ctx, key, "h", hash, "pb", marshal(p))
		pipe.ExpireAt(ctx, key, p.GetExpireTime().AsTime())
		return nil
	})
	return fail(err, "credential")
}

// Credential returns a credential's stored hash and principal by id.
func (s *Store) Credential(ctx context.Context, id string) (hash string, p *sarv1.Principal, err error) {
	vals, err := s.rdb.HMGet(ctx, kCred(id), "h", "pb").Result()
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
	if !p.GetExpireTime().AsTime().After(time.Now()) {
		return "", nil, sar.NotFound("credential")
	}
	return h, p, nil
}

// DeleteCredential revokes a credential by id.
func (s *Store) DeleteCredential(ctx context.Context, id string) error {
	return fail(s.rdb.Del(ctx, kCred(id)).Err(), "credential")
}
