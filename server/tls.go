package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// hstsValue tells browsers to use only HTTPS with this host for a year.
// Browsers ignore it on a connection with certificate errors (a
// self-signed demo certificate), so it cannot lock a demo's visitors out.
const hstsValue = "max-age=31536000"

// transportOptions secure the gRPC listener when Options.TLS is set. The
// certificate is chosen at each handshake (tls.Config.GetCertificate), so
// a reloaded certificate serves new connections while open streams keep
// the connection they have.
func (s *Server) transportOptions() []grpc.ServerOption {
	if s.opt.TLS == nil {
		return nil
	}
	cfg := s.opt.TLS.Clone()
	if s.opt.ClientCAs != nil { // mutual TLS for the servers that have a certificate (mtls.go)
		// The handshake verifies a certificate that is sent; none is
		// required (phones use tokens).
		cfg.GetConfigForClient = s.clientCAConfig(cfg, tls.VerifyClientCertIfGiven, nil)
	}
	return []grpc.ServerOption{grpc.Creds(credentials.NewTLS(cfg))}
}

// serveHTTP serves hs on l, over TLS when Options.TLS is set (HTTP/2 and
// HTTP/1.1 offered by ALPN).
func (s *Server) serveHTTP(hs *http.Server, l net.Listener) error {
	if s.opt.TLS == nil {
		return hs.Serve(l)
	}
	hs.TLSConfig = s.opt.TLS.Clone()
	if s.opt.ClientCAs != nil {
		// Request a client certificate, naming the client CAs (so a
		// browser offers only a certificate of theirs, and with none
		// asks nothing), but do not verify it in the handshake: a
		// certificate the CAs did not sign must not cost a lost person
		// the share page. The gateway verifies it (gatewayGuard).
		hs.TLSConfig.GetConfigForClient = s.clientCAConfig(hs.TLSConfig, tls.RequestClientCert, []string{"h2", "http/1.1"})
	}
	return hs.ServeTLS(l, "", "")
}

// clientCAConfig is a GetConfigForClient callback: base with the current
// client CAs (Options.ClientCAs, asked at each handshake, so a reloaded
// bundle applies to the next connection) and mode. nextProtos, when set,
// is the returned configuration's ALPN list, stated rather than left to
// what net/http adds to base when it sets HTTP/2 up. One configuration
// is kept per pool, not a clone made at every handshake.
func (s *Server) clientCAConfig(base *tls.Config, mode tls.ClientAuthType, nextProtos []string) func(*tls.ClientHelloInfo) (*tls.Config, error) {
	type forPool struct {
		pool *x509.CertPool
		cfg  *tls.Config
	}
	var cur atomic.Pointer[forPool]
	return func(*tls.ClientHelloInfo) (*tls.Config, error) {
		pool := s.opt.ClientCAs()
		if c := cur.Load(); c != nil && c.pool == pool {
			return c.cfg, nil
		}
		cfg := base.Clone()
		cfg.GetConfigForClient = nil
		cfg.ClientCAs, cfg.ClientAuth = pool, mode
		if nextProtos != nil {
			cfg.NextProtos = nextProtos
		}
		cur.Store(&forPool{pool, cfg})
		return cfg, nil
	}
}

// httpHandler is the HTTP listener's handler: HSTS on every response that
// went over HTTPS (here, or at a trusted proxy that says so), and
// X-Forwarded-For joined into one line for the gateway.
func (s *Server) httpHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if v := r.Header.Values("X-Forwarded-For"); len(v) > 1 {
			r.Header.Set("X-Forwarded-For", strings.Join(v, ", "))
		}
		if r.TLS != nil || s.forwardedHTTPS(r) {
			w.Header().Set("Strict-Transport-Security", hstsValue)
		}
		s.mux.ServeHTTP(w, r)
	})
}

// httpErrorLog routes net/http's own log to slog: failed TLS handshakes
// (scanners, clients that do not trust the certificate) at debug level,
// anything else as a warning.
func (s *Server) httpErrorLog() *log.Logger {
	return log.New(httpLogWriter{s.log}, "", 0)
}

type httpLogWriter struct{ log *slog.Logger }

func (w httpLogWriter) Write(p []byte) (int, error) {
	msg := string(bytes.TrimSpace(p))
	lvl := slog.LevelWarn
	if strings.Contains(msg, "TLS handshake error") {
		lvl = slog.LevelDebug
	}
	w.log.Log(context.Background(), lvl, "http server", "msg", msg)
	return len(p), nil
}
