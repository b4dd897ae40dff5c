package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/app"
	"github.com/mountain-sar/sar/internal/auth"
)

// issueClient makes a client certificate whose URI SANs are uris.
func (ca *testCA) issueClient(serial int64, uris ...string) tls.Certificate {
	t := ca.t
	t.Helper()
	key := must[*ecdsa.PrivateKey](t, "key")(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "agency system"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	for _, u := range uris {
		tmpl.URIs = append(tmpl.URIs, must[*url.URL](t, "uri")(url.Parse(u)))
	}
	der := must[[]byte](t, "cert")(x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key))
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestMutualTLS: a client certificate from the client CA that names an
// issued credential authenticates as it, with its role and scope; a
// certificate from another CA, or naming no, an unknown or a revoked
// credential, is refused; without a certificate bearer tokens work as
// before.
func TestMutualTLS(t *testing.T) {
	serverCA, clientCA := newTestCA(t, "server CA"), newTestCA(t, "client CA")
	caFile := filepath.Join(t.TempDir(), "clients.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: clientCA.cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	e, _ := startTLSEnv(t, serverCA, func(c *app.Config) { c.TLSClientCAFile = caFile })
	e.createAgency("police-north", "north", sarv1.AgencyKind_AGENCY_KIND_POLICE_STATION)
	opToken := e.credential(&sarv1.CreateCredentialRequest{Role: sarv1.Role_ROLE_OPERATOR, Jurisdiction: "north", DisplayName: "north command platform"})
	_, opID := auth.HashToken(opToken)
	revoked := e.credential(&sarv1.CreateCredentialRequest{Role: sarv1.Role_ROLE_OPERATOR, Jurisdiction: "north"})
	_, revokedID := auth.HashToken(revoked)
	must[*sarv1.RevokeCredentialResponse](t, "RevokeCredential")(e.auth.RevokeCredential(e.as(e.admin), &sarv1.RevokeCredentialRequest{CredentialId: revokedID}))

	// client dials with a client certificate and calls without a token.
	client := func(cert *tls.Certificate) (*grpc.ClientConn, context.Context) {
		cfg := &tls.Config{RootCAs: serverCA.pool()}
		if cert != nil { // sent whatever CAs the server asks for
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
		}
		cc := must[*grpc.ClientConn](t, "client")(grpc.NewClient(e.app.GRPCAddr(), grpc.WithTransportCredentials(credentials.NewTLS(cfg))))
		t.Cleanup(func() { _ = cc.Close() })
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		t.Cleanup(cancel)
		return cc, ctx
	}

	good := clientCA.issueClient(1, "spiffe://sar.test/sar/credential/"+opID)
	cc, ctx := client(&good)
	a, inc := sarv1.NewAuthServiceClient(cc), sarv1.NewIncidentServiceClient(cc)
	who, err := a.WhoAmI(ctx, &sarv1.WhoAmIRequest{})
	if err != nil {
		t.Fatalf("WhoAmI with the operator's certificate: %v", err)
	}
	if p := who.GetPrincipal(); p.GetCredentialId() != opID || p.GetRole() != sarv1.Role_ROLE_OPERATOR || p.GetJurisdiction() != "north" {
		t.Errorf("the certificate's principal: %v, want the operator credential %s of north", p, opID)
	}
	created, err := inc.CreateIncident(ctx, &sarv1.CreateIncidentRequest{Title: "by certificate",
		InitialPlanningPoint: &sarv1.PlanningPoint{Position: &sarv1.LatLng{Lat: 30.2458, Lng: 119.7156}}})
	if err != nil {
		t.Fatalf("CreateIncident with the certificate: %v", err)
	}
	// The role holds: an operator may not make an admin.
	if _, err := a.CreateCredential(ctx, &sarv1.CreateCredentialRequest{Role: sarv1.Role_ROLE_ADMIN, DisplayName: "x"}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("CreateCredential(admin) with the operator's certificate: %v, want PermissionDenied", err)
	}
	// A watch stream on the certificate (its credential is checked again
	// while it runs).
	w, err := inc.WatchIncident(ctx, &sarv1.WatchIncidentRequest{IncidentId: created.GetIncident().GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := w.Recv(); err != nil || m.GetSnapshot() == nil {
		t.Fatalf("watch by certificate: %v %v, want a snapshot", m, err)
	}
	ended := make(chan error, 1)
	go func() {
		for {
			if _, err := w.Recv(); err != nil {
				ended <- err
				return
			}
		}
	}()
	select { // past a few rechecks (200 ms in tests), each by the certificate's credential
	case err := <-ended:
		t.Errorf("the watch on the certificate ended: %v", err)
	case <-time.After(time.Second):
	}

	refusals := []struct {
		name string
		cert tls.Certificate
		want codes.Code
	}{
		{"a revoked credential", clientCA.issueClient(2, "spiffe://sar.test/sar/credential/"+revokedID), codes.Unauthenticated},
		{"an unknown credential", clientCA.issueClient(3, "spiffe://sar.test/sar/credential/000000000000000000000000"), codes.Unauthenticated},
		{"no credential named", clientCA.issueClient(4, "spiffe://sar.test/workload/other"), codes.Unauthenticated},
		{"two credentials named", clientCA.issueClient(5, "spiffe://sar.test/sar/credential/"+opID, "spiffe://sar.test/sar/credential/"+revokedID), codes.Unauthenticated},
		{"another CA", newTestCA(t, "rogue CA").issueClient(6, "spiffe://sar.test/sar/credential/"+opID), codes.Unavailable},
	}
	for _, r := range refusals {
		cc, ctx := client(&r.cert)
		a := sarv1.NewAuthServiceClient(cc)
		_, err := a.WhoAmI(ctx, &sarv1.WhoAmIRequest{})
		if status.Code(err) != r.want {
			t.Errorf("%s: %v, want %v", r.name, err, r.want)
		}
	}
	// No certificate: a token works, nothing does not.
	cc, ctx = client(nil)
	a = sarv1.NewAuthServiceClient(cc)
	if _, err := a.WhoAmI(withBearer(ctx, opToken), &sarv1.WhoAmIRequest{}); err != nil {
		t.Errorf("a token without a certificate: %v", err)
	}
	if _, err := a.WhoAmI(ctx, &sarv1.WhoAmIRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("neither token nor certificate: %v, want Unauthenticated", err)
	}
}
