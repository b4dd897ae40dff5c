// Package tlstest makes what tests of transport security need: a
// certificate authority of their own, server and client certificates it
// signs (crypto/x509, nothing from the machine), files written the way
// renewal tools write them, and a whole sard serving TLS on real Redis and
// NATS for clients in other packages (sarsim, mobileclient).
package tlstest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mountain-sar/sar/internal/app"
	"github.com/mountain-sar/sar/internal/auth"
	"github.com/mountain-sar/sar/internal/testenv"
	"github.com/mountain-sar/sar/internal/tlsutil"
)

// CA is a certificate authority made for one test.
type CA struct {
	tb     testing.TB
	Cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	serial atomic.Int64
}

// NewCA makes a CA named name, valid from an hour ago for an hour.
func NewCA(tb testing.TB, name string) *CA {
	tb.Helper()
	key := mustKey(tb)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatalf("tlstest: CA: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatalf("tlstest: CA: %v", err)
	}
	ca := &CA{tb: tb, Cert: cert, key: key}
	ca.serial.Store(1000) // chosen serials (IssueSerial) stay below
	return ca
}

// Pool is a pool of this CA alone.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// PEM is the CA's certificate as PEM: a CA bundle.
func (ca *CA) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

// Issue makes a server certificate for hosts (names and IP addresses)
// and returns it and its key as PEM.
func (ca *CA) Issue(hosts ...string) (certPEM, keyPEM []byte) {
	ca.tb.Helper()
	return ca.IssueSerial(ca.serial.Add(1), hosts...)
}

// IssueSerial is Issue with a chosen serial number (a test tells
// certificates apart by it).
func (ca *CA) IssueSerial(serial int64, hosts ...string) (certPEM, keyPEM []byte) {
	ca.tb.Helper()
	return ca.issueHost(serial, hosts, x509.ExtKeyUsageServerAuth)
}

// IssueNode makes a certificate for a server that is also its peers'
// client (a Redis Cluster node shows it on the cluster bus): server and
// client authentication, for hosts.
func (ca *CA) IssueNode(hosts ...string) (certPEM, keyPEM []byte) {
	ca.tb.Helper()
	return ca.issueHost(ca.serial.Add(1), hosts, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)
}

func (ca *CA) issueHost(serial int64, hosts []string, usage ...x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
	ca.tb.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: hosts[0]}, ExtKeyUsage: usage}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return ca.sign(tmpl)
}

// IssueClient makes a client certificate whose URI SANs are uris (sard
// maps spiffe://<domain>/sar/credential/<id> to a credential) and returns
// it and its key as PEM.
func (ca *CA) IssueClient(uris ...string) (certPEM, keyPEM []byte) {
	ca.tb.Helper()
	tmpl := &x509.Certificate{Subject: pkix.Name{CommonName: "agency system"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	for _, s := range uris {
		u, err := url.Parse(s)
		if err != nil {
			ca.tb.Fatalf("tlstest: URI %q: %v", s, err)
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	tmpl.SerialNumber = big.NewInt(ca.serial.Add(1))
	return ca.sign(tmpl)
}

// ClientCert is IssueClient as a tls.Certificate.
func (ca *CA) ClientCert(uris ...string) tls.Certificate {
	ca.tb.Helper()
	c, err := tls.X509KeyPair(ca.IssueClient(uris...))
	if err != nil {
		ca.tb.Fatalf("tlstest: client certificate: %v", err)
	}
	return c
}

// Leaf parses a PEM certificate and key pair's certificate.
func Leaf(tb testing.TB, certPEM, keyPEM []byte) *x509.Certificate {
	tb.Helper()
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		tb.Fatalf("tlstest: %v", err)
	}
	return pair.Leaf
}

// CredentialURI is the URI SAN that names credential id to sard.
func CredentialURI(id string) string { return "spiffe://sar.test/sar/credential/" + id }

func (ca *CA) sign(tmpl *x509.Certificate) (certPEM, keyPEM []byte) {
	ca.tb.Helper()
	key := mustKey(ca.tb)
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		ca.tb.Fatalf("tlstest: certificate: %v", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		ca.tb.Fatalf("tlstest: key: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

func mustKey(tb testing.TB) *ecdsa.PrivateKey {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatalf("tlstest: key: %v", err)
	}
	return key
}

// WriteFile writes b to name through a rename, as renewal tools do, so
// that sard never reads half a file; it returns name.
func WriteFile(tb testing.TB, name string, b []byte) string {
	tb.Helper()
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp, name); err != nil {
		tb.Fatal(err)
	}
	return name
}

// Sard is a whole sard serving TLS with a certificate of CA for
// 127.0.0.1 and localhost, on its own redis-server and NATS.
type Sard struct {
	*app.App
	CA     *CA
	Admin  string            // the admin token
	CAFile string            // CA's certificate, as a file for clients' --tls-ca-file
	Leaf   *x509.Certificate // the certificate sard serves (pins are made of it)
	Dir    string            // where the certificate files are
}

// StartSard starts a Sard; set changes its configuration before the
// start (addresses, client CAs, timings). It stops at the test's end.
func StartSard(tb testing.TB, set ...func(*app.Config)) *Sard {
	tb.Helper()
	s := &Sard{CA: NewCA(tb, "sard test CA"), Dir: tb.TempDir()}
	c, k := s.CA.Issue("127.0.0.1", "localhost")
	s.Leaf = Leaf(tb, c, k)
	s.CAFile = WriteFile(tb, filepath.Join(s.Dir, "ca.pem"), s.CA.PEM())
	rdb, nats := testenv.StartRedis(tb), testenv.StartNATS(tb)
	s.Admin, _, _ = auth.NewToken()
	cfg := app.Defaults()
	cfg.GRPCAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.RedisURL, cfg.NATSURL, cfg.AdminToken = rdb.URL(), nats.URL(), s.Admin
	cfg.TLSCertFile = WriteFile(tb, filepath.Join(s.Dir, "tls.crt"), c)
	cfg.TLSKeyFile = WriteFile(tb, filepath.Join(s.Dir, "tls.key"), k)
	cfg.ShutdownTimeout = 5 * time.Second
	for _, f := range set {
		f(&cfg)
	}
	a, err := app.Start(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		tb.Fatalf("app.Start: %v", err)
	}
	tb.Cleanup(func() { _ = a.Close() })
	s.App = a
	return s
}

// StartPlaintextRemoteSard starts a Sard in plaintext on an address of
// this machine that is not loopback, as behind a TLS-terminating proxy
// (--plaintext-behind-proxy): what clients must not reach in plaintext
// unless told. The test is skipped on a machine with no such address.
func StartPlaintextRemoteSard(tb testing.TB) *Sard {
	tb.Helper()
	var host string
	for _, h := range tlsutil.LocalHosts() {
		if ip := net.ParseIP(h); ip != nil && ip.To4() != nil && !ip.IsLoopback() {
			host = h
			break
		}
	}
	if host == "" {
		tb.Skip("this machine has no IPv4 address but loopback")
	}
	return StartSard(tb, func(c *app.Config) {
		c.TLSCertFile, c.TLSKeyFile, c.PlaintextBehindProxy = "", "", true
		c.GRPCAddr, c.HTTPAddr = net.JoinHostPort(host, "0"), net.JoinHostPort(host, "0")
	})
}
