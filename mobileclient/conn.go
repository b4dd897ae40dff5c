package mobileclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/keepalive"

	"github.com/mountain-sar/sar/internal/tlsutil"
)

// Config is how a Client reaches sard. The zero value speaks TLS to any
// address that is not loopback, verified against the phone's system
// roots, and sends no token.
type Config struct {
	// Token is the rescuer's bearer token (a rescuer credential), sent
	// with every call. It is never sent in plaintext to an address that
	// is not loopback.
	Token string
	// CABundle is a PEM bundle of the CAs that sign sard's certificate,
	// instead of the system's roots (a phone app has no file to point
	// at: the app ships or downloads the bytes).
	CABundle []byte
	// PinSPKI is the SHA-256 of sard's public key (SubjectPublicKeyInfo),
	// base64 (44 characters, optionally prefixed "sha256/") or 64 hex
	// digits: only a certificate with that key is accepted. Without
	// CABundle it is the whole check (a self-signed certificate); with
	// it, both must hold. It survives renewals that keep the key.
	PinSPKI string
	// TLS forces TLS to a loopback address too (CABundle and PinSPKI
	// imply it).
	TLS bool
	// Insecure allows plaintext to an address that is not loopback: a
	// drill on a trusted network only. It contradicts TLS, CABundle and
	// PinSPKI, and a Token cannot be sent over it.
	Insecure bool
}

// Client is a connection to sard. It is safe for concurrent use.
type Client struct {
	conn *grpc.ClientConn
}

var (
	// ErrAddress is the answer to an address that is not host:port.
	ErrAddress = errors.New("mobileclient: the server's address must be host:port")
	// ErrTokenInPlaintext is the answer to a token that would cross the
	// network unencrypted.
	ErrTokenInPlaintext = errors.New("mobileclient: refusing to send the token in plaintext to an address that is not loopback; use TLS")
)

// Keepalive and reconnect settings for a phone on a weak mobile network.
//
//   - A ping after 30 s without traffic on an open stream: a carrier's
//     NAT forgets an idle TCP mapping after tens of seconds to a few
//     minutes, and a dead path (a tunnel, a handover, a valley) would
//     otherwise only be noticed by TCP's retransmission timeout, after
//     many minutes. 30 s is sard's own keepalive, which proxies in front
//     of it are told to allow, and well above the 10 s sard accepts
//     between pings (more often and it closes the connection).
//   - 20 s for the answer: round trips of seconds are common on a weak
//     2G/3G link, and a shorter wait would drop a slow but working
//     connection.
//   - No pings without a call in flight: every ping wakes the radio,
//     which costs battery; an idle connection may die quietly and is
//     redialled at the next call.
//   - Reconnect after 1 s, then 1.6 times longer each time, ±20 % so
//     that the phones of a team coming back into coverage under the same
//     tower do not redial in step, at most every 30 s (gRPC's default
//     is 2 minutes): a rescuer walking out of a dead zone is back within
//     half a minute, and a phone out of signal tries twice a minute.
//   - 30 s for a connection attempt (TCP and the TLS handshake): several
//     round trips at a few seconds each, with loss.
const (
	keepaliveTime     = 30 * time.Second
	keepaliveTimeout  = 20 * time.Second
	backoffBase       = time.Second
	backoffMultiplier = 1.6
	backoffJitter     = 0.2
	backoffMax        = 30 * time.Second
	connectTimeout    = 30 * time.Second
)

// New makes a Client of sard's gRPC address (host:port). It does not
// wait for the network: the connection is made at the first call and
// made again after it breaks. It refuses settings that contradict each
// other, a CA bundle or pin that does not parse, and a token that would
// go in plaintext to a remote address.
func New(addr string, cfg *Config) (*Client, error) {
	if cfg == nil {
		cfg = &Config{}
	}
	if host, port, err := net.SplitHostPort(addr); err != nil || host == "" || port == "" {
		return nil, fmt.Errorf("%w: %q", ErrAddress, addr)
	}
	policy := tlsutil.Client{TLS: cfg.TLS, CAPEM: cfg.CABundle, SPKIPin: cfg.PinSPKI, Insecure: cfg.Insecure}
	useTLS, err := policy.UsesTLS(addr)
	if err != nil {
		return nil, fmt.Errorf("mobileclient: %w", err)
	}
	if cfg.Token != "" && !useTLS && !tlsutil.IsLoopback(addr) {
		return nil, ErrTokenInPlaintext
	}
	creds, err := policy.GRPCDialOption(addr)
	if err != nil {
		return nil, fmt.Errorf("mobileclient: %w", err)
	}
	opts := []grpc.DialOption{creds,
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: keepaliveTime, Timeout: keepaliveTimeout}),
		grpc.WithConnectParams(grpc.ConnectParams{MinConnectTimeout: connectTimeout, Backoff: backoff.Config{
			BaseDelay: backoffBase, Multiplier: backoffMultiplier, Jitter: backoffJitter, MaxDelay: backoffMax}}),
	}
	if cfg.Token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer{token: cfg.Token, secure: useTLS}))
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("mobileclient: %s: %w", addr, err)
	}
	return &Client{conn: conn}, nil
}

// Close ends the connection; calls in flight end with Canceled.
func (c *Client) Close() error { return c.conn.Close() }

// bearer sends the token with every call. Over TLS gRPC refuses to send
// it on a connection that is not secure (RequireTransportSecurity); New
// allows plaintext only to loopback.
type bearer struct {
	token  string
	secure bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

func (b bearer) RequireTransportSecurity() bool { return b.secure }
