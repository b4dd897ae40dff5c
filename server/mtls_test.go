package server_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/app"
	"github.com/mountain-sar/sar/internal/auth"
	"github.com/mountain-sar/sar/internal/tlsutil/tlstest"
)

// issueClient makes a client certificate whose URI SANs are uris.
func (ca *testCA) issueClient(uris ...string) tls.Certificate {
	ca.t.Helper()
	return ca.ClientCert(uris...)
}

// certClient dials e's gRPC listener with a client certificate (none if
// cert is nil), for calls without a token.
func certClient(t *testing.T, e *env, serverCA *testCA, cert *tls.Certificate) (*grpc.ClientConn, context.Context) {
	t.Helper()
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

	client := func(cert *tls.Certificate) (*grpc.ClientConn, context.Context) {
		return certClient(t, e, serverCA, cert)
	}

	good := clientCA.issueClient("spiffe://sar.test/sar/credential/" + opID)
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
		{"a revoked credential", clientCA.issueClient("spiffe://sar.test/sar/credential/" + revokedID), codes.Unauthenticated},
		{"an unknown credential", clientCA.issueClient("spiffe://sar.test/sar/credential/000000000000000000000000"), codes.Unauthenticated},
		{"no credential named", clientCA.issueClient("spiffe://sar.test/workload/other"), codes.Unauthenticated},
		{"two credentials named", clientCA.issueClient("spiffe://sar.test/sar/credential/"+opID, "spiffe://sar.test/sar/credential/"+revokedID), codes.Unauthenticated},
		{"another CA", newTestCA(t, "rogue CA").issueClient("spiffe://sar.test/sar/credential/" + opID), codes.Unavailable},
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

// startMTLSEnv starts a TLS server whose client CA bundle is a file
// holding clientCA, and returns it with the bundle's path.
func startMTLSEnv(t *testing.T, serverCA, clientCA *testCA, opts ...envOption) (*env, string) {
	t.Helper()
	caFile := tlstest.WriteFile(t, filepath.Join(t.TempDir(), "clients.pem"), clientCA.PEM())
	e, _ := startTLSEnv(t, serverCA, append([]envOption{func(c *app.Config) { c.TLSClientCAFile = caFile }}, opts...)...)
	return e, caFile
}

// TestClientCARotation: the client CA bundle is read again on ReloadTLS
// (SIGHUP): a certificate of the new CA gets in on a new connection, one
// of the removed CA is refused, and a watch stream opened with the old
// certificate before the rotation goes on; a bundle that does not load
// leaves the current one.
func TestClientCARotation(t *testing.T) {
	serverCA, oldCA, newCA := newTestCA(t, "server CA"), newTestCA(t, "old client CA"), newTestCA(t, "new client CA")
	e, caFile := startMTLSEnv(t, serverCA, oldCA)
	_, opID := auth.HashToken(e.operator("north"))
	oldCert, newCert := oldCA.issueClient(tlstest.CredentialURI(opID)), newCA.issueClient(tlstest.CredentialURI(opID))
	whoami := func(cert tls.Certificate) error {
		cc, ctx := certClient(t, e, serverCA, &cert)
		_, err := sarv1.NewAuthServiceClient(cc).WhoAmI(ctx, &sarv1.WhoAmIRequest{})
		return err
	}
	if err := whoami(newCert); status.Code(err) != codes.Unavailable {
		t.Errorf("a certificate of the new CA before the rotation: %v, want Unavailable (refused in the handshake)", err)
	}
	cc, ctx := certClient(t, e, serverCA, &oldCert)
	inc := sarv1.NewIncidentServiceClient(cc)
	created := must[*sarv1.CreateIncidentResponse](t, "CreateIncident")(inc.CreateIncident(ctx, &sarv1.CreateIncidentRequest{Title: "rotation",
		InitialPlanningPoint: &sarv1.PlanningPoint{Position: &sarv1.LatLng{Lat: 30.2458, Lng: 119.7156}}}))
	id := created.GetIncident().GetId()
	w := must[sarv1.IncidentService_WatchIncidentClient](t, "WatchIncident")(inc.WatchIncident(ctx, &sarv1.WatchIncidentRequest{IncidentId: id}))
	if m, err := w.Recv(); err != nil || m.GetSnapshot() == nil {
		t.Fatalf("watch by the old certificate: %v %v, want a snapshot", m, err)
	}

	tlstest.WriteFile(t, caFile, newCA.PEM())
	if err := e.app.ReloadTLS(); err != nil {
		t.Fatalf("ReloadTLS: %v", err)
	}
	if err := whoami(newCert); err != nil {
		t.Errorf("a certificate of the new CA after the rotation: %v", err)
	}
	if err := whoami(oldCert); status.Code(err) != codes.Unavailable {
		t.Errorf("a certificate of the removed CA after the rotation: %v, want Unavailable (refused in the handshake)", err)
	}
	// The stream opened before goes on: it sees the incident closed by
	// the new certificate.
	nc, nctx := certClient(t, e, serverCA, &newCert)
	if _, err := sarv1.NewIncidentServiceClient(nc).CloseIncident(nctx, &sarv1.CloseIncidentRequest{IncidentId: id,
		Outcome: sarv1.IncidentOutcome_INCIDENT_OUTCOME_FOUND_ALIVE}); err != nil {
		t.Fatalf("CloseIncident by the new certificate: %v", err)
	}
	if m, err := w.Recv(); err != nil || m.GetEvent() == nil {
		t.Errorf("the watch opened with the old certificate, after the rotation: %v %v, want the closing event", m, err)
	}

	tlstest.WriteFile(t, caFile, []byte("half a bundle"))
	if err := e.app.ReloadTLS(); err == nil {
		t.Error("ReloadTLS with a bundle without a certificate: no error")
	}
	if err := whoami(newCert); err != nil {
		t.Errorf("after a bundle that does not load: %v, want the new CA still trusted", err)
	}
}

// TestMutualTLSGateway: over HTTPS, a client certificate authenticates
// JSON calls as it does gRPC calls (same credential, role and scope,
// unary and streaming); one the client CAs did not sign, or naming a
// revoked credential, is refused; a token still wins over a certificate;
// the listener asks for a certificate, naming the client CAs, but
// requires none, so the share page opens with no certificate or a
// stranger's; and a changed bundle file applies without a reload call.
func TestMutualTLSGateway(t *testing.T) {
	serverCA, clientCA, rogueCA := newTestCA(t, "server CA"), newTestCA(t, "client CA"), newTestCA(t, "rogue CA")
	e, caFile := startMTLSEnv(t, serverCA, clientCA, func(c *app.Config) { c.TLSReloadInterval = 20 * time.Millisecond })
	e.createAgency("police-north", "north", sarv1.AgencyKind_AGENCY_KIND_POLICE_STATION)
	op := e.operator("north")
	_, opID := auth.HashToken(op)
	revoked := e.operator("north")
	_, revokedID := auth.HashToken(revoked)
	must[*sarv1.RevokeCredentialResponse](t, "RevokeCredential")(e.auth.RevokeCredential(e.as(e.admin), &sarv1.RevokeCredentialRequest{CredentialId: revokedID}))
	base := "https://" + e.app.HTTPAddr()

	// client sends cert (none if nil) whatever CAs the server names.
	client := func(cert *tls.Certificate) *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{ForceAttemptHTTP2: true, TLSClientConfig: &tls.Config{RootCAs: serverCA.pool(),
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				if cert == nil {
					return &tls.Certificate{}, nil
				}
				return cert, nil
			}}}}
	}
	do := func(c *http.Client, method, path, token, body string) (int, string) {
		t.Helper()
		req := must[*http.Request](t, "request")(http.NewRequest(method, base+path, strings.NewReader(body)))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	good := clientCA.issueClient(tlstest.CredentialURI(opID))
	byCert := client(&good)
	if code, body := do(byCert, "GET", "/v1/whoami", "", ""); code != http.StatusOK || !strings.Contains(body, opID) || !strings.Contains(body, "ROLE_OPERATOR") {
		t.Errorf("GET /v1/whoami by certificate: %d %s, want 200 with the operator credential %s", code, body, opID)
	}
	code, body := do(byCert, "POST", "/v1/incidents", "", `{"title":"by certificate","initialPlanningPoint":{"position":{"lat":30.2458,"lng":119.7156}}}`)
	var created struct{ Incident struct{ ID string } }
	if err := json.Unmarshal([]byte(body), &created); code != http.StatusOK || err != nil || created.Incident.ID == "" {
		t.Fatalf("POST /v1/incidents by certificate: %d %s", code, body)
	}
	if code, body := do(byCert, "POST", "/v1/credentials", "", `{"role":"ROLE_ADMIN","displayName":"x"}`); code != http.StatusForbidden {
		t.Errorf("POST /v1/credentials (admin) by the operator's certificate: %d %s, want 403", code, body)
	}
	if code, body := do(byCert, "GET", "/v1/incidents/"+created.Incident.ID, "", ""); code != http.StatusOK {
		t.Errorf("GET the incident by certificate: %d %s", code, body)
	}
	// A server stream over the gateway, on the certificate.
	req := must[*http.Request](t, "request")(http.NewRequest("GET", base+"/v1/incidents/"+created.Incident.ID+"/watch", nil))
	resp := must[*http.Response](t, "watch")(byCert.Do(req))
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || err != nil || !strings.Contains(line, `"snapshot"`) {
		t.Errorf("GET watch by certificate: %d %q %v, want a snapshot line", resp.StatusCode, line, err)
	}

	rogue := rogueCA.issueClient(tlstest.CredentialURI(opID))
	revokedCert := clientCA.issueClient(tlstest.CredentialURI(revokedID))
	noCert := client(nil)
	for _, tc := range []struct {
		name   string
		c      *http.Client
		token  string
		code   int
		reason string
	}{
		{"a certificate of another CA", client(&rogue), "", http.StatusUnauthorized, "CREDENTIAL_INVALID"},
		{"a certificate naming a revoked credential", client(&revokedCert), "", http.StatusUnauthorized, "CREDENTIAL_REVOKED"},
		{"a certificate naming no credential", client(ptr(clientCA.issueClient("spiffe://sar.test/workload/other"))), "", http.StatusUnauthorized, "CREDENTIAL_INVALID"},
		{"neither certificate nor token", noCert, "", http.StatusUnauthorized, "CREDENTIAL_REQUIRED"},
		{"a token without a certificate", noCert, op, http.StatusOK, opID},
		{"a token with another CA's certificate", client(&rogue), op, http.StatusOK, opID},
		{"a revoked token with a good certificate", byCert, revoked, http.StatusUnauthorized, "CREDENTIAL_REVOKED"},
	} {
		if code, body := do(tc.c, "GET", "/v1/whoami", tc.token, ""); code != tc.code || !strings.Contains(body, tc.reason) {
			t.Errorf("%s: %d %s, want %d with %s", tc.name, code, body, tc.code, tc.reason)
		}
	}
	// The share page needs no certificate, and a stranger's costs nothing.
	for name, c := range map[string]*http.Client{"no certificate": noCert, "another CA's certificate": client(&rogue)} {
		if code, _ := do(c, "GET", "/share", "", ""); code != http.StatusOK {
			t.Errorf("GET /share with %s: %d, want 200", name, code)
		}
	}
	// HTTP/1.1 alone (curl --http1.1, an older client) is still offered.
	if conn, err := tls.Dial("tcp", e.app.HTTPAddr(), &tls.Config{RootCAs: serverCA.pool(), NextProtos: []string{"http/1.1"}}); err != nil {
		t.Errorf("an HTTP/1.1 client: %v", err)
	} else {
		if p := conn.ConnectionState().NegotiatedProtocol; p != "http/1.1" {
			t.Errorf("an HTTP/1.1 client negotiated %q", p)
		}
		conn.Close()
	}
	if names := requestedCAs(t, e.app.HTTPAddr(), serverCA); len(names) != 1 || names[0] != "CN=client CA" {
		t.Errorf("the HTTP listener asks for certificates of %q, want the client CA only", names)
	}

	// The bundle file changes: the next connections follow it.
	tlstest.WriteFile(t, caFile, rogueCA.PEM())
	eventually(t, "the HTTP listener to name the new client CA", func() bool {
		names := requestedCAs(t, e.app.HTTPAddr(), serverCA)
		return len(names) == 1 && names[0] == "CN=rogue CA"
	})
	if code, body := do(client(&rogue), "GET", "/v1/whoami", "", ""); code != http.StatusOK || !strings.Contains(body, opID) {
		t.Errorf("a certificate of the CA now in the bundle: %d %s, want 200", code, body)
	}
	if code, body := do(client(&good), "GET", "/v1/whoami", "", ""); code != http.StatusUnauthorized {
		t.Errorf("a certificate of the CA taken out of the bundle, on a new connection: %d %s, want 401", code, body)
	}
	cc, ctx := certClient(t, e, serverCA, &rogue)
	if _, err := sarv1.NewAuthServiceClient(cc).WhoAmI(ctx, &sarv1.WhoAmIRequest{}); err != nil {
		t.Errorf("gRPC with a certificate of the CA now in the bundle: %v", err)
	}
}

func ptr[T any](v T) *T { return &v }

// requestedCAs are the CA names addr's TLS handshake asks a client
// certificate of (none: it asks for none); the handshake must offer
// HTTP/2.
func requestedCAs(t *testing.T, addr string, serverCA *testCA) []string {
	t.Helper()
	var names []string
	asked := false
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: serverCA.pool(), NextProtos: []string{"h2", "http/1.1"},
		GetClientCertificate: func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
			asked = true
			for _, raw := range cri.AcceptableCAs {
				var n pkix.RDNSequence
				if _, err := asn1.Unmarshal(raw, &n); err == nil {
					var name pkix.Name
					name.FillFromRDNSequence(&n)
					names = append(names, name.String())
				}
			}
			return &tls.Certificate{}, nil
		}})
	if err != nil {
		t.Fatalf("tls.Dial %s: %v", addr, err)
	}
	defer conn.Close()
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Errorf("%s negotiated %q, want h2 (HTTP/2 kept with mutual TLS on)", addr, p)
	}
	if !asked {
		return nil
	}
	return names
}
