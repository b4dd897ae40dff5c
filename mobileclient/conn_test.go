package mobileclient

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/app"
	"github.com/mountain-sar/sar/internal/tlsutil"
	"github.com/mountain-sar/sar/internal/tlsutil/tlstest"
)

// whoami calls sard through c: WhoAmI answers the credential the token
// stands for.
func whoami(t *testing.T, c *Client) (*sarv1.WhoAmIResponse, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	return sarv1.NewAuthServiceClient(c.conn).WhoAmI(ctx, &sarv1.WhoAmIRequest{})
}

func mustNew(t *testing.T, addr string, cfg *Config) *Client {
	t.Helper()
	c, err := New(addr, cfg)
	if err != nil {
		t.Fatalf("New(%s, %+v): %v", addr, cfg, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestTLS: against sard serving TLS with a certificate of a CA made
// here, a Client trusting the CA bundle or the pinned public key calls
// with its token; another CA, another key, or the system's roots are
// refused in the handshake, with the reason.
func TestTLS(t *testing.T) {
	s := tlstest.StartSard(t)
	other := tlstest.NewCA(t, "another CA")
	otherCert, otherKey := other.Issue("127.0.0.1")
	otherLeaf := tlstest.Leaf(t, otherCert, otherKey)
	for _, tc := range []struct {
		name string
		cfg  Config
		want string // "" for accepted, else in the error
	}{
		{"the CA bundle", Config{CABundle: s.CA.PEM()}, ""},
		{"the pinned public key", Config{PinSPKI: tlsutil.SPKIHash(s.Leaf)}, ""},
		{"the pinned public key, HPKP style", Config{PinSPKI: "sha256/" + tlsutil.SPKIHash(s.Leaf)}, ""},
		{"the CA bundle and the pin", Config{CABundle: s.CA.PEM(), PinSPKI: tlsutil.SPKIHash(s.Leaf)}, ""},
		{"another CA", Config{CABundle: other.PEM()}, "certificate signed by unknown authority"},
		{"another public key", Config{PinSPKI: tlsutil.SPKIHash(otherLeaf)}, "not the pinned one"},
		{"the right CA but another public key", Config{CABundle: s.CA.PEM(), PinSPKI: tlsutil.SPKIHash(otherLeaf)}, "not the pinned one"},
		{"the system's roots", Config{TLS: true}, "certificate signed by unknown authority"},
	} {
		cfg := tc.cfg
		cfg.Token = s.Admin
		c := mustNew(t, s.GRPCAddr(), &cfg)
		resp, err := whoami(t, c)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want == "" && resp.GetPrincipal().GetRole() != sarv1.Role_ROLE_ADMIN:
			t.Errorf("%s: WhoAmI = %v, want the admin token's principal", tc.name, resp)
		case tc.want != "" && (status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want Unavailable saying %q", tc.name, err, tc.want)
		}
	}
	// Loopback is plaintext unless told: a TLS listener refuses it.
	if _, err := whoami(t, mustNew(t, s.GRPCAddr(), &Config{Token: s.Admin})); status.Code(err) != codes.Unavailable {
		t.Errorf("plaintext to the TLS listener: %v, want Unavailable", err)
	}
	// Without a token the call goes out without one.
	c := mustNew(t, s.GRPCAddr(), &Config{CABundle: s.CA.PEM()})
	if _, err := whoami(t, c); status.Code(err) != codes.Unauthenticated {
		t.Errorf("no token: %v, want Unauthenticated", err)
	}
	// Close: later calls fail at once.
	c = mustNew(t, s.GRPCAddr(), &Config{CABundle: s.CA.PEM(), Token: s.Admin})
	if _, err := whoami(t, c); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := whoami(t, c); status.Code(err) != codes.Canceled {
		t.Errorf("a call after Close: %v, want Canceled", err)
	}
}

// TestPlaintextRemote: to sard in plaintext on an address that is not
// loopback (behind a proxy on a trusted network), a Client speaks TLS and
// fails unless Insecure says otherwise; with Insecure it connects, but a
// token is refused before anything is sent.
func TestPlaintextRemote(t *testing.T) {
	s := tlstest.StartPlaintextRemoteSard(t)
	if _, err := whoami(t, mustNew(t, s.GRPCAddr(), &Config{})); status.Code(err) != codes.Unavailable ||
		!strings.Contains(err.Error(), "does not look like a TLS handshake") {
		t.Errorf("TLS to a plaintext server: %v, want Unavailable from the handshake", err)
	}
	if _, err := New(s.GRPCAddr(), &Config{Insecure: true, Token: s.Admin}); !errors.Is(err, ErrTokenInPlaintext) {
		t.Errorf("a token in plaintext to %s: %v, want ErrTokenInPlaintext", s.GRPCAddr(), err)
	}
	if _, err := whoami(t, mustNew(t, s.GRPCAddr(), &Config{Insecure: true})); status.Code(err) != codes.Unauthenticated {
		t.Errorf("Insecure without a token: %v, want Unauthenticated (the call got through, without a credential)", err)
	}
}

// TestPlaintextLoopback: sard on this device's loopback in plaintext (an
// embedded demo) is reached without TLS, token included.
func TestPlaintextLoopback(t *testing.T) {
	s := tlstest.StartSard(t, func(c *app.Config) { c.TLSCertFile, c.TLSKeyFile = "", "" })
	if resp, err := whoami(t, mustNew(t, s.GRPCAddr(), &Config{Token: s.Admin})); err != nil || resp.GetPrincipal().GetRole() != sarv1.Role_ROLE_ADMIN {
		t.Errorf("plaintext to loopback: %v, %v; want the admin principal", resp, err)
	}
}

// TestNewRefuses: settings that cannot work are refused before any
// connection, each with its reason.
func TestNewRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		addr string
		cfg  Config
		want string
	}{
		{"no port", "sar.example.org", Config{}, "host:port"},
		{"no host", ":443", Config{}, "host:port"},
		{"insecure with a CA bundle", "sar.example.org:443", Config{Insecure: true, CABundle: []byte("x")}, "contradicts"},
		{"insecure with a pin", "sar.example.org:443", Config{Insecure: true, PinSPKI: "x"}, "contradicts"},
		{"a CA bundle without a certificate", "sar.example.org:443", Config{CABundle: []byte("not PEM")}, "no PEM certificate"},
		{"a short pin", "sar.example.org:443", Config{PinSPKI: "c2hvcnQ="}, "public key pin"},
		{"a token in plaintext", "192.0.2.1:50051", Config{Insecure: true, Token: "sar_x"}, "refusing to send the token in plaintext"},
	} {
		c, err := New(tc.addr, &tc.cfg)
		if err == nil {
			_ = c.Close()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "mobileclient: ") {
			t.Errorf("%s: %v, want a mobileclient error saying %q", tc.name, err, tc.want)
		}
	}
	c, err := New("192.0.2.1:50051", nil) // no network needed: the connection is lazy
	if err != nil {
		t.Fatalf("New with defaults: %v", err)
	}
	_ = c.Close()
}

// TestKeepaliveAccepted: the client pings no more often than sard
// accepts (its keepalive enforcement, server/server.go: MinTime 10 s);
// more often and sard would close the phone's connection.
func TestKeepaliveAccepted(t *testing.T) {
	if keepaliveTime < 10*time.Second || keepaliveTimeout >= keepaliveTime || backoffMax < backoffBase {
		t.Errorf("keepalive %v (timeout %v), backoff %v..%v: want pings at least 10 s apart and a sane backoff",
			keepaliveTime, keepaliveTimeout, backoffBase, backoffMax)
	}
}
