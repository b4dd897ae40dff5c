package app

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"

	"github.com/nats-io/nats.go"
)

// BackendSecurity authenticates and encrypts sard's connections to an
// external Redis and NATS (Config embeds it). Secrets come from files or
// the environment (cmd/sard), never from the command line, and are never
// logged.
type BackendSecurity struct {
	// RedisCAFile is a PEM bundle of the CAs of Redis's certificate; it
	// needs a rediss:// URL (rediss:// alone verifies against the
	// system's roots).
	RedisCAFile string
	// RedisUser is the ACL user (or the URL's user); RedisPassword or
	// RedisPasswordFile its password (or the URL's).
	RedisUser         string
	RedisPassword     string
	RedisPasswordFile string
	// NATSCAFile is a PEM bundle of the CAs of NATS's certificate; it
	// turns TLS on (as a tls:// URL does).
	NATSCAFile string
	// One way to authenticate to NATS: a creds file (JWT and nkey seed),
	// a token, a user and password (also possible in the URL), or sard's
	// nkey seed (Config.NATSSeedFile).
	NATSCredsFile    string
	NATSToken        string
	NATSTokenFile    string
	NATSUser         string
	NATSPassword     string
	NATSPasswordFile string
}

func (b BackendSecurity) set() bool { return b != BackendSecurity{} }

// secret is value, or the first line of file.
func secret(what, value, file string) (string, error) {
	if value != "" && file != "" {
		return "", fmt.Errorf("%s: given both in the environment and as a file: choose one", what)
	}
	if file == "" {
		return value, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%s file: %w", what, err)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" || strings.ContainsAny(s, "\r\n") {
		return "", fmt.Errorf("%s file %s: want one line", what, file)
	}
	return s, nil
}

// secureRedis applies the CA bundle and the ACL credentials to a client's
// options (single or Cluster), parsed from rawURL.
func (b BackendSecurity) secureRedis(rawURL string, tlsCfg **tls.Config, user, password *string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("redis url: %w", err)
	}
	if b.RedisCAFile != "" {
		if u.Scheme != "rediss" {
			return errors.New("--redis-ca-file needs a rediss:// URL (TLS): with redis:// the connection would be plaintext")
		}
		pool, err := caPool(b.RedisCAFile)
		if err != nil {
			return fmt.Errorf("redis ca file: %w", err)
		}
		if *tlsCfg == nil {
			*tlsCfg = &tls.Config{ServerName: u.Hostname()}
		}
		(*tlsCfg).RootCAs = pool
	}
	if *tlsCfg != nil && (*tlsCfg).MinVersion < tls.VersionTLS12 {
		(*tlsCfg).MinVersion = tls.VersionTLS12
	}
	if b.RedisUser != "" {
		if *user != "" && *user != b.RedisUser {
			return errors.New("redis: a user in the URL and another in --redis-user")
		}
		*user = b.RedisUser
	}
	pw, err := secret("redis password", b.RedisPassword, b.RedisPasswordFile)
	if err != nil {
		return err
	}
	if pw != "" {
		if *password != "" {
			return errors.New("redis: a password in the URL and another from the environment or a file: keep it out of the URL")
		}
		*password = pw
	}
	return nil
}

// natsOptions are the TLS and authentication options of sard's NATS
// connection.
func (b BackendSecurity) natsOptions(seedFile string) ([]nats.Option, error) {
	var opts []nats.Option
	if b.NATSCAFile != "" {
		if _, err := caPool(b.NATSCAFile); err != nil { // fail at start, not at each reconnect
			return nil, fmt.Errorf("nats ca file: %w", err)
		}
		opts = append(opts, nats.RootCAs(b.NATSCAFile), nats.Secure(&tls.Config{MinVersion: tls.VersionTLS12}))
	}
	token, err := secret("nats token", b.NATSToken, b.NATSTokenFile)
	if err != nil {
		return nil, err
	}
	password, err := secret("nats password", b.NATSPassword, b.NATSPasswordFile)
	if err != nil {
		return nil, err
	}
	if (b.NATSUser == "") != (password == "") {
		return nil, errors.New("nats: a user needs a password, and a password a user")
	}
	ways := 0
	for _, on := range []bool{seedFile != "", b.NATSCredsFile != "", token != "", b.NATSUser != ""} {
		if on {
			ways++
		}
	}
	if ways > 1 {
		return nil, errors.New("nats: authenticate one way: an nkey seed, a creds file, a token, or a user and password")
	}
	switch {
	case b.NATSCredsFile != "":
		if _, err := os.Stat(b.NATSCredsFile); err != nil {
			return nil, fmt.Errorf("nats creds file: %w", err)
		}
		opts = append(opts, nats.UserCredentials(b.NATSCredsFile))
	case token != "":
		opts = append(opts, nats.Token(token))
	case b.NATSUser != "":
		opts = append(opts, nats.UserInfo(b.NATSUser, password))
	}
	return opts, nil
}

func caPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate in it", file)
	}
	return pool, nil
}

// warnPlaintextBackends logs a warning for a connection to a backend on
// another machine that is not encrypted.
func (b BackendSecurity) warnPlaintextBackends(cfg Config, log *slog.Logger) {
	if u, err := url.Parse(cfg.RedisURL); err == nil && u.Scheme == "redis" && !loopbackHost(u.Hostname()) {
		log.Warn("the Redis connection is plaintext: positions and credentials cross the network readable; use rediss:// (--redis-ca-file)",
			"redis", redactURL(cfg.RedisURL))
	}
	if b.NATSCAFile != "" {
		return
	}
	for s := range strings.SplitSeq(cfg.NATSURL, ",") {
		u, err := url.Parse(strings.TrimSpace(s))
		if err == nil && u.Scheme != "tls" && !loopbackHost(hostOnly(u.Host)) {
			log.Warn("the NATS connection may be plaintext: events with positions cross the network readable; use tls:// or --nats-ca-file",
				"nats", redactURL(s))
			return
		}
	}
}

func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}
