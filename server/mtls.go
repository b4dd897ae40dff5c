package server

import (
	"context"
	"crypto/x509"
	"net/http"
	"strings"

	"github.com/fullstorydev/grpchan/inprocgrpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/mountain-sar/sar/internal/auth"
	"github.com/mountain-sar/sar/internal/core"
	"github.com/mountain-sar/sar/internal/sar"
)

// Mutual TLS for server-to-server clients (an agency's system, a command
// platform). With Options.ClientCAs, both listeners ask for a client
// certificate (browsers and phones send none and use bearer tokens as
// before). A certificate the client CAs signed stands for a credential the
// way a bearer token does: its URI SAN
// spiffe://<trust domain>/sar/credential/<credential id> names a
// credential an admin issued (CreateCredential: role, scopes, expiry);
// revoking or expiring that credential shuts the certificate out, as it
// does the token. A call that carries a bearer token is authenticated by
// the token; the certificate is used only when there is none.
//
// The gRPC listener verifies a certificate in the handshake. The HTTP
// listener only requests one, so that a browser with some other
// certificate still gets the share page; the JSON gateway verifies it
// against the current client CAs at each request that has no token
// (gatewayCertificate), and hands the verified certificate to the
// in-process door, whose interceptors map it as for gRPC.

// credentialPath is the path of a client certificate's SPIFFE ID.
const credentialPath = "/sar/credential/"

// gatewayCertKey holds, on a JSON request's context, the verified client
// certificate it came with.
type gatewayCertKey struct{}

// clientCertCredential reports whether the call came with a verified
// client certificate (on its TLS connection, or on the JSON request the
// gateway door passed on), and the credential id it names ("" if it names
// none, or more than one).
func clientCertCredential(ctx context.Context) (string, bool) {
	if leaf, ok := ctx.Value(gatewayCertKey{}).(*x509.Certificate); ok {
		return credentialOf(leaf), true
	}
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", false
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return "", false
	}
	return credentialOf(ti.State.VerifiedChains[0][0]), true
}

// credentialOf is the credential id a verified certificate names in its
// SPIFFE URI SAN, or "" if it names none, or two.
func credentialOf(leaf *x509.Certificate) string {
	id := ""
	for _, u := range leaf.URIs {
		if u.Scheme != "spiffe" || u.Host == "" {
			continue
		}
		v, ok := strings.CutPrefix(u.Path, credentialPath)
		if !ok || v == "" || strings.Contains(v, "/") {
			continue
		}
		if id != "" && id != v {
			return "" // two credentials: neither
		}
		id = v
	}
	return id
}

// gatewayCertificate verifies the client certificate of a JSON request
// against the current client CAs, as the gRPC handshake does (chain,
// validity, client-auth usage). It returns the request's context with
// the verified certificate, nil when none was sent or mutual TLS is off,
// or an error for one that does not verify.
func (s *Server) gatewayCertificate(r *http.Request) (context.Context, error) {
	if s.opt.ClientCAs == nil || r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil, nil
	}
	certs := r.TLS.PeerCertificates
	opts := x509.VerifyOptions{Roots: s.opt.ClientCAs(), Intermediates: x509.NewCertPool(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	for _, c := range certs[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := certs[0].Verify(opts); err != nil {
		return nil, err
	}
	return context.WithValue(r.Context(), gatewayCertKey{}, certs[0]), nil
}

// withGatewayCertificate passes the verified certificate of the JSON
// request behind an in-process call on to the server side of the call
// (inprocgrpc gives the handler none of the caller's context values).
func withGatewayCertificate(ctx context.Context) context.Context {
	client := inprocgrpc.ClientContext(ctx)
	if client == nil {
		return ctx
	}
	if leaf, ok := client.Value(gatewayCertKey{}).(*x509.Certificate); ok {
		return context.WithValue(ctx, gatewayCertKey{}, leaf)
	}
	return ctx
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
