package tlsutil

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func parsePEM(t *testing.T, b []byte) *x509.Certificate {
	t.Helper()
	blk, _ := pem.Decode(b)
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func write(t *testing.T, name string, b []byte) {
	t.Helper()
	if err := writeFile(name, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestCertReloaderWatch: a changed pair is picked up by Watch; a pair
// that does not load leaves the current one.
func TestCertReloaderWatch(t *testing.T) {
	dir := t.TempDir()
	cf, kf := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	c1, k1, _ := NewSelfSigned([]string{"one.test"}, time.Hour)
	write(t, cf, c1)
	write(t, kf, k1)
	r, err := NewCertReloader(cf, kf, quiet())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Watch(ctx, 20*time.Millisecond)
	wait := func(name string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for r.Leaf().Subject.CommonName == "" || r.Leaf().VerifyHostname(name) != nil {
			if time.Now().After(deadline) {
				t.Fatalf("still serving %v, want %s", r.Leaf().DNSNames, name)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	wait("one.test")
	c2, k2, _ := NewSelfSigned([]string{"two.test"}, time.Hour)
	write(t, kf, k2)
	write(t, cf, c2)
	wait("two.test")

	c3, _, _ := NewSelfSigned([]string{"three.test"}, time.Hour)
	write(t, cf, c3) // the old key: a mismatch
	if _, err := r.Reload(); err == nil {
		t.Error("a certificate with another key's file loaded")
	}
	time.Sleep(100 * time.Millisecond)
	if r.Leaf().VerifyHostname("two.test") != nil {
		t.Errorf("after a bad pair, serving %v, want still two.test", r.Leaf().DNSNames)
	}
	if _, err := NewCertReloader(cf, kf, quiet()); err == nil {
		t.Error("NewCertReloader with a mismatched pair: no error")
	}
	if _, err := NewCertReloader(cf, "", quiet()); err == nil {
		t.Error("NewCertReloader without a key: no error")
	}
}

func TestUsesTLS(t *testing.T) {
	for _, tc := range []struct {
		c    Client
		addr string
		tls  bool
		err  bool
	}{
		{Client{}, "127.0.0.1:50051", false, false},
		{Client{}, "localhost:50051", false, false},
		{Client{}, "[::1]:50051", false, false},
		{Client{}, "sar.example.org:443", true, false},
		{Client{}, "10.0.0.5:50051", true, false},
		{Client{}, "localhost.example.org:1", true, false},
		{Client{Insecure: true}, "10.0.0.5:50051", false, false},
		{Client{TLS: true}, "127.0.0.1:50051", true, false},
		{Client{Pin: "ab"}, "127.0.0.1:50051", true, false},
		{Client{Insecure: true, CAFile: "ca.pem"}, "10.0.0.5:1", false, true},
	} {
		got, err := tc.c.UsesTLS(tc.addr)
		if got != tc.tls || (err != nil) != tc.err {
			t.Errorf("%+v to %s: TLS %v, err %v; want %v, error %v", tc.c, tc.addr, got, err, tc.tls, tc.err)
		}
	}
}

// serveTLS serves the pair on loopback (handshakes only) and returns a
// function that makes a TLS handshake with it as cl says.
func serveTLS(t *testing.T, certPEM, keyPEM []byte) func(cl Client) error {
	t.Helper()
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			_ = conn.(*tls.Conn).Handshake()
			conn.Close()
		}
	}()
	return func(cl Client) error {
		cfg, err := cl.Config(l.Addr().String())
		if err != nil {
			return err
		}
		conn, err := tls.Dial("tcp", l.Addr().String(), cfg)
		if err == nil {
			conn.Close()
		}
		return err
	}
}

// TestPin: a pinned certificate is accepted without a CA; another one is
// refused, and so is a bad pin.
func TestPin(t *testing.T) {
	c, k, _ := NewSelfSigned([]string{"127.0.0.1"}, time.Hour)
	other, _, _ := NewSelfSigned([]string{"127.0.0.1"}, time.Hour)
	dial := serveTLS(t, c, k)
	if err := dial(Client{Pin: Fingerprint(parsePEM(t, c))}); err != nil {
		t.Errorf("the pinned certificate: %v", err)
	}
	lower := strings.ToLower(strings.ReplaceAll(Fingerprint(parsePEM(t, c)), ":", ""))
	if err := dial(Client{Pin: "sha256:" + lower}); err != nil {
		t.Errorf("the pin in lower case without colons: %v", err)
	}
	if err := dial(Client{Pin: Fingerprint(parsePEM(t, other))}); err == nil || !strings.Contains(err.Error(), "not the pinned one") {
		t.Errorf("another certificate than the pinned one: %v", err)
	}
	if err := dial(Client{TLS: true}); err == nil {
		t.Error("a self-signed certificate without a pin or CA was accepted")
	}
	if err := dial(Client{Pin: "12:34"}); err == nil {
		t.Error("a short pin was accepted")
	}
	ca := filepath.Join(t.TempDir(), "ca.pem")
	write(t, ca, c)
	if err := dial(Client{CAFile: ca}); err != nil {
		t.Errorf("the certificate as its own CA: %v", err)
	}
}

// TestSelfSigned: the pair is kept across starts while it covers the hosts.
func TestSelfSigned(t *testing.T) {
	dir := t.TempDir()
	cf, kf, made, err := SelfSigned(dir, []string{"localhost", "127.0.0.1"})
	if err != nil || !made {
		t.Fatalf("first: made %v, %v", made, err)
	}
	if fi, err := os.Stat(kf); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, %v; want 0600", fi.Mode(), err)
	}
	first, _ := os.ReadFile(cf)
	if _, _, made, _ := SelfSigned(dir, []string{"localhost"}); made {
		t.Error("a valid pair covering the hosts was replaced")
	}
	if _, _, made, _ := SelfSigned(dir, []string{"localhost", "192.0.2.1"}); !made {
		t.Error("a pair that misses a host was kept")
	}
	again, _ := os.ReadFile(cf)
	if string(again) == string(first) {
		t.Error("the certificate file did not change")
	}
	leaf := parsePEM(t, again)
	if leaf.VerifyHostname("192.0.2.1") != nil || leaf.VerifyHostname("localhost") != nil {
		t.Errorf("the new certificate names %v %v", leaf.DNSNames, leaf.IPAddresses)
	}
	if !IsLoopback("[::1]:1") || IsLoopback(net.JoinHostPort("192.0.2.1", "1")) {
		t.Error("IsLoopback")
	}
}

// TestPublicKeyPinAndCABytes: a pinned public key, and a CA bundle given
// as bytes, are each accepted for the server that matches and refused
// for another.
func TestPublicKeyPinAndCABytes(t *testing.T) {
	c, k, _ := NewSelfSigned([]string{"127.0.0.1"}, time.Hour)
	other, _, _ := NewSelfSigned([]string{"127.0.0.1"}, time.Hour)
	dial := serveTLS(t, c, k)
	leaf := parsePEM(t, c)
	for _, pin := range []string{SPKIHash(leaf), "sha256/" + SPKIHash(leaf), hexOf(t, SPKIHash(leaf))} {
		if err := dial(Client{SPKIPin: pin}); err != nil {
			t.Errorf("the pinned public key as %q: %v", pin, err)
		}
	}
	if err := dial(Client{SPKIPin: SPKIHash(parsePEM(t, other))}); err == nil || !strings.Contains(err.Error(), "public key") {
		t.Errorf("another public key than the pinned one: %v", err)
	}
	if err := dial(Client{SPKIPin: "c2hvcnQ="}); err == nil {
		t.Error("a short public key pin was accepted")
	}
	if err := dial(Client{CAPEM: c}); err != nil {
		t.Errorf("the certificate as its own CA, as bytes: %v", err)
	}
	if err := dial(Client{CAPEM: other}); err == nil {
		t.Error("a CA bundle of another certificate was accepted")
	}
	if err := dial(Client{CAPEM: []byte("not PEM")}); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("a CA bundle without a certificate: %v", err)
	}
	if _, err := (Client{Insecure: true, SPKIPin: SPKIHash(leaf)}).UsesTLS("192.0.2.1:1"); err != ErrInsecureContradicts {
		t.Errorf("insecure with a public key pin: %v, want ErrInsecureContradicts", err)
	}
}

func hexOf(t *testing.T, b64 string) string {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// TestCAReloader: a changed bundle is picked up by Reload and by Watch;
// one without a certificate leaves the current pool.
func TestCAReloader(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "clients.pem")
	c1, _, _ := NewSelfSigned([]string{"one.test"}, time.Hour)
	c2, _, _ := NewSelfSigned([]string{"two.test"}, time.Hour)
	write(t, f, c1)
	r, err := NewCAReloader(f, quiet())
	if err != nil {
		t.Fatal(err)
	}
	trusts := func(c []byte) bool {
		_, err := parsePEM(t, c).Verify(x509.VerifyOptions{Roots: r.Pool(), DNSName: parsePEM(t, c).DNSNames[0]})
		return err == nil
	}
	if !trusts(c1) || trusts(c2) {
		t.Fatalf("the first bundle: trusts one %v, two %v; want true, false", trusts(c1), trusts(c2))
	}
	write(t, f, c2)
	if changed, err := r.Reload(); !changed || err != nil {
		t.Fatalf("Reload after a change: %v, %v", changed, err)
	}
	if trusts(c1) || !trusts(c2) {
		t.Errorf("after the reload: trusts one %v, two %v; want false, true", trusts(c1), trusts(c2))
	}
	if changed, err := r.Reload(); changed || err != nil {
		t.Errorf("Reload without a change: %v, %v", changed, err)
	}
	write(t, f, []byte("half a bundle"))
	if _, err := r.Reload(); err == nil {
		t.Error("a bundle without a certificate loaded")
	}
	if !trusts(c2) {
		t.Error("after a bad bundle the pool changed")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Watch(ctx, 20*time.Millisecond)
	write(t, f, append(append([]byte{}, c1...), c2...))
	deadline := time.Now().Add(5 * time.Second)
	for !trusts(c1) {
		if time.Now().After(deadline) {
			t.Fatal("Watch did not load the changed bundle")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !trusts(c2) {
		t.Error("the bundle of both does not trust two")
	}
	if _, err := NewCAReloader(filepath.Join(dir, "missing.pem"), quiet()); err == nil {
		t.Error("NewCAReloader of a missing file: no error")
	}
}
