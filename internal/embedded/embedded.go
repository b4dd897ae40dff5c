// Package embedded starts the backends a zero-configuration server needs:
// an in-process NATS server with JetStream, and a Redis it manages itself
// (a redis-server child process when the binary is on the PATH, else an
// in-process Redis-compatible store).
package embedded

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/redis/go-redis/v9"
)

// NATS is an embedded NATS server.
type NATS struct {
	srv *natsserver.Server
	URL string
	Dir string
}

// StartNATS starts NATS with JetStream on a private loopback port, keeping
// its data under dir/nats.
func StartNATS(dir string) (*NATS, error) {
	store := filepath.Join(dir, "nats")
	if err := os.MkdirAll(store, 0o700); err != nil {
		return nil, fmt.Errorf("embedded: nats dir: %w", err)
	}
	srv, err := natsserver.NewServer(&natsserver.Options{
		ServerName: "sard-embedded", Host: "127.0.0.1", Port: natsserver.RANDOM_PORT,
		JetStream: true, StoreDir: store, NoSigs: true, NoLog: true,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded: nats: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("embedded: nats did not start in 10s")
	}
	return &NATS{srv: srv, URL: srv.ClientURL(), Dir: store}, nil
}

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
