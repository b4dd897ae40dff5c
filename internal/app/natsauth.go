package app

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/mountain-sar/sar/dispatch"
	"github.com/mountain-sar/sar/internal/embedded"
)

// embeddedNATSOptions checks the NATS authorization settings and returns
// the embedded server's options. In embedded mode with --nats-auth, sard's
// seed defaults to the _sard.nk next to the file and must be one of its
// users.
//
// --nats-listen carries live positions, tasks and notices: when sard serves
// TLS (listenerTLS, with --tls-cert/--tls-key or --tls-self-signed), the
// NATS listener serves TLS only, with the same certificate (reloaded with
// it); without TLS it stays on loopback.
func embeddedNATSOptions(cfg *Config, listenerTLS *tls.Config) (embedded.NATSOptions, error) {
	var o embedded.NATSOptions
	if cfg.NATSURL != "" {
		switch {
		case cfg.NATSAuthFile != "":
			return o, errors.New("--nats-auth is for the embedded NATS server only: with --nats-url, include the file " +
				"in your nats-server configuration and give sard its seed with --nats-nkey-seed-file")
		case cfg.NATSListen != "":
			return o, errors.New("--nats-listen is for the embedded NATS server only: with --nats-url, " +
				"your nats-server's configuration says where it listens")
		}
		return o, nil
	}
	if cfg.NATSListen != "" {
		host, _, err := net.SplitHostPort(cfg.NATSListen)
		if err != nil {
			return o, fmt.Errorf("--nats-listen %q: %w", cfg.NATSListen, err)
		}
		ip := net.ParseIP(host)
		loopback := host == "localhost" || ip != nil && ip.IsLoopback()
		if !loopback && cfg.NATSAuthFile == "" {
			return o, fmt.Errorf("--nats-listen %s opens the embedded NATS server to the network: give it users with "+
				"--nats-auth (from 'sarctl nats-auth'), or listen on loopback", cfg.NATSListen)
		}
		if !loopback && listenerTLS == nil {
			return o, fmt.Errorf("--nats-listen %s would carry positions, tasks and notices over the network in plaintext: "+
				"turn TLS on (--tls-cert and --tls-key, or --tls-self-signed for a demo; the NATS listener serves the same certificate), "+
				"listen on loopback, or run your own nats-server with TLS and give --nats-url", cfg.NATSListen)
		}
		o.Listen = cfg.NATSListen
		if listenerTLS != nil {
			o.TLS = listenerTLS.Clone()
			o.TLS.NextProtos = nil // the listeners' h2 and http/1.1 mean nothing to NATS
		}
	}
	if cfg.NATSAuthFile == "" {
		if cfg.NATSSeedFile != "" {
			return o, errors.New("--nats-nkey-seed-file without --nats-auth: the embedded NATS server has no users")
		}
		return o, nil
	}
	users, err := embedded.LoadAuthorization(cfg.NATSAuthFile)
	if err != nil {
		return o, fmt.Errorf("--nats-auth: %w", err)
	}
	if cfg.NATSSeedFile == "" {
		cfg.NATSSeedFile = filepath.Join(filepath.Dir(cfg.NATSAuthFile), dispatch.ServiceSeedFile)
	}
	pub, err := seedPublicKey(cfg.NATSSeedFile)
	if err != nil {
		return o, fmt.Errorf("sard's NATS seed (--nats-nkey-seed-file): %w", err)
	}
	if !slices.ContainsFunc(users, func(u *natsserver.NkeyUser) bool { return u.Nkey == pub }) {
		return o, fmt.Errorf("sard's NATS seed %s (%s) is not a user of --nats-auth %s: run 'sarctl nats-auth' again "+
			"or give the right --nats-nkey-seed-file", cfg.NATSSeedFile, pub, cfg.NATSAuthFile)
	}
	o.Users = users
	return o, nil
}

func seedPublicKey(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	kp, err := nkeys.ParseDecoratedNKey(b)
	if err != nil {
		return "", fmt.Errorf("%s: %w", file, err)
	}
	defer kp.Wipe()
	return kp.PublicKey()
}
