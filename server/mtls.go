package server

import (
	"context"
	"strings"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/mountain-sar/sar/internal/auth"
	"github.com/mountain-sar/sar/internal/core"
	"github.com/mountain-sar/sar/internal/sar"
)

// Mutual TLS for server-to-server clients (an agency's system, a command
// platform). With Options.ClientCAs, the gRPC listener asks for a client
// certificate and verifies any that is sent against those CAs (browsers
// and phones send none and use bearer tokens as before). A verified
// certificate stands for a credential the way a bearer token does: its
// URI SAN spiffe://<trust domain>/sar/credential/<credential id> names a
// credential an admin issued (CreateCredential: role, scopes, expiry);
// revoking or expiring that credential shuts the certificate out, as it
// does the token. A call that carries a bearer token is authenticated by
// the token; the certificate is used only when there is none. The JSON
// gateway takes bearer tokens only.

// credentialPath is the path of a client certificate's SPIFFE ID.
const credentialPath = "/sar/credential/"

// clientCertCredential reports whether the call's connection presented
// a verified client certificate, and the credential id it names ("" if
// it names none, or more than one).
func clientCertCredential(ctx context.Context) (string, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", false
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return "", false
	}
	id := ""
	for _, u := range ti.State.VerifiedChains[0][0].URIs {
		if u.Scheme != "spiffe" || u.Host == "" {
			continue
		}
		v, ok := strings.CutPrefix(u.Path, credentialPath)
		if !ok || v == "" || strings.Contains(v, "/") {
			continue
		}
		if id != "" && id != v {
			return "", true // two credentials: neither
		}
		id = v
	}
	return id, true
}

// authenticateCertificate resolves a verified client certificate's
// credential, refused as an unknown token would be.
func (s *Server) authenticateCertificate(ctx context.Context, addr, id string) (context.Context, error) {
	if id == "" {
		return nil, s.refuse(addr, core.Unauthenticated(sar.CredentialInvalid))
	}
	p, err := s.core.AuthenticateCertificate(ctx, id)
	if err != nil {
		if sar.KindOf(err) == sar.KindUnauthenticated {
			return nil, s.refuse(addr, err)
		}
		return nil, toStatus(s.log, "authenticate", err)
	}
	ctx = auth.WithPrincipal(ctx, p)
	return context.WithValue(ctx, presentedKey{}, core.Presented{CertID: id}), nil
}
