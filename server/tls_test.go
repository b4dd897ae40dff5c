package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/app"
	"github.com/mountain-sar/sar/internal/tlsutil/tlstest"
)

// testCA is a certificate authority made for one test (tlstest.CA under
// the names this package's tests use).
type testCA struct {
	*tlstest.CA
	t    *testing.T
	cert *x509.Certificate
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	ca := tlstest.NewCA(t, name)
	return &testCA{CA: ca, t: t, cert: ca.Cert}
}

func (ca *testCA) pool() *x509.CertPool { return ca.Pool() }

// issue makes a server certificate for hosts and returns it and its key
// as PEM.
func (ca *testCA) issue(serial int64, hosts ...string) (certPEM, keyPEM []byte) {
	ca.t.Helper()
	return ca.IssueSerial(serial, hosts...)
}

// certFiles writes a certificate and key where sard reads them.
type certFiles struct{ cert, key string }

func writeCert(t *testing.T, f certFiles, certPEM, keyPEM []byte) {
	t.Helper()
	tlstest.WriteFile(t, f.key, keyPEM) // the key first: sard never sees a new certificate with the old key
	tlstest.WriteFile(t, f.cert, certPEM)
}

// startTLSEnv starts a server whose listeners serve a certificate of ca
// for 127.0.0.1 and localhost (serial 100), with gRPC clients that trust
// ca.
func startTLSEnv(t *testing.T, ca *testCA, opts ...envOption) (*env, certFiles) {
	t.Helper()
	dir := t.TempDir()
	f := certFiles{filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")}
	c, k := ca.issue(100, "127.0.0.1", "localhost")
	writeCert(t, f, c, k)
	e := startEnv(t, append([]envOption{func(c *app.Config) {
		c.TLSCertFile, c.TLSKeyFile = f.cert, f.key
		c.TLSReloadInterval = time.Hour // reloads in these tests are asked for (ReloadTLS), not waited for
	}}, opts...)...)
	e.conn = must[*grpc.ClientConn](t, "grpc.NewClient")(grpc.NewClient(e.app.GRPCAddr(),
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: ca.pool()}))))
	conn := e.conn
	t.Cleanup(func() { _ = conn.Close() })
	e.auth = sarv1.NewAuthServiceClient(e.conn)
	e.agency = sarv1.NewAgencyServiceClient(e.conn)
	e.inc = sarv1.NewIncidentServiceClient(e.conn)
	e.loc = sarv1.NewLocationServiceClient(e.conn)
	return e, f
}

func httpsClient(roots *x509.CertPool) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true}}
}

func get(t *testing.T, c *http.Client, url, token string) (*http.Response, string, error) {
	t.Helper()
	req := must[*http.Request](t, "request")(http.NewRequest(http.MethodGet, url, nil))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b), nil
}

