// Package embedded starts the backends a zero-configuration server needs:
// an in-process NATS server with JetStream, and a Redis it manages itself
// (a redis-server child process when the binary is on the PATH, else an
// in-process Redis-compatible store).
package embedded

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/redis/go-redis/v9"
)

// NATS is an embedded NATS server.
type NATS struct {
	srv *natsserver.Server
	// URL is how sard reaches it: nats://, on loopback; with TLS, the
	// scheme of an in-process connection (InProcessConn).
	URL string
	// ListenURL is how other systems reach it: URL, or tls://... with TLS.
	ListenURL string
	Dir       string
	Users     int // nkey users, 0 without authorization
}

// NATSOptions configure the embedded NATS server.
type NATSOptions struct {
	// Listen is the client address (host:port); empty for a private
	// loopback port.
	Listen string
	// Users are nkey users with their permissions (LoadAuthorization);
	// none: every client may do anything.
	Users []*natsserver.NkeyUser
	// TLS, if set, is the listener's TLS configuration: every client over
	// the network must speak TLS. In-process connections need none.
	TLS *tls.Config
}

// LoadAuthorization reads the nkey users of a nats-server authorization
// file as nats-server would.
func LoadAuthorization(file string) ([]*natsserver.NkeyUser, error) {
	o, err := natsserver.ProcessConfigFile(file)
	if err != nil {
		return nil, fmt.Errorf("nats authorization file: %w", err)
	}
	if len(o.Users) > 0 || o.Username != "" || o.Authorization != "" {
		return nil, fmt.Errorf("nats authorization file %s: only nkey users are supported", file)
	}
	if len(o.Nkeys) == 0 {
		return nil, fmt.Errorf("nats authorization file %s: no nkey users", file)
	}
	return o.Nkeys, nil
}

// StartNATS starts NATS with JetStream, keeping its data under dir/nats:
// on a private loopback port, or as opts say.
func StartNATS(dir string, opts ...NATSOptions) (*NATS, error) {
	var o NATSOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	store := filepath.Join(dir, "nats")
	if err := os.MkdirAll(store, 0o700); err != nil {
		return nil, fmt.Errorf("embedded: nats dir: %w", err)
	}
	so := &natsserver.Options{
		ServerName: "sard-embedded", Host: "127.0.0.1", Port: natsserver.RANDOM_PORT,
		JetStream: true, StoreDir: store, NoSigs: true, NoLog: true,
	}
	if o.Listen != "" {
		host, port, err := net.SplitHostPort(o.Listen)
		if err != nil {
			return nil, fmt.Errorf("embedded: nats listen address %q: %w", o.Listen, err)
		}
		if so.Port, err = strconv.Atoi(port); err != nil {
			return nil, fmt.Errorf("embedded: nats listen address %q: bad port", o.Listen)
		}
		so.Host = host
		if host == "" {
			so.Host = "0.0.0.0"
		}
	}
	so.Nkeys = o.Users
	if o.TLS != nil {
		so.TLS, so.TLSConfig, so.TLSTimeout = true, o.TLS, 2
	}
	srv, err := natsserver.NewServer(so)
	if err != nil {
		return nil, fmt.Errorf("embedded: nats: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("embedded: nats did not start in 10s on %s:%d (address in use?)", so.Host, so.Port)
	}
	// sard's own URL: nats:// even with TLS, where sard connects in-process.
	url := "nats://" + strings.TrimPrefix(strings.TrimPrefix(srv.ClientURL(), "tls://"), "nats://")
	if ip := net.ParseIP(so.Host); ip != nil && ip.IsUnspecified() {
		// Listening on every interface: sard itself connects over loopback.
		if a, ok := srv.Addr().(*net.TCPAddr); ok {
			url = "nats://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(a.Port))
		}
	}
	n := &NATS{srv: srv, URL: url, ListenURL: url, Dir: store, Users: len(so.Nkeys)}
	if o.TLS != nil {
		n.ListenURL = "tls://" + strings.TrimPrefix(url, "nats://")
	}
	return n, nil
}

// InProcessConn is a client connection inside this process, which never
// crosses a network (nats.InProcessServer).
func (n *NATS) InProcessConn() (net.Conn, error) { return n.srv.InProcessConn() }

// Close stops the server.
func (n *NATS) Close() {
	n.srv.Shutdown()
	n.srv.WaitForShutdown()
}

// Redis is a Redis the server manages itself.
type Redis struct {
	URL  string
	Kind string // "redis-server" or "miniredis"
	Dir  string // data directory (redis-server only)
	cmd  *exec.Cmd
	mini *miniredis.Miniredis
}

// StartRedis starts redis-server as a child process on a free loopback
// port, with append-only persistence under dir/redis, when the binary is on
// the PATH; else an in-process miniredis (in memory: nothing survives a
// restart). The child's log goes to dir/redis/redis.log.
func StartRedis(ctx context.Context, dir string) (*Redis, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		m, err := miniredis.Run()
		if err != nil {
			return nil, fmt.Errorf("embedded: miniredis: %w", err)
		}
		return &Redis{URL: "redis://" + m.Addr() + "/0", Kind: "miniredis", mini: m}, nil
	}
	rdir, err := filepath.Abs(filepath.Join(dir, "redis"))
	if err != nil {
		return nil, fmt.Errorf("embedded: redis dir: %w", err)
	}
	if err := os.MkdirAll(rdir, 0o700); err != nil {
		return nil, fmt.Errorf("embedded: redis dir: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--dir", rdir,
		"--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--protected-mode", "yes",
		"--logfile", filepath.Join(rdir, "redis.log"))
	// Own process group: a Ctrl-C to sard does not kill Redis before sard
	// has drained; sard stops it last.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("embedded: start redis-server: %w", err)
	}
	r := &Redis{URL: fmt.Sprintf("redis://127.0.0.1:%d/0", port), Kind: "redis-server", Dir: rdir, cmd: cmd}
	if err := waitRedis(ctx, r.URL, 10*time.Second); err != nil {
		r.Close()
		return nil, fmt.Errorf("embedded: redis-server (log in %s): %w", rdir, err)
	}
	return r, nil
}

// Close stops Redis (redis-server flushes its append-only file on SIGTERM).
func (r *Redis) Close() {
	if r.mini != nil {
		r.mini.Close()
	}
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = r.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = r.cmd.Process.Kill()
			<-done
		}
	}
}

func waitRedis(ctx context.Context, url string, d time.Duration) error {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return err
	}
	c := redis.NewClient(opt)
	defer c.Close()
	deadline := time.Now().Add(d)
	for {
		err := c.Ping(ctx).Err()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("embedded: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// PID is the redis-server child's process id, or 0 for miniredis.
func (r *Redis) PID() int {
	if r.cmd == nil || r.cmd.Process == nil {
		return 0
	}
	return r.cmd.Process.Pid
}
