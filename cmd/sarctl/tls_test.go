package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/mountain-sar/sar/internal/app"
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
