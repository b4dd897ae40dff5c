package tlsutil

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
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
	every(ctx, interval, func() { _, _ = r.Reload() }) // a failure is logged once by Reload
}

// every calls f every interval until ctx ends.
func every(ctx context.Context, interval time.Duration, f func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}

// CAReloader serves a pool of CAs from a PEM bundle file and loads it
// again when its content changes (Reload, Watch): the client CAs of
// mutual TLS, rotated without a restart. A bundle that does not load (no
// certificate in it, a file that is gone) leaves the current pool in
// place.
type CAReloader struct {
	file string
	log  *slog.Logger
	cur  atomic.Pointer[x509.CertPool]

	mu      sync.Mutex // serializes Reload
	loaded  [32]byte   // digest of the file behind cur
	refused [32]byte   // digest of the last bundle that did not load (logged once)
}

// NewCAReloader loads the bundle once; it fails if that does not work.
func NewCAReloader(file string, log *slog.Logger) (*CAReloader, error) {
	r := &CAReloader{file: file, log: log}
	if _, err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Pool is the current pool. A new pool is made at each change, never an
// old one modified, so a caller may keep what it got.
func (r *CAReloader) Pool() *x509.CertPool { return r.cur.Load() }

// Reload reads the file and, if it changed, loads it. It reports whether
// the pool changed.
func (r *CAReloader) Reload() (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, err := os.ReadFile(r.file)
	if err != nil {
		return false, fmt.Errorf("tls client ca: %w", err)
	}
	sum := sha256.Sum256(b)
	if r.cur.Load() != nil && sum == r.loaded {
		return false, nil
	}
	pool, subjects := x509.NewCertPool(), []string(nil)
	for rest := b; ; {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			break
		}
		c, perr := x509.ParseCertificate(blk.Bytes)
		if blk.Type != "CERTIFICATE" || perr != nil {
			continue
		}
		pool.AddCert(c)
		subjects = append(subjects, c.Subject.String())
	}
	if len(subjects) == 0 {
		err = fmt.Errorf("tls client ca %s: no PEM certificate in it", r.file)
		if sum != r.refused && r.cur.Load() != nil {
			r.refused = sum
			r.log.Error("tls: the changed client CA bundle does not load; still trusting the previous one", "err", err)
		}
		return false, err
	}
	r.cur.Store(pool)
	r.loaded = sum
	r.log.Info("tls: client CA bundle loaded", "file", r.file, "subjects", subjects)
	return true, nil
}

// Watch calls Reload every interval until ctx ends.
func (r *CAReloader) Watch(ctx context.Context, interval time.Duration) {
	every(ctx, interval, func() { _, _ = r.Reload() }) // a failure is logged once by Reload
}
