package tlsutil

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// ServerConfig is the TLS configuration of sard's listeners: TLS 1.2 or
// later with Go's default cipher suites, the certificate from
// getCertificate at every handshake (so a reloaded one applies to new
// connections while open ones keep theirs).
func ServerConfig(getCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: getCertificate}
}

// CertReloader serves a certificate and key from PEM files and loads them
// again when their content changes (Reload, Watch). A pair that does not
// load (a half-written renewal, a key that does not match) leaves the
// current certificate in place.
type CertReloader struct {
	certFile, keyFile string
	log               *slog.Logger
	cur               atomic.Pointer[tls.Certificate]

	mu      sync.Mutex // serializes Reload
	loaded  [32]byte   // digest of the files behind cur
	refused [32]byte   // digest of the last pair that did not load (logged once)
}

// NewCertReloader loads the pair once; it fails if that does not work.
func NewCertReloader(certFile, keyFile string, log *slog.Logger) (*CertReloader, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("tls: both a certificate file and a key file are needed")
	}
	r := &CertReloader{certFile: certFile, keyFile: keyFile, log: log}
	if _, err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// GetCertificate is the tls.Config callback.
func (r *CertReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cur.Load(), nil
}

// Leaf is the certificate being served.
func (r *CertReloader) Leaf() *x509.Certificate { return r.cur.Load().Leaf }

// Reload reads the files and, if they changed, loads them. It reports
// whether the served certificate changed.
func (r *CertReloader) Reload() (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	certPEM, err := os.ReadFile(r.certFile)
	if err != nil {
		return false, fmt.Errorf("tls certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(r.keyFile)
	if err != nil {
		return false, fmt.Errorf("tls key: %w", err)
	}
	sum := sha256.Sum256(bytes.Join([][]byte{certPEM, keyPEM}, []byte{0}))
	if r.cur.Load() != nil && sum == r.loaded {
		return false, nil
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err == nil && cert.Leaf == nil {
		cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0])
	}
	if err == nil && time.Now().After(cert.Leaf.NotAfter) {
		err = fmt.Errorf("the certificate expired at %s", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if err != nil {
		err = fmt.Errorf("tls: loading %s and %s: %w", r.certFile, r.keyFile, err)
		if sum != r.refused && r.cur.Load() != nil {
			r.refused = sum
			r.log.Error("tls: the changed certificate files do not load; still serving the previous certificate", "err", err)
		}
		return false, err
	}
	r.cur.Store(&cert)
	r.loaded = sum
	r.log.Info("tls: certificate loaded", "file", r.certFile, "subject", cert.Leaf.Subject.String(),
		"dns", cert.Leaf.DNSNames, "not_after", cert.Leaf.NotAfter.UTC(), "sha256", Fingerprint(cert.Leaf))
	if left := time.Until(cert.Leaf.NotAfter); left < 14*24*time.Hour {
		r.log.Warn("tls: the certificate expires soon; renew it (sard reloads the files when they change)",
			"not_after", cert.Leaf.NotAfter.UTC(), "left", left.Round(time.Minute))
	}
	return true, nil
}

// Watch calls Reload every interval until ctx ends (a renewal tool
// rewrites the files; sard picks them up without a restart).
func (r *CertReloader) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_, _ = r.Reload() // a failure is logged once by Reload
		}
	}
}
