package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/redis/go-redis/v9"
)

// redisDialTimeout bounds one connection attempt to Redis (go-redis: 5 s).
const redisDialTimeout = 2 * time.Second

// prompt wraps go-redis's dialer so that acks resume as soon as Redis is
// back from an outage. go-redis counts failed dials, and once it has
// counted PoolSize of them it stops dialling and lets a background probe
// try once a second (a fixed second, not an option): up to a second after
// Redis is ready, every request still fails. Here a dial that fails (and
// whose caller still waits) hands go-redis a connection that fails its
// first write with the dial's error instead: the request fails as it would
// have, the pool drops that connection, the count never reaches the
// breaker, and the next request dials afresh. A cancelled caller's dial
// error is returned as it is.
func prompt(dial func(context.Context, string, string) (net.Conn, error)) func(context.Context, string, string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil && ctx.Err() == nil {
			return failedConn{err: err, addr: addr}, nil
		}
		return c, err
	}
}

// failedConn is a connection whose dial failed: every read and write
// returns that error.
type failedConn struct {
	err  error
	addr string
}

func (f failedConn) Read([]byte) (int, error)         { return 0, f.err }
func (f failedConn) Write([]byte) (int, error)        { return 0, f.err }
func (f failedConn) Close() error                     { return nil }
func (f failedConn) LocalAddr() net.Addr              { return failedAddr("") }
func (f failedConn) RemoteAddr() net.Addr             { return failedAddr(f.addr) }
func (f failedConn) SetDeadline(time.Time) error      { return nil }
func (f failedConn) SetReadDeadline(time.Time) error  { return nil }
func (f failedConn) SetWriteDeadline(time.Time) error { return nil }

type failedAddr string

func (a failedAddr) Network() string { return "tcp" }
func (a failedAddr) String() string  { return string(a) }

// tuneRedis sets what makes an outage short for the devices: one dial
// attempt per request (go-redis makes five, 100 ms apart, before a
// request may fail; the device and the relay retry anyway), a shorter
// dial timeout, at most 100 ms between a command's retries, and the
// prompt dialer above.
func tuneRedis(o *redis.Options) {
	if o.DialTimeout == 0 {
		o.DialTimeout = redisDialTimeout
	}
	if o.DialerRetries == 0 {
		o.DialerRetries = 1
	}
	if o.MaxRetryBackoff == 0 {
		o.MaxRetryBackoff = 100 * time.Millisecond // go-redis: 512 ms between a command's retries
	}
	o.Dialer = prompt(redis.NewDialer(o))
}

// tuneRedisCluster is tuneRedis for a Cluster client, whose dialer also
// checks each node's certificate against that node (nodeTLS). The dialer
// reads o.TLSConfig when it dials, so settings applied after this call
// (secureRedis) count.
func tuneRedisCluster(o *redis.ClusterOptions) {
	if o.DialTimeout == 0 {
		o.DialTimeout = redisDialTimeout
	}
	if o.DialerRetries == 0 {
		o.DialerRetries = 1
	}
	if o.MaxRetryBackoff == 0 {
		o.MaxRetryBackoff = 100 * time.Millisecond
	}
	o.Dialer = prompt(func(ctx context.Context, network, addr string) (net.Conn, error) {
		opt := &redis.Options{DialTimeout: o.DialTimeout}
		if o.TLSConfig != nil {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			opt.TLSConfig = nodeTLS(o.TLSConfig, host, o.Addrs)
		}
		return redis.NewDialer(opt)(ctx, network, addr)
	})
}

// nodeTLS is the TLS configuration for the Cluster node at host.
//
// go-redis gives every node the configuration of the URL's first host, so
// it checks every node's certificate against that one name: a cluster
// whose nodes each have a certificate of their own fails as soon as a key
// lives on another master (MOVED, or the slot map names it). Here a
// node's certificate must chain to the configured CAs and name either the
// node's address as the cluster announces it (IP or hostname), or one of
// the seed hosts of --redis-url: the name of the cluster that the
// operator configured (managed services announce IP addresses and serve
// one certificate for the cluster's name).
func nodeTLS(base *tls.Config, host string, seeds []string) *tls.Config {
	c := base.Clone()
	if base.InsecureSkipVerify { // skip_verify=true in the URL (Config.Check refuses it for sard): nothing to check
		return c
	}
	if net.ParseIP(host) == nil {
		c.ServerName = host // SNI; for an IP address, the seed's name stays
	}
	names := []string{host}
	for _, s := range seeds {
		if h, _, err := net.SplitHostPort(s); err == nil && !slices.Contains(names, h) {
			names = append(names, h)
		}
	}
	roots := base.RootCAs       // nil: the system's
	c.InsecureSkipVerify = true // the chain and the names are checked just below, and every handshake fails if they are not right
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return &nodeCertError{host: host, err: errors.New("no certificate")}
		}
		leaf, inter := cs.PeerCertificates[0], x509.NewCertPool()
		for _, ic := range cs.PeerCertificates[1:] {
			inter.AddCert(ic)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter}); err != nil {
			return &nodeCertError{host: host, err: err}
		}
		for _, n := range names {
			if leaf.VerifyHostname(n) == nil {
				return nil
			}
		}
		return &nodeCertError{host: host, err: fmt.Errorf("the certificate names %s, not the node's address %s nor a host of --redis-url (%s)",
			certNames(leaf), host, strings.Join(names[1:], ", "))}
	}
	return c
}

// nodeCertError is a Cluster node whose certificate was refused. It
// wraps nothing on purpose: go-redis unwraps a connection's setup error
// once, which would leave only the x509 error without the node.
type nodeCertError struct {
	host string
	err  error
}

func (e *nodeCertError) Error() string {
	return fmt.Sprintf("redis cluster node %s: certificate refused: %v", e.host, e.err)
}

func certNames(c *x509.Certificate) string {
	var n []string
	n = append(n, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		n = append(n, ip.String())
	}
	if len(n) == 0 {
		return "no host"
	}
	return strings.Join(n, ", ")
}

// pingRedis checks that Redis answers: with a Cluster, every master, so
// that a node sard cannot reach or whose certificate it refuses stops the
// start instead of failing the keys that live there later. A refused
// certificate does not get better by trying again: it is final.
func pingRedis(ctx context.Context, c redis.UniversalClient) error {
	var err error
	if cc, ok := c.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			if err := m.Ping(ctx).Err(); err != nil {
				return fmt.Errorf("master %s: %w", m.Options().Addr, err)
			}
			return nil
		})
	} else {
		err = c.Ping(ctx).Err()
	}
	switch {
	case err == nil:
		return nil
	case certRefused(err):
		return backoff.Permanent(fmt.Errorf("%w (is --redis-ca-file the CA bundle of Redis's certificates, and does each certificate name its server?)", err))
	case strings.HasPrefix(err.Error(), "WRONGPASS"):
		return backoff.Permanent(fmt.Errorf("%w (check --redis-user and the password of --redis-password-file or SAR_REDIS_PASSWORD)", err))
	}
	return err
}

// certRefused reports whether err is a server certificate that TLS
// refused.
func certRefused(err error) bool {
	var (
		node     *nodeCertError
		verify   *tls.CertificateVerificationError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
	)
	return errors.As(err, &node) || errors.As(err, &verify) || errors.As(err, &unknown) ||
		errors.As(err, &hostname) || errors.As(err, &invalid)
}
