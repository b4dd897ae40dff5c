package tlsutil

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// Client is how a client (sarctl, sarsim, mobileclient) secures its
// connection to sard. The zero value speaks TLS, verified against the
// system's roots, to any address that is not loopback, and plaintext to
// loopback (an embedded sard on a laptop).
type Client struct {
	// TLS forces TLS to a loopback address too.
	TLS bool
	// CAFile is a PEM bundle of the CAs that may sign sard's certificate
	// (instead of the system's roots). Implies TLS.
	CAFile string
	// CAPEM is the same as PEM bytes (a phone app has no file to point
	// at). With CAFile too, both are trusted. Implies TLS.
	CAPEM []byte
	// Pin is the SHA-256 fingerprint of sard's certificate (as sard
	// --tls-self-signed prints it). The connection is accepted only with
	// that certificate; with no CAFile the chain is not checked otherwise
	// (a self-signed certificate). Implies TLS.
	Pin string
	// SPKIPin is the SHA-256 of sard's public key (SubjectPublicKeyInfo),
	// base64 as SPKIHash writes it (or 64 hex digits): like Pin, but it
	// survives a renewal that keeps the key. Implies TLS.
	SPKIPin string
	// Insecure allows plaintext to an address that is not loopback.
	Insecure bool
	// CertFile and KeyFile are a client certificate for mutual TLS
	// (sard --tls-client-ca). Imply TLS.
	CertFile, KeyFile string
}

// UsesTLS reports whether a connection to addr (host:port) will use TLS,
// or an error if the settings contradict each other.
func (c Client) UsesTLS(addr string) (bool, error) {
	secured := c.TLS || c.CAFile != "" || len(c.CAPEM) > 0 || c.Pin != "" || c.SPKIPin != "" || c.CertFile != ""
	switch {
	case c.Insecure && secured:
		return false, ErrInsecureContradicts
	case secured:
		return true, nil
	case IsLoopback(addr):
		return false, nil
	case c.Insecure:
		return false, nil
	}
	return true, nil
}

// Config is the TLS configuration for a connection to addr, or nil for
// plaintext.
func (c Client) Config(addr string) (*tls.Config, error) {
	on, err := c.UsesTLS(addr)
	if err != nil || !on {
		return nil, err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CertFile != "" || c.KeyFile != "" {
		var pair tls.Certificate
		pair, err = tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	if c.CAFile != "" || len(c.CAPEM) > 0 {
		cfg.RootCAs = x509.NewCertPool()
	}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls ca file: %w", err)
		}
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls ca file %s: no PEM certificate in it", c.CAFile)
		}
	}
	if len(c.CAPEM) > 0 && !cfg.RootCAs.AppendCertsFromPEM(c.CAPEM) {
		return nil, errors.New("tls ca bundle: no PEM certificate in it")
	}
	if c.Pin == "" && c.SPKIPin == "" {
		return cfg, nil
	}
	var certPin, keyPin []byte
	if c.Pin != "" {
		if certPin, err = ParseFingerprint(c.Pin); err != nil {
			return nil, fmt.Errorf("tls pin: %w", err)
		}
	}
	if c.SPKIPin != "" {
		if keyPin, err = ParseSPKIPin(c.SPKIPin); err != nil {
			return nil, fmt.Errorf("tls public key pin: %w", err)
		}
	}
	// Without a CA the pin is the whole check (a self-signed certificate
	// has no chain); with one, both must hold.
	cfg.InsecureSkipVerify = cfg.RootCAs == nil
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("tls: the server sent no certificate")
		}
		leaf := cs.PeerCertificates[0]
		if got := sha256.Sum256(leaf.Raw); certPin != nil && !bytes.Equal(got[:], certPin) {
			return fmt.Errorf("tls: the server's certificate %s is not the pinned one %s", formatHex(got[:]), formatHex(certPin))
		}
		if got := sha256.Sum256(leaf.RawSubjectPublicKeyInfo); keyPin != nil && !bytes.Equal(got[:], keyPin) {
			return fmt.Errorf("tls: the server's public key %s is not the pinned one %s",
				base64.StdEncoding.EncodeToString(got[:]), base64.StdEncoding.EncodeToString(keyPin))
		}
		return nil
	}
	return cfg, nil
}

