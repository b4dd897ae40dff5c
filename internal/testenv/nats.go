package testenv

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// NATSOption configures StartNATS.
type NATSOption func(*natsConfig)

type natsConfig struct {
	configure []func(*server.Options)
}

// WithNATSServerOptions lets fn change the server's options before each
// start, for example to set limits or turn JetStream off. Host, Port and
// StoreDir are testenv's: they are set again after fn.
func WithNATSServerOptions(fn func(o *server.Options)) NATSOption {
	return func(c *natsConfig) { c.configure = append(c.configure, fn) }
}

// NATS is a nats-server with JetStream, running inside the test binary on
// 127.0.0.1, started by StartNATS. It keeps its port and store directory
// across Shutdown and Start, so JetStream streams and messages survive.
type NATS struct {
	tb        testing.TB
	port      int
	storeDir  string
	configure []func(*server.Options)
	srv       *server.Server // nil while shut down
}

// StartNATS starts a nats-server with JetStream on a free 127.0.0.1 port,
// with a tb.TempDir() as JetStream store, waits until it accepts clients and
// shuts it down when the test ends. It logs nothing and ignores signals.
func StartNATS(tb testing.TB, opts ...NATSOption) *NATS {
	tb.Helper()
	var cfg natsConfig
	for _, o := range opts {
		o(&cfg)
	}
	n := &NATS{tb: tb, storeDir: tb.TempDir(), configure: cfg.configure}
	// Registered after TempDir, so it runs before the directory is removed.
	tb.Cleanup(n.Shutdown)

	// The port may be taken between FreePort and the listen: try others.
	for attempt := 1; ; attempt++ {
		n.port = FreePort(tb)
		err := n.start()
		if err == nil {
			return n
		}
		if !errors.Is(err, errAddrInUse) || attempt == newPortAttempts {
			tb.Fatalf("testenv: start nats-server: %v", err)
		}
	}
}

// URL returns the server's client URL, such as "nats://127.0.0.1:40123".
func (n *NATS) URL() string {
	return "nats://" + n.addr()
}

func (n *NATS) addr() string {
	return net.JoinHostPort(loopback, strconv.Itoa(n.port))
}

// Server returns the running server, or nil while it is shut down. A Start
// makes a new one.
func (n *NATS) Server() *server.Server {
	return n.srv
}

// Shutdown stops the server, as if the broker crashed or went down for a
// restart, and waits until it has stopped: clients see their connection
// drop. Shutting down a stopped server does nothing.
func (n *NATS) Shutdown() {
	if n.srv == nil {
		return
	}
	n.srv.Shutdown()
	n.srv.WaitForShutdown()
	n.srv = nil
}

// Start starts a new server on the same port and store directory as before
// and waits until it accepts clients: JetStream recovers its streams, and
// clients with reconnect options come back by themselves.
func (n *NATS) Start() {
	n.tb.Helper()
	if n.srv != nil {
		n.tb.Fatalf("testenv: Start: nats-server on %s is already running", n.addr())
	}
	// The old listener may hold the port for a moment: wait for it.
	deadline := time.Now().Add(portRetryTimeout)
	for {
		err := n.start()
		if err == nil {
			return
		}
		if !errors.Is(err, errAddrInUse) || time.Now().After(deadline) {
			n.tb.Fatalf("testenv: restart nats-server on %s: %v", n.addr(), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Restart is Shutdown then Start.
func (n *NATS) Restart() {
	n.tb.Helper()
	n.Shutdown()
	n.Start()
}

// options returns fresh server options: NewServer changes the ones it is
// given, so each start needs its own.
func (n *NATS) options() *server.Options {
	o := &server.Options{
		ServerName: "testenv-nats", // the same name at every start
		JetStream:  true,
		NoLog:      true,
		NoSigs:     true,
	}
	for _, fn := range n.configure {
		fn(o)
	}
	o.Host, o.Port, o.StoreDir = loopback, n.port, n.storeDir
	return o
}

// start starts a server and waits until it is ready. An error wraps
// errAddrInUse when the port is taken.
func (n *NATS) start() error {
	// With logging off, the server would only fail to become ready if its
	// port were taken; check the port first to tell why, and fast.
	l, err := net.Listen("tcp", n.addr())
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("%w: %v", errAddrInUse, err)
		}
		return err
	}
	if err := l.Close(); err != nil {
		return err
	}

	opts := n.options()
	srv, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("new server: %w", err)
	}
	srv.Start() // returns once it listens, or failed to
	var fail error
	switch {
	case !srv.ReadyForConnections(readyTimeout):
		// Someone took the port since the check above.
		fail = fmt.Errorf("%w: not ready for connections on %s after %v", errAddrInUse, n.addr(), readyTimeout)
	case opts.JetStream && !srv.JetStreamEnabled():
		fail = fmt.Errorf("JetStream is not enabled (store %s)", n.storeDir)
	}
	if fail != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
		return fail
	}
	n.srv = srv
	return nil
}