// TestTLSListeners: with a certificate, gRPC and HTTPS (JSON API and
// pages, HTTP/2) work for a client that trusts its CA, share links start
// with https, the pages carry HSTS; plaintext, an untrusted CA and TLS 1.1
// are refused.
func TestTLSListeners(t *testing.T) {
	ca := newTestCA(t, "test CA")
	e, _ := startTLSEnv(t, ca)
	ctx := e.as(e.admin)

	if p := must[*sarv1.WhoAmIResponse](t, "WhoAmI over TLS")(e.auth.WhoAmI(ctx, &sarv1.WhoAmIRequest{})); p.GetPrincipal().GetRole() != sarv1.Role_ROLE_ADMIN {
		t.Errorf("WhoAmI over TLS: %v", p)
	}
	op := e.operator("north")
	inc := e.createIncident(op)
	link := must[*sarv1.CreateShareLinkResponse](t, "CreateShareLink")(e.auth.CreateShareLink(e.as(op),
		&sarv1.CreateShareLinkRequest{IncidentId: inc.GetId()}))
	if want := "https://" + e.app.HTTPAddr() + "/share#"; !strings.HasPrefix(link.GetUrl(), want) {
		t.Errorf("share link %q, want it to start with %q (TLS on, no --public-url)", link.GetUrl(), want)
	}

	base := "https://" + e.app.HTTPAddr()
	c := httpsClient(ca.pool())
	resp, body, err := get(t, c, base+"/v1/whoami", op)
	if err != nil {
		t.Fatalf("GET /v1/whoami over HTTPS: %v", err)
	}
	if resp.StatusCode != 200 || !strings.Contains(body, "ROLE_OPERATOR") {
		t.Errorf("GET /v1/whoami over HTTPS: %d %s", resp.StatusCode, body)
	}
	if resp.Proto != "HTTP/2.0" {
		t.Errorf("HTTPS protocol %s, want HTTP/2.0 (ALPN)", resp.Proto)
	}
	for _, path := range []string{"/share", "/v1/whoami"} {
		resp, _, err := get(t, c, base+path, op)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		if h := resp.Header.Get("Strict-Transport-Security"); !strings.HasPrefix(h, "max-age=31536000") {
			t.Errorf("GET %s over HTTPS: Strict-Transport-Security %q, want max-age of a year", path, h)
		}
		if resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
			t.Errorf("GET %s: TLS state %v", path, resp.TLS)
		}
	}

	// Plaintext to the TLS listeners.
	plain := must[*grpc.ClientConn](t, "plaintext client")(grpc.NewClient(e.app.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials())))
	defer plain.Close()
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := sarv1.NewAuthServiceClient(plain).WhoAmI(qctx, &sarv1.WhoAmIRequest{}); status.Code(err) != codes.Unavailable {
		t.Errorf("plaintext gRPC to the TLS listener: %v, want Unavailable", err)
	}
	if resp, _, err := get(t, &http.Client{Timeout: 5 * time.Second}, "http://"+e.app.HTTPAddr()+"/v1/whoami", op); err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Errorf("plain HTTP to the TLS listener: %v %v, want 400 (an HTTP request to an HTTPS server)", resp, err)
	}

	// A client that trusts another CA refuses the server.
	other := newTestCA(t, "another CA")
	untrusted := must[*grpc.ClientConn](t, "client")(grpc.NewClient(e.app.GRPCAddr(),
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: other.pool()}))))
	defer untrusted.Close()
	_, err = sarv1.NewAuthServiceClient(untrusted).WhoAmI(qctx, &sarv1.WhoAmIRequest{})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Errorf("gRPC with an untrusted CA: %v, want Unavailable for an unknown authority", err)
	}
	var uerr x509.UnknownAuthorityError
	if _, _, err := get(t, httpsClient(other.pool()), base+"/healthz", ""); !errors.As(err, &uerr) {
		t.Errorf("HTTPS with an untrusted CA: %v, want x509.UnknownAuthorityError", err)
	}

	// TLS 1.1 is refused.
	for _, addr := range []string{e.app.GRPCAddr(), e.app.HTTPAddr()} {
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.pool(), MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
		if err == nil {
			conn.Close()
			t.Errorf("%s: a TLS 1.1 handshake succeeded", addr)
		}
	}
}

