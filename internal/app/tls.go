package app

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"time"

	"github.com/mountain-sar/sar/internal/tlsutil"
	"github.com/mountain-sar/sar/server"
)

// Transport is the listeners' transport security (Config embeds it).
type Transport struct {
	// TLSCertFile and TLSKeyFile (PEM) turn TLS on for both listeners;
	// the pair is loaded again when the files change (checked every
	// TLSReloadInterval, default 10 s) or on App.ReloadTLS (SIGHUP).
	TLSCertFile, TLSKeyFile string
	TLSReloadInterval       time.Duration
	// TLSSelfSigned, in embedded mode only, serves a self-signed
	// certificate for this machine's names and addresses, kept in
	// DataDir/tls (a LAN demo; Bootstrap.TLSFingerprint names it).
	TLSSelfSigned bool
	// TLSClientCAFile (PEM), with TLS, turns on mutual TLS on both
	// listeners: a client certificate these CAs signed, naming a
	// credential in its URI SAN (spiffe://<domain>/sar/credential/<id>),
	// authenticates as that credential over gRPC and JSON
	// (server/mtls.go). It is reloaded with the certificate.
	TLSClientCAFile string
	// PlaintextBehindProxy allows plaintext listeners on addresses that
	// are not loopback: TLS is terminated by a proxy in front of sard.
	PlaintextBehindProxy bool
	// TrustedProxies (CIDRs or addresses) are the proxies whose
	// X-Forwarded-For is believed for the per-address rate limits.
	TrustedProxies []string
}

// transport is what setupTransport made.
type transport struct {
	tls       *tls.Config // nil: plaintext
	clientCAs *tlsutil.CAReloader
	certs     *tlsutil.CertReloader
	proxies   []netip.Prefix
}

// setupTransport checks the transport settings and loads the certificate;
// the reload watch runs until the app closes.
func (a *App) setupTransport(cfg Config, embeddedMode bool) (*transport, error) {
	t := &transport{}
	a.tr = t
	var err error
	if t.proxies, err = server.ParseTrustedProxies(cfg.TrustedProxies); err != nil {
		return nil, err
	}
	files := cfg.TLSCertFile != "" || cfg.TLSKeyFile != ""
	if cfg.TLSClientCAFile != "" {
		if !files && !cfg.TLSSelfSigned {
			return nil, errors.New("--tls-client-ca (mutual TLS) needs TLS: --tls-cert and --tls-key")
		}
		if t.clientCAs, err = tlsutil.NewCAReloader(cfg.TLSClientCAFile, a.log); err != nil {
			return nil, err
		}
	}
	switch {
	case files && (cfg.TLSCertFile == "" || cfg.TLSKeyFile == ""):
		return nil, errors.New("TLS needs both --tls-cert and --tls-key")
	case files && cfg.TLSSelfSigned:
		return nil, errors.New("--tls-self-signed contradicts --tls-cert/--tls-key: choose one")
	case cfg.TLSSelfSigned && !embeddedMode:
		return nil, errors.New("--tls-self-signed is for an embedded-mode demo only: in production give a real certificate with --tls-cert/--tls-key")
	case !files && !cfg.TLSSelfSigned:
		for _, addr := range []string{cfg.GRPCAddr, cfg.HTTPAddr} {
			if !tlsutil.IsLoopback(addr) && !cfg.PlaintextBehindProxy {
				return nil, fmt.Errorf("refusing plaintext on %s, an address other machines reach: tokens and positions would cross the network in the clear. "+
					"Give a certificate (--tls-cert, --tls-key), or in embedded mode --tls-self-signed for a demo, "+
					"or --plaintext-behind-proxy if a TLS-terminating proxy is the only way in", addr)
			}
		}
		if cfg.PlaintextBehindProxy {
			a.log.Warn("listeners are plaintext (--plaintext-behind-proxy): only a TLS-terminating proxy on a private network may reach them",
				"grpc", cfg.GRPCAddr, "http", cfg.HTTPAddr)
		} else {
			a.log.Info("listeners are plaintext on loopback only (this machine); --tls-cert/--tls-key or --tls-self-signed turn TLS on",
				"grpc", cfg.GRPCAddr, "http", cfg.HTTPAddr)
		}
		return t, nil
	}
	certFile, keyFile := cfg.TLSCertFile, cfg.TLSKeyFile
	if cfg.TLSSelfSigned {
		hosts := tlsutil.LocalHosts()
		for _, addr := range []string{cfg.GRPCAddr, cfg.HTTPAddr} {
			if h, _, err := net.SplitHostPort(addr); err == nil && h != "" && !net.ParseIP(h).IsUnspecified() {
				hosts = append(hosts, h)
			}
		}
		if u, err := url.Parse(cfg.PublicURL); err == nil && u.Hostname() != "" {
			hosts = append(hosts, u.Hostname())
		}
		var made bool
		if certFile, keyFile, made, err = tlsutil.SelfSigned(filepath.Join(cfg.DataDir, "tls"), hosts); err != nil {
			return nil, fmt.Errorf("self-signed certificate: %w", err)
		}
		a.log.Warn("TLS with a self-signed certificate (--tls-self-signed): for a demo only; browsers warn, clients must pin it",
			"cert", certFile, "new", made)
	}
	if t.certs, err = tlsutil.NewCertReloader(certFile, keyFile, a.log); err != nil {
		return nil, err
	}
	t.tls = tlsutil.ServerConfig(t.certs.GetCertificate)
	if cfg.TLSSelfSigned {
		a.Embedded.TLSFingerprint = tlsutil.Fingerprint(t.certs.Leaf())
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	interval := cmp.Or(cfg.TLSReloadInterval, 10*time.Second)
	go func() { defer close(done); t.certs.Watch(ctx, interval) }()
	a.closers = append(a.closers, func() { cancel(); <-done })
	if t.clientCAs != nil {
		caDone := make(chan struct{})
		go func() { defer close(caDone); t.clientCAs.Watch(ctx, interval) }()
		a.closers = append(a.closers, func() { cancel(); <-caDone })
	}
	return t, nil
}

// UsesTLS reports whether the listeners speak TLS.
func (a *App) UsesTLS() bool { return a.tr != nil && a.tr.tls != nil }

// ReloadTLS loads the certificate files and the client CA bundle again
// now (sard does on SIGHUP). Open connections keep what they were
// admitted with; new ones get the new certificate and CAs.
func (a *App) ReloadTLS() error {
	if !a.UsesTLS() {
		return errors.New("TLS is off: nothing to reload")
	}
	_, err := a.tr.certs.Reload()
	if a.tr.clientCAs != nil {
		_, caErr := a.tr.clientCAs.Reload()
		err = errors.Join(err, caErr)
	}
	return err
}

// clientCAPool is the current client CA pool, for server.Options (nil: no
// mutual TLS).
func (t *transport) clientCAPool() func() *x509.CertPool {
	if t.clientCAs == nil {
		return nil
	}
	return t.clientCAs.Pool
}

// scheme is the HTTP listener's URL scheme.
func (a *App) scheme() string {
	if a.UsesTLS() {
		return "https"
	}
	return "http"
}