// ErrInsecureContradicts is the answer to plaintext asked for together
// with a TLS setting.
var ErrInsecureContradicts = errors.New("tls: insecure (plaintext) contradicts the TLS settings: TLS, a CA bundle, a pin or a client certificate")

// GRPCDialOption is the transport credentials for addr: TLS, or plaintext
// where Client allows it.
func (c Client) GRPCDialOption(addr string) (grpc.DialOption, error) {
	cfg, err := c.Config(addr)
	if err != nil {
		return nil, err
	}
	if cfg == nil {
		return grpc.WithTransportCredentials(insecure.NewCredentials()), nil
	}
	return grpc.WithTransportCredentials(credentials.NewTLS(cfg)), nil
}

// Scheme is "https" or "http" for an HTTP connection to addr.
func (c Client) Scheme(addr string) (string, error) {
	on, err := c.UsesTLS(addr)
	if err != nil {
		return "", err
	}
	if on {
		return "https", nil
	}
	return "http", nil
}

// IsLoopback reports whether addr (host:port or a host) names this
// machine by a loopback address or "localhost". Other names are not
// resolved: a name is remote.
func IsLoopback(addr string) bool {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Hint explains a connection failure that is a TLS mismatch, or returns
// "" if err is not one.
func Hint(err error, usedTLS bool) string {
	if err == nil {
		return ""
	}
	s := err.Error()
	switch {
	case usedTLS && (strings.Contains(s, "first record does not look like a TLS handshake") ||
		strings.Contains(s, "server gave HTTP response to HTTPS client") ||
		strings.Contains(s, "tls: ") && strings.Contains(s, "EOF")):
		return "the server did not answer TLS: if it really serves plaintext (an embedded sard on a trusted network), pass --insecure"
	case usedTLS && (strings.Contains(s, "certificate signed by unknown authority") || strings.Contains(s, "not the pinned one") ||
		strings.Contains(s, "certificate is not valid for") || strings.Contains(s, "x509:")):
		return "the server's certificate is not trusted: give its CA with --tls-ca-file, or pin it with --tls-pin (sard prints the fingerprint of a self-signed one)"
	case !usedTLS && (strings.Contains(s, "connection closed before server preface") || strings.Contains(s, "error reading server preface") ||
		strings.Contains(s, "malformed HTTP response") || strings.Contains(s, "HTTP request to an HTTPS server")):
		return "the server seems to expect TLS: pass --tls (or --tls-ca-file / --tls-pin)"
	}
	return ""
}

// Flags are the clients' command-line flags (kong tags), shared by sarctl
// and sarsim.
type Flags struct {
	TLS      bool   `name:"tls" env:"SAR_TLS" help:"Use TLS even to a loopback address (it is the default to any other address)."`
	CAFile   string `name:"tls-ca-file" env:"SAR_TLS_CA_FILE" placeholder:"FILE" help:"PEM bundle of the CAs that sign sard's certificate (default: the system's roots). Implies TLS."`
	Pin      string `name:"tls-pin" env:"SAR_TLS_PIN" placeholder:"SHA256" help:"SHA-256 fingerprint of sard's certificate (a self-signed one: sard prints it); only that certificate is accepted. Implies TLS."`
	CertFile string `name:"tls-client-cert" env:"SAR_TLS_CLIENT_CERT" placeholder:"FILE" help:"PEM client certificate for mutual TLS (it names a credential: no --token needed). Implies TLS."`
	KeyFile  string `name:"tls-client-key" env:"SAR_TLS_CLIENT_KEY" placeholder:"FILE" help:"PEM key of --tls-client-cert."`
	Insecure bool   `name:"insecure" env:"SAR_INSECURE" help:"Allow plaintext to an address that is not loopback (a trusted network only: tokens and positions cross it readable)."`
}

// Client is the connection security the flags ask for.
func (f Flags) Client() Client {
	return Client{TLS: f.TLS, CAFile: f.CAFile, Pin: f.Pin, Insecure: f.Insecure, CertFile: f.CertFile, KeyFile: f.KeyFile}
}