// served is the serial number of the certificate a new connection to
// addr gets.
func served(t *testing.T, addr string, roots *x509.CertPool) int64 {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatalf("tls.Dial %s: %v", addr, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// TestTLSCertificateRotation: a new certificate (from a new CA, as when a
// provider changes) is served to new connections after a reload, while a
// device stream opened before it goes on; files that do not load leave
// the current certificate in place.
func TestTLSCertificateRotation(t *testing.T) {
	oldCA, newCA := newTestCA(t, "old CA"), newTestCA(t, "new CA")
	e, files := startTLSEnv(t, oldCA)
	roots := oldCA.pool()
	roots.AddCert(newCA.cert)
	op, officer, inc := e.officerOnIncident()
	dev := e.openDevice(officer, inc.GetId(), "phone")
	fixes := walk(1, 3, time.Now())
	if a := dev.send(fixes[0]); !equalSeqs(a.GetStored(), seqs(1)) {
		t.Fatalf("first batch: %v", a)
	}
	for _, addr := range []string{e.app.GRPCAddr(), e.app.HTTPAddr()} {
		if s := served(t, addr, roots); s != 100 {
			t.Fatalf("%s serves serial %d, want 100", addr, s)
		}
	}

	c, k := newCA.issue(200, "127.0.0.1", "localhost")
	writeCert(t, files, c, k)
	if err := e.app.ReloadTLS(); err != nil {
		t.Fatalf("ReloadTLS: %v", err)
	}
	for _, addr := range []string{e.app.GRPCAddr(), e.app.HTTPAddr()} {
		if s := served(t, addr, roots); s != 200 {
			t.Errorf("after the reload %s serves serial %d, want 200", addr, s)
		}
	}
	if a := dev.send(fixes[1]); !equalSeqs(a.GetStored(), seqs(2)) {
		t.Errorf("the stream opened before the rotation: %v", a)
	}
	// A client that trusts only the new CA now gets in.
	fresh := must[*grpc.ClientConn](t, "client")(grpc.NewClient(e.app.GRPCAddr(),
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: newCA.pool()}))))
	defer fresh.Close()
	if _, err := sarv1.NewAuthServiceClient(fresh).WhoAmI(e.as(op), &sarv1.WhoAmIRequest{}); err != nil {
		t.Errorf("a client of the new CA after the rotation: %v", err)
	}

	// A key that does not match the certificate: refused, the current
	// certificate stays.
	c3, _ := newCA.issue(300, "127.0.0.1")
	writeCert(t, files, c3, k)
	if err := e.app.ReloadTLS(); err == nil {
		t.Error("ReloadTLS with a mismatched key: no error")
	}
	if s := served(t, e.app.HTTPAddr(), roots); s != 200 {
		t.Errorf("after a failed reload the server serves serial %d, want still 200", s)
	}
	if a := dev.send(fixes[2]); !equalSeqs(a.GetStored(), seqs(3)) {
		t.Errorf("the stream after a failed reload: %v", a)
	}
}

// TestTransportRefusals: settings that would leave a door open, or that
// contradict each other, stop the start with a reason.
func TestTransportRefusals(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		set  func(*app.Config)
		want string
	}{
		{"plaintext off loopback", func(c *app.Config) { c.HTTPAddr = "0.0.0.0:0" }, "refusing plaintext on 0.0.0.0:0"},
		{"plaintext on all addresses", func(c *app.Config) { c.GRPCAddr = ":0" }, "refusing plaintext on :0"},
		{"a certificate without a key", func(c *app.Config) { c.TLSCertFile = "x.crt" }, "both --tls-cert and --tls-key"},
		{"missing files", func(c *app.Config) { c.TLSCertFile, c.TLSKeyFile = dir+"/no.crt", dir+"/no.key" }, "no such file"},
		{"self-signed and files", func(c *app.Config) { c.TLSCertFile, c.TLSKeyFile, c.TLSSelfSigned = "a", "b", true }, "choose one"},
		{"self-signed in production", func(c *app.Config) {
			c.TLSSelfSigned, c.RedisURL, c.NATSURL = true, "redis://127.0.0.1:1", "nats://127.0.0.1:1"
		}, "embedded-mode demo only"},
		{"trusting everyone", func(c *app.Config) { c.TrustedProxies = []string{"0.0.0.0/0"} }, "trusts every address"},
		{"a proxy by name", func(c *app.Config) { c.TrustedProxies = []string{"proxy.example.org"} }, "neither a CIDR nor an address"},
	} {
		cfg := app.Defaults()
		cfg.GRPCAddr, cfg.HTTPAddr, cfg.DataDir = "127.0.0.1:0", "127.0.0.1:0", t.TempDir()
		tc.set(&cfg)
		a, err := app.Start(t.Context(), cfg, testLogger(t))
		if err == nil {
			_ = a.Close()
			t.Errorf("%s: started", tc.name)
		} else if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want it to say %q", tc.name, err, tc.want)
		}
	}
}
