package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mountain-sar/sar/internal/tlsutil"
	"github.com/mountain-sar/sar/internal/tlsutil/tlstest"
)

// shortDrill is a drill of one team of one phone, a few seconds long.
func shortDrill(addr, httpAddr, token string, c tlsutil.Client) drillOptions {
	return drillOptions{Addr: addr, HTTPAddr: httpAddr, TLS: c, Token: token, Timeout: 10 * time.Second,
		Jurisdiction: "valley", Teams: 1, RescuersPerTeam: 1, Duration: 2 * time.Second, Speedup: 60,
		FixInterval: time.Second, BatchInterval: 10 * time.Second, Seed: 5, Lat: 46.5935, Lng: 7.9091,
		CallerAccuracy: 600, CallerFor: time.Minute, Close: true, Log: &bytes.Buffer{}}
}

// playsOver runs a short drill and checks that every rescuer's and the
// caller's fix got through (gRPC and JSON gateway alike).
func playsOver(t *testing.T, what string, o drillOptions) {
	t.Helper()
	res, err := runDrill(t.Context(), o)
	if err != nil {
		t.Fatalf("%s: runDrill: %v\n%s", what, err, o.Log.(*bytes.Buffer).String())
	}
	if r, c := res.Rescuers, res.Caller; len(res.ErrorSamples) > 0 || r.Sent == 0 || r.Stored+r.Duplicates < r.Sent ||
		c == nil || c.Sent == 0 || c.Stored != c.Sent || !res.Closed {
		t.Errorf("%s: rescuers %+v, caller %+v, closed %v, errors %q; want every fix stored and the incident closed", what, r, c, res.Closed, res.ErrorSamples)
	}
}

// refused runs a drill that must fail on the connection, and checks the
// hint sarsim prints with the error.
func refused(t *testing.T, what string, o drillOptions, hint string) {
	t.Helper()
	_, err := runDrill(t.Context(), o)
	used, _ := o.TLS.UsesTLS(o.Addr)
	if err == nil || !strings.Contains(tlsutil.Hint(err, used), hint) {
		t.Errorf("%s: %v (hint %q), want a refusal with a hint about %q", what, err, tlsutil.Hint(err, used), hint)
	}
}

// TestDrillOverTLS: sarsim plays a drill against a sard serving TLS with
// a certificate of a CA made here, trusting it by the CA bundle or by a
// pin (of the certificate, or of its public key); a CA it was not given,
// another pin, or the system's roots are refused with a hint.
func TestDrillOverTLS(t *testing.T) {
	s := tlstest.StartSard(t)
	drill := func(c tlsutil.Client) drillOptions { return shortDrill(s.GRPCAddr(), s.HTTPAddr(), s.Admin, c) }
	playsOver(t, "the CA bundle", drill(tlsutil.Client{CAFile: s.CAFile}))
	playsOver(t, "the pinned certificate", drill(tlsutil.Client{Pin: tlsutil.Fingerprint(s.Leaf)}))

	other := tlstest.WriteFile(t, filepath.Join(t.TempDir(), "other.pem"), tlstest.NewCA(t, "another CA").PEM())
	refused(t, "another CA", drill(tlsutil.Client{CAFile: other}), "not trusted")
	refused(t, "another pin", drill(tlsutil.Client{Pin: strings.Repeat("AB:", 31) + "AB"}), "not trusted")
	refused(t, "the system's roots", drill(tlsutil.Client{TLS: true}), "not trusted")
	refused(t, "plaintext to the TLS listeners", drill(tlsutil.Client{}), "expect TLS")
	if _, err := runDrill(t.Context(), drill(tlsutil.Client{Insecure: true, CAFile: s.CAFile})); err == nil {
		t.Error("--insecure with --tls-ca-file: no error")
	}
}

// TestDrillPlaintextRemote: to a plaintext sard on an address that is
// not loopback (behind a proxy), sarsim speaks TLS and fails with a hint
// to pass --insecure; with --insecure it plays.
func TestDrillPlaintextRemote(t *testing.T) {
	s := tlstest.StartPlaintextRemoteSard(t)
	drill := func(c tlsutil.Client) drillOptions { return shortDrill(s.GRPCAddr(), s.HTTPAddr(), s.Admin, c) }
	refused(t, "plaintext to "+s.GRPCAddr()+" without --insecure", drill(tlsutil.Client{}), "pass --insecure")
	playsOver(t, "--insecure", drill(tlsutil.Client{Insecure: true}))
}
