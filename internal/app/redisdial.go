package app

import (
	"context"
	"net"
	"time"

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
	o.Dialer = prompt(redis.NewDialer(&redis.Options{DialTimeout: o.DialTimeout, TLSConfig: o.TLSConfig}))
}
