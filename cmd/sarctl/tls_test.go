package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mountain-sar/sar/internal/app"
	"github.com/mountain-sar/sar/internal/auth"
	"github.com/mountain-sar/sar/internal/testenv"
	"github.com/mountain-sar/sar/internal/tlsutil"
)

// TestSelfSignedPin: sarctl reaches an embedded sard with a self-signed
// certificate when it pins the fingerprint sard printed, and refuses it
// otherwise, each time with a hint that says what to do.
func TestSelfSignedPin(t *testing.T) {
	cfg := app.Defaults()
	cfg.GRPCAddr, cfg.HTTPAddr, cfg.DataDir = "127.0.0.1:0", "127.0.0.1:0", t.TempDir()
	cfg.ShutdownTimeout = 5 * time.Second
	cfg.TLSSelfSigned = true
	a, err := app.Start(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("app.Start: %v", err)
	}
	t.Cleanup(func() { _ = a.Close() })
	fp := a.Embedded.TLSFingerprint
	if len(fp) != 95 {
		t.Fatalf("fingerprint %q, want 32 hex pairs", fp)
	}
	whoami := func(f tlsutil.Flags) (string, error) {
		g := &Globals{Addr: a.GRPCAddr(), Token: a.Embedded.AdminToken, Timeout: 5 * time.Second, Flags: f}
		var b bytes.Buffer
		err := whoamiCmd{}.Run(t.Context(), g, &b)
		return b.String(), err
	}
	if out, err := whoami(tlsutil.Flags{Pin: fp}); err != nil || !strings.Contains(out, "ROLE_ADMIN") {
		t.Errorf("pinned: %q, %v", out, err)
	}
	for _, tc := range []struct {
		name string
		f    tlsutil.Flags
		hint string
	}{
		{"system roots", tlsutil.Flags{TLS: true}, "not trusted"},
		{"another pin", tlsutil.Flags{Pin: strings.Repeat("AB:", 31) + "AB"}, "not trusted"},
		{"plaintext", tlsutil.Flags{}, "expect TLS"},
	} {
		_, err := whoami(tc.f)
		used, _ := tc.f.Client().UsesTLS(a.GRPCAddr())
		if err == nil || !strings.Contains(tlsutil.Hint(err, used), tc.hint) {
			t.Errorf("%s: %v (hint %q), want a refusal with a hint about %q", tc.name, err, tlsutil.Hint(err, used), tc.hint)
		}
	}
	if _, err := whoami(tlsutil.Flags{Insecure: true, Pin: fp}); err == nil {
		t.Error("--insecure with --tls-pin: no error")
	}
}

// TestClientCertificate: sarctl authenticates by a client certificate
// that names an operator credential, without a token.
func TestClientCertificate(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	srvCert, srvKey, err := tlsutil.NewSelfSigned([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "clients"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	caCert, _ := x509.ParseCertificate(caDER)

	s := &server{redis: testenv.StartRedis(t)}
	nats := testenv.StartNATS(t)
	s.admin, _, _ = auth.NewToken()
	cfg := app.Defaults()
	cfg.GRPCAddr, cfg.HTTPAddr, cfg.ShutdownTimeout = "127.0.0.1:0", "127.0.0.1:0", 5*time.Second
	cfg.RedisURL, cfg.NATSURL, cfg.AdminToken = s.redis.URL(), nats.URL(), s.admin
	cfg.TLSCertFile, cfg.TLSKeyFile = write("srv.crt", srvCert), write("srv.key", srvKey)
	cfg.TLSClientCAFile = write("clients.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}))
	a, err := app.Start(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("app.Start: %v", err)
	}
	t.Cleanup(func() { _ = a.Close() })
	admin := &Globals{Addr: a.GRPCAddr(), Token: s.admin, Timeout: 5 * time.Second, Flags: tlsutil.Flags{CAFile: write("srv.pem", srvCert)}}
	var out bytes.Buffer
	if err := (&credentialCreateCmd{Role: "operator", Jurisdiction: "north", Name: "north platform"}).Run(t.Context(), admin, &out); err != nil {
		t.Fatalf("credential create: %v", err)
	}
	var resp struct{ Token string }
	if err := json.Unmarshal(out.Bytes(), &resp); err != nil || resp.Token == "" {
		t.Fatalf("credential create printed %q", out.String())
	}
	_, id := auth.HashToken(resp.Token)

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse("spiffe://sar.test/sar/credential/" + id)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "north platform"}, URIs: []*url.URL{u},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	f := tlsutil.Flags{CAFile: admin.CAFile,
		CertFile: write("client.crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		KeyFile:  write("client.key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}))}
	out.Reset()
	if err := (whoamiCmd{}).Run(t.Context(), &Globals{Addr: a.GRPCAddr(), Timeout: 5 * time.Second, Flags: f}, &out); err != nil {
		t.Fatalf("whoami by certificate: %v", err)
	}
	if !strings.Contains(out.String(), id) || !strings.Contains(out.String(), "ROLE_OPERATOR") {
		t.Errorf("whoami by certificate printed %s, want the operator credential %s", out.String(), id)
	}
	f.CertFile, f.KeyFile = "", ""
	if err := (whoamiCmd{}).Run(t.Context(), &Globals{Addr: a.GRPCAddr(), Timeout: 5 * time.Second, Flags: f}, &out); err == nil {
		t.Error("whoami with neither certificate nor token: no error")
	}
}

// The bench's /metrics reads over https trust what its gRPC connections
// trust (--tls-ca-file, a pin), not only the system's roots.
func TestScrapeMetricsOverTLS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 12.5\n")
	}))
	defer srv.Close()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	page := srv.URL + "/metrics"

	m, err := scrapeMetrics(t.Context(), tlsutil.Client{CAPEM: ca}, page, metricCPU)
	if err != nil || m[metricCPU] != 12.5 {
		t.Fatalf("scrapeMetrics with the server's CA = %v, %v; want %s 12.5", m, err, metricCPU)
	}
	if _, err := scrapeMetrics(t.Context(), tlsutil.Client{}, page, metricCPU); err == nil {
		t.Error("scrapeMetrics of a self-signed page without its CA: no error")
	}
	// --insecure is about gRPC: an https page is still read over TLS.
	if _, err := scrapeMetrics(t.Context(), tlsutil.Client{CAPEM: ca, Insecure: true}, page, metricCPU); err != nil {
		t.Errorf("scrapeMetrics of an https page with --insecure set: %v", err)
	}
	pin := sha256.Sum256(srv.Certificate().Raw)
	if _, err := scrapeMetrics(t.Context(), tlsutil.Client{Pin: hex.EncodeToString(pin[:])}, page, metricCPU); err != nil {
		t.Errorf("scrapeMetrics with the certificate's pin: %v", err)
	}
}
