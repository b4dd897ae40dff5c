package core

import (
	"context"
	"errors"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/sar"
)

// Presented is what a call authenticated with: a bearer token, or the id
// of the credential a verified client certificate names (mutual TLS).
// Streams present it again to check that the credential still holds.
type Presented struct {
	Token  string
	CertID string
}

// Reauthenticate resolves what a call presented to its principal again.
func (s *Service) Reauthenticate(ctx context.Context, c Presented) (*sarv1.Principal, error) {
	if c.CertID != "" {
		return s.AuthenticateCertificate(ctx, c.CertID)
	}
	return s.Authenticate(ctx, c.Token)
}

// AuthenticateCertificate resolves the credential a verified client
// certificate names to its principal. The TLS handshake proved the
// holder's key and the certificate authority vouched for the name, so no
// secret is compared: the credential (issued by an admin, with its role,
// scopes and expiry) must exist and be neither expired nor revoked.
func (s *Service) AuthenticateCertificate(ctx context.Context, id string) (*sarv1.Principal, error) {
	key := "cert:" + id // token hashes never start so
	if p, ok := s.creds.get(key); ok {
		if p.GetExpireTime().AsTime().After(s.now()) {
			return p, nil
		}
		s.creds.del(key)
		return nil, Unauthenticated(sar.CredentialExpired)
	}
	_, p, err := s.st.Credential(ctx, id)
	switch {
	case err == nil:
	case sar.KindOf(err) != sar.KindNotFound:
		return nil, err
	case errors.Is(err, sar.ErrCredentialRevoked):
		return nil, Unauthenticated(sar.CredentialRevoked)
	case errors.Is(err, sar.ErrCredentialExpired):
		return nil, Unauthenticated(sar.CredentialExpired)
	default:
		return nil, Unauthenticated(sar.CredentialInvalid)
	}
	if p.GetRole() == sarv1.Role_ROLE_CALLER {
		// A share link is a lost person's phone, never a server.
		return nil, Unauthenticated(sar.CredentialInvalid)
	}
	s.creds.put(key, p)
	return p, nil
}
