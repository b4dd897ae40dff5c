package app

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"
)

// TestNodeTLS: a Cluster node's certificate must chain to the configured
// CAs and name the node's own address or a seed host of --redis-url.
func TestNodeTLS(t *testing.T) {
	ca, caKey := testCert(t, nil, nil, "CA")
	other, _ := testCert(t, nil, nil, "other CA")
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	base := &tls.Config{ServerName: "r1.example", RootCAs: roots}
	seeds := []string{"r1.example:6380", "r2.example:6380"}
	for _, tc := range []struct {
		name   string
		host   string // the node's address as the cluster announces it
		names  []string
		signer *x509.Certificate
		want   string // "" to accept, else part of the error
	}{
		{"its own IP", "10.0.0.7", []string{"10.0.0.7"}, ca, ""},
		{"its own hostname", "r3.example", []string{"r3.example"}, ca, ""},
		{"a seed host", "10.0.0.7", []string{"r2.example"}, ca, ""},
		{"another node's name", "10.0.0.7", []string{"10.0.0.8", "r9.example"}, ca, "not the node's address 10.0.0.7 nor a host of --redis-url"},
		{"another CA", "10.0.0.7", []string{"10.0.0.7"}, other, "unknown authority"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			signerKey := caKey
			if tc.signer != ca {
				signerKey = nil // testCert makes a fresh self-signed issuer
			}
			leaf, _ := testCert(t, tc.signer, signerKey, "node", tc.names...)
			c := nodeTLS(base, tc.host, seeds)
			if tc.host == "r3.example" && c.ServerName != "r3.example" {
				t.Errorf("nodeTLS(%s).ServerName = %q, want the node's name for SNI", tc.host, c.ServerName)
			}
			err := c.VerifyConnection(tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}})
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("VerifyConnection = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("VerifyConnection = %v, want an error saying %q", err, tc.want)
			case tc.want != "" && !certRefused(err):
				t.Errorf("certRefused(%v) = false, want true (a final error at start)", err)
			}
		})
	}
	if base.InsecureSkipVerify || base.VerifyConnection != nil {
		t.Errorf("nodeTLS changed the configuration it was given")
	}
}

// testCert makes a certificate for names signed by parent (self-signed,
// a CA, when parent is nil or its key is).
func testCert(t *testing.T, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, cn string, names ...string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	if parent == nil || parentKey == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid, tmpl.KeyUsage = true, true, x509.KeyUsageCertSign|x509.KeyUsageDigitalSignature
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}
