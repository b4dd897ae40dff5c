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
	"slices"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
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
		if err := checkCreds(b.NATSCredsFile, time.Now()); err != nil {
			return nil, fmt.Errorf("nats creds file %s: %w", b.NATSCredsFile, err)
		}
		opts = append(opts, nats.UserCredentials(b.NATSCredsFile))
	case token != "":
		opts = append(opts, nats.Token(token))
	case b.NATSUser != "":
		opts = append(opts, nats.UserInfo(b.NATSUser, password))
	}
	return opts, nil
}

// checkCreds checks a NATS credentials file at start, as the server would
// at each connect: a user JWT, not expired, and the seed of the same user.
// Its errors never quote the file.
func checkCreds(file string, now time.Time) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	noJWT := errors.New("no user JWT in it (want the file 'nsc generate creds' writes)")
	token, err := nkeys.ParseDecoratedJWT(b) // without the markers: the whole file
	if err != nil {
		return noJWT
	}
	claims, err := jwt.DecodeUserClaims(token)
	if err != nil {
		return noJWT
	}
	kp, err := nkeys.ParseDecoratedUserNKey(b)
	if err != nil {
		return errors.New("no user nkey seed in it (want the file 'nsc generate creds' writes)")
	}
	defer kp.Wipe()
	pub, err := kp.PublicKey()
	if err != nil {
		return errors.New("its nkey seed is not a user seed")
	}
	switch {
	case pub != claims.Subject:
		return fmt.Errorf("its seed is of user %s, its JWT of user %s", pub, claims.Subject)
	case claims.Expires != 0 && now.Unix() >= claims.Expires:
		return fmt.Errorf("its JWT (user %s) expired at %s: issue new credentials", claims.Subject, time.Unix(claims.Expires, 0).UTC().Format(time.RFC3339))
	}
	return nil
}

// connectNATS connects to NATS with opts, which retry a failed first
// connect in the background (nats.RetryOnFailedConnect) so that sard may
// start before NATS. It tries once without that first: a server that
// refuses sard's credentials or whose certificate sard refuses stops the
// start at once, with the reason, instead of a JetStream timeout later.
func connectNATS(url string, opts ...nats.Option) (*nats.Conn, error) {
	nc, err := nats.Connect(url, append(slices.Clip(opts), nats.RetryOnFailedConnect(false))...)
	switch {
	case err == nil:
		return nc, nil
	case errors.Is(err, nats.ErrAuthorization), errors.Is(err, nats.ErrAuthExpired), errors.Is(err, nats.ErrAuthRevoked),
		errors.Is(err, nats.ErrAccountAuthExpired):
		return nil, fmt.Errorf("%w (check sard's NATS credentials: --nats-creds-file, --nats-nkey-seed-file, "+
			"--nats-user and --nats-password-file, or --nats-token-file)", err)
	case errors.Is(err, nats.ErrSecureConnRequired), errors.Is(err, nats.ErrSecureConnWanted):
		return nil, fmt.Errorf("%w (the server and sard disagree on TLS: use tls:// URLs or --nats-ca-file for a server that requires TLS)", err)
	case certRefused(err):
		return nil, fmt.Errorf("%w (is --nats-ca-file the CA bundle of NATS's certificate, and does it name the host of --nats-url?)", err)
	}
	return nats.Connect(url, opts...)
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
