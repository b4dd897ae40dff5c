package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/mountain-sar/sar/internal/app"
)

// TLSFlags are sard's transport security flags.
type TLSFlags struct {
	TLSCert              string `name:"tls-cert" env:"SAR_TLS_CERT" help:"PEM certificate (chain) of both listeners; TLS 1.2+. Reloaded when the file changes (checked every 10 s) or on SIGHUP, without dropping open streams."`
	TLSKey               string `name:"tls-key" env:"SAR_TLS_KEY" help:"PEM private key of --tls-cert."`
	TLSClientCA          string `name:"tls-client-ca" env:"SAR_TLS_CLIENT_CA" placeholder:"FILE" help:"PEM bundle of the CAs of servers' client certificates (mutual TLS on gRPC and the JSON gateway): a certificate whose URI SAN is spiffe://<domain>/sar/credential/<id> authenticates as that credential (issued with 'sarctl credential'). Reloaded with the certificate (file change, SIGHUP). Needs --tls-cert."`
	TLSSelfSigned        bool   `name:"tls-self-signed" env:"SAR_TLS_SELF_SIGNED" help:"Embedded mode only: serve TLS with a self-signed certificate for this machine's names and addresses (kept in <data-dir>/tls), for a LAN demo; its SHA-256 fingerprint is printed for clients to pin (--tls-pin)."`
	PlaintextBehindProxy bool   `name:"plaintext-behind-proxy" env:"SAR_PLAINTEXT_BEHIND_PROXY" help:"Allow plaintext listeners on addresses other than loopback: only when a TLS-terminating proxy on a private network is the only way in."`
	BackendFlags
	TrustedProxies []string `name:"trusted-proxies" env:"SAR_TRUSTED_PROXIES" sep:"," help:"CIDRs or addresses of the reverse proxies / load balancers whose X-Forwarded-For is believed (per-address rate limits). Empty: the connection's address is the client."`
}

func (f TLSFlags) transport() app.Transport {
	return app.Transport{TLSCertFile: f.TLSCert, TLSKeyFile: f.TLSKey, TLSClientCAFile: f.TLSClientCA, TLSSelfSigned: f.TLSSelfSigned,
		PlaintextBehindProxy: f.PlaintextBehindProxy, TrustedProxies: f.TrustedProxies}
}

// BackendFlags secure the connections to an external Redis and NATS.
// Passwords and tokens come from files or the environment only
// (SAR_REDIS_PASSWORD, SAR_NATS_PASSWORD, SAR_NATS_TOKEN): a command line
// is readable by every user of the machine.
type BackendFlags struct {
	RedisCAFile       string `name:"redis-ca-file" env:"SAR_REDIS_CA_FILE" placeholder:"FILE" help:"PEM bundle of the CAs of Redis's certificate (needs a rediss:// URL; rediss:// alone uses the system's roots)."`
	RedisUser         string `name:"redis-user" env:"SAR_REDIS_USER" help:"Redis ACL user (or in the URL)."`
	RedisPasswordFile string `name:"redis-password-file" env:"SAR_REDIS_PASSWORD_FILE" placeholder:"FILE" help:"File with the Redis password (or SAR_REDIS_PASSWORD in the environment); keep it out of the URL."`
	NATSCAFile        string `name:"nats-ca-file" env:"SAR_NATS_CA_FILE" placeholder:"FILE" help:"PEM bundle of the CAs of NATS's certificate; turns TLS on (as tls:// URLs do)."`
	NATSCredsFile     string `name:"nats-creds-file" env:"SAR_NATS_CREDS_FILE" placeholder:"FILE" help:"NATS credentials file (JWT and nkey seed, decentralized auth)."`
	NATSUser          string `name:"nats-user" env:"SAR_NATS_USER" help:"NATS user (with --nats-password-file or SAR_NATS_PASSWORD)."`
	NATSPasswordFile  string `name:"nats-password-file" env:"SAR_NATS_PASSWORD_FILE" placeholder:"FILE" help:"File with the NATS user's password (or SAR_NATS_PASSWORD in the environment)."`
	NATSTokenFile     string `name:"nats-token-file" env:"SAR_NATS_TOKEN_FILE" placeholder:"FILE" help:"File with a NATS token (or SAR_NATS_TOKEN in the environment)."`
}

func (f BackendFlags) security() app.BackendSecurity {
	return app.BackendSecurity{RedisCAFile: f.RedisCAFile, RedisUser: f.RedisUser,
		RedisPassword: os.Getenv("SAR_REDIS_PASSWORD"), RedisPasswordFile: f.RedisPasswordFile,
		NATSCAFile: f.NATSCAFile, NATSCredsFile: f.NATSCredsFile, NATSUser: f.NATSUser,
		NATSPassword: os.Getenv("SAR_NATS_PASSWORD"), NATSPasswordFile: f.NATSPasswordFile,
		NATSToken: os.Getenv("SAR_NATS_TOKEN"), NATSTokenFile: f.NATSTokenFile}
}

// reloadOnSIGHUP loads the certificate files again on each SIGHUP.
func reloadOnSIGHUP(ctx context.Context, a *app.App, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if !a.UsesTLS() {
				log.Info("SIGHUP: TLS is off, nothing to reload")
				continue
			}
			if err := a.ReloadTLS(); err != nil {
				log.Error("SIGHUP: TLS files that do not load; what did not load stays as it was", "err", err)
			} else {
				log.Info("SIGHUP: certificate and client CA files checked")
			}
		}
	}
}

func httpURL(a *app.App) string {
	if a.UsesTLS() {
		return "https://" + a.HTTPAddr()
	}
	return "http://" + a.HTTPAddr()
}

func curlTLS(b app.Bootstrap) string {
	if b.TLSFingerprint != "" {
		return "-k " // self-signed: curl cannot pin a certificate's SHA-256; check the fingerprint above
	}
	return ""
}

// bannerTLS prints the listeners and how they are secured.
func bannerTLS(w io.Writer, a *app.App, b app.Bootstrap) {
	if !a.UsesTLS() {
		fmt.Fprintf(w, "    gRPC:   %s   (PLAINTEXT, loopback only; reflection on: grpcurl -plaintext %s list)\n", a.GRPCAddr(), a.GRPCAddr())
		fmt.Fprintf(w, "    HTTP:   %s   (PLAINTEXT, loopback only; JSON API under /v1/, /healthz, /metrics)\n", httpURL(a))
		fmt.Fprintln(w, "            phones' browsers give the share page a position only over HTTPS: --tls-self-signed for a LAN demo")
		return
	}
	fmt.Fprintf(w, "    gRPC:   %s   (TLS)\n", a.GRPCAddr())
	fmt.Fprintf(w, "    HTTP:   %s   (TLS; JSON API under /v1/, /healthz, /metrics)\n", httpURL(a))
	if b.TLSFingerprint != "" {
		fmt.Fprintf(w, "    self-signed certificate, SHA-256 fingerprint (browsers warn: compare it before accepting):\n      %s\n", b.TLSFingerprint)
		fmt.Fprintf(w, "    clients: sarctl --addr %s --tls-pin %s ...\n", a.GRPCAddr(), b.TLSFingerprint)
	}
}
