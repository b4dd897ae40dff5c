package testenv

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	// allowSkipEnv, set to 1, turns a missing redis-server into a skip.
	allowSkipEnv = "SAR_TEST_ALLOW_SKIP"

	// readyTimeout bounds how long a server may take to accept clients.
	readyTimeout = 10 * time.Second
	// shutdownTimeout bounds a clean shutdown before the process is killed.
	shutdownTimeout = 10 * time.Second
	// portRetryTimeout bounds how long a restart waits for its port to be
	// free again.
	portRetryTimeout = 5 * time.Second
	// newPortAttempts is how many ports a first start tries before failing.
	newPortAttempts = 3
	// logTailLines is how much of a server's log goes into a failure.
	logTailLines = 30
)

// RedisOption configures StartRedis.
type RedisOption func(*redisConfig)

type redisConfig struct {
	args []string
}

// WithAOF turns on append-only-file persistence with an fsync after every
// write (--appendonly yes --appendfsync always), so every acknowledged write
// survives Restart, even a crash with WithSIGKILL.
func WithAOF() RedisOption {
	return WithRedisArgs("--appendonly", "yes", "--appendfsync", "always")
}

// WithRedisArgs appends redis-server command-line arguments, such as
// WithRedisArgs("--maxmemory", "10mb"). Port, bind address and directory
// are testenv's: do not set them.
func WithRedisArgs(args ...string) RedisOption {
	return func(c *redisConfig) { c.args = append(c.args, args...) }
}

// StopOption configures Redis.Stop and Redis.Restart.
type StopOption func(*stopConfig)

type stopConfig struct {
	kill bool
}

// WithSIGKILL makes Stop kill the server with SIGKILL, as a crash would,
// instead of sending it SHUTDOWN. Only what was written to disk (see WithAOF)
// survives.
func WithSIGKILL() StopOption {
	return func(c *stopConfig) { c.kill = true }
}

// Redis is a redis-server child process on 127.0.0.1, started by StartRedis.
// It keeps its port and working directory across Stop and Start.
type Redis struct {
	tb       testing.TB
	bin      string     // path of redis-server
	dir      string     // working directory: AOF, nodes.conf and the log
	logPath  string     // the server's stdout and stderr, across restarts
	args     []string   // extra arguments, from RedisOptions
	cluster  bool       // a cluster node: busPort is its cluster bus port
	tls      *RedisTLS  // TLS only: port is the TLS port, there is no plaintext one
	resp     respClient // how testenv's own commands reach it
	port     int
	busPort  int
	starts   int       // how many times the process was started
	logShown bool      // a failure message already holds the log's tail
	run      *redisRun // the running process; nil while stopped
}

// redisRun is one life of the redis-server process.
type redisRun struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once cmd.Wait has returned
	err  error         // cmd.Wait's result; read it after done is closed
}

// StartRedis starts redis-server on a free 127.0.0.1 port with a fresh
// tb.TempDir() as working directory, waits until it answers PING and stops
// it when the test ends. RDB snapshots are off (--save ""), and so is AOF
// unless WithAOF is given: without it, data does not survive Restart.
func StartRedis(tb testing.TB, opts ...RedisOption) *Redis {
	tb.Helper()
	var cfg redisConfig
	for _, o := range opts {
		o(&cfg)
	}
	return newRedis(tb, cfg.args, false, nil, respClient{})
}

// newRedis starts a redis-server with args, as a cluster node if cluster is
// true, TLS only if tlsFiles is set; resp is how testenv talks to it.
func newRedis(tb testing.TB, args []string, cluster bool, tlsFiles *RedisTLS, resp respClient) *Redis {
	tb.Helper()
	r := &Redis{
		tb:      tb,
		bin:     redisServerPath(tb),
		dir:     tb.TempDir(),
		args:    args,
		cluster: cluster,
		tls:     tlsFiles,
		resp:    resp,
	}
	r.logPath = filepath.Join(r.dir, "redis-server.log")
	// Registered after TempDir, so it runs before the directory is removed.
	tb.Cleanup(r.cleanup)

	// FreePort's ports are not held until redis-server binds them, and
	// another process may take one meanwhile: then try other ports.
	for attempt := 1; ; attempt++ {
		if cluster {
			ports := freePorts(tb, 2)
			r.port, r.busPort = ports[0], ports[1]
		} else {
			r.port = FreePort(tb)
		}
		err := r.start()
		if err == nil {
			return r
		}
		if !errors.Is(err, errAddrInUse) || attempt == newPortAttempts {
			r.logShown = true // start's errors hold it
			tb.Fatalf("testenv: start redis-server: %v", err)
		}
	}
}

// redisServerPath finds redis-server on PATH, or fails (or skips, with
// SAR_TEST_ALLOW_SKIP=1) the test.
func redisServerPath(tb testing.TB) string {
	tb.Helper()
	path, err := exec.LookPath("redis-server")
	if err == nil {
		return path
	}
	if os.Getenv(allowSkipEnv) == "1" {
		tb.Skipf("testenv: redis-server not found on PATH (%v); skipping because %s=1", err, allowSkipEnv)
	}
	tb.Fatalf("testenv: redis-server not found on PATH (%v): run `make test`, which installs it, "+
		"or set %s=1 to skip tests that need it", err, allowSkipEnv)
	return ""
}

// Addr returns the server's host:port, such as "127.0.0.1:40123".
func (r *Redis) Addr() string {
	return net.JoinHostPort(loopback, strconv.Itoa(r.port))
}

// URL returns the server's URL for database 0, such as
// "redis://127.0.0.1:40123/0", as go-redis's redis.ParseURL reads it.
func (r *Redis) URL() string {
	return "redis://" + r.Addr() + "/0"
}

// Stop stops the server and waits for its process to exit. By default it
// sends SHUTDOWN, a clean stop; with WithSIGKILL it kills the process as a
// crash would. Stopping a stopped server does nothing.
func (r *Redis) Stop(opts ...StopOption) {
	r.tb.Helper()
	var cfg stopConfig
	for _, o := range opts {
		o(&cfg)
	}
	if err := r.stop(cfg.kill); err != nil {
		r.logShown = true
		r.tb.Errorf("testenv: stop redis-server on %s: %v\n%s", r.Addr(), err, r.logTail())
	}
}

// Start starts the stopped server again on the same port and directory, and
// waits until it answers PING. With WithAOF, the data written before Stop
// is back.
func (r *Redis) Start() {
	r.tb.Helper()
	if r.run != nil {
		r.tb.Fatalf("testenv: Start: redis-server on %s is already running", r.Addr())
	}
	// The port must stay the same, so wait for it rather than pick another.
	deadline := time.Now().Add(portRetryTimeout)
	for {
		err := r.start()
		if err == nil {
			return
		}
		if !errors.Is(err, errAddrInUse) || time.Now().After(deadline) {
			r.logShown = true // start's errors hold it
			r.tb.Fatalf("testenv: restart redis-server on %s: %v", r.Addr(), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Restart is Stop(opts...) then Start.
func (r *Redis) Restart(opts ...StopOption) {
	r.tb.Helper()
	r.Stop(opts...)
	r.Start()
}

// argv returns redis-server's command line.
func (r *Redis) argv() []string {
	args := []string{
		"--port", strconv.Itoa(r.port),
	}
	if r.tls != nil {
		args = []string{
			"--port", "0", // no plaintext listener at all
			"--tls-port", strconv.Itoa(r.port),
			"--tls-cert-file", r.tls.CertFile,
			"--tls-key-file", r.tls.KeyFile,
			"--tls-ca-cert-file", r.tls.CAFile,
			"--tls-auth-clients", "no", // clients need no certificate; cluster peers always do
		}
		if r.cluster {
			// The bus and replication over TLS too; the nodes then announce
			// their TLS ports.
			args = append(args, "--tls-cluster", "yes", "--tls-replication", "yes")
		}
	}
	args = append(args,
		"--bind", loopback,
		"--dir", r.dir,
		"--save", "", // no RDB snapshots; WithAOF persists instead
		"--daemonize", "no",
		"--logfile", "", // log to stdout, that is to r.logPath
	)
	if r.cluster {
		args = append(args,
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			// The default bus port, port+10000, may be taken or out of range.
			"--cluster-port", strconv.Itoa(r.busPort),
		)
	}
	return append(args, r.args...)
}

// start starts the process and waits until it is ready. An error wraps
// errAddrInUse when the port was taken.
func (r *Redis) start() error {
	if r.run != nil {
		return errors.New("already running")
	}
	logf, err := os.OpenFile(r.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	r.starts++
	args := r.argv()
	fmt.Fprintf(logf, "=== testenv: start #%d: %s %s\n", r.starts, r.bin, quoteArgs(args))

	cmd := exec.Command(r.bin, args...)
	cmd.Dir = r.dir
	// An *os.File is handed to the child as is: no copying goroutine.
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Its own process group, so that stop can kill the server and any
		// child it forked (AOF rewrite) together.
		Setpgid: true,
		// Killed if the test binary dies without running its cleanups
		// (a panic, a -timeout): no orphan outlives the tests. The kernel
		// sends it when the thread that started the child ends, which in
		// Go happens only if a goroutine exits while locked to its thread
		// (runtime.LockOSThread): nothing in these tests does that.
		Pdeathsig: syscall.SIGKILL,
	}
	err = cmd.Start()
	logf.Close() // the child has its own copy
	if err != nil {
		return fmt.Errorf("run %s: %w", r.bin, err)
	}
	run := &redisRun{cmd: cmd, done: make(chan struct{})}
	go func() {
		// Always reap the process, so that it never stays a zombie.
		run.err = cmd.Wait()
		close(run.done)
	}()
	r.run = run

	if err := r.waitReady(run); err != nil {
		_ = r.stop(true)
		return err
	}
	return nil
}

// waitReady waits until the server started as run answers PING, or fails
// when it exits first or readyTimeout passes.
func (r *Redis) waitReady(run *redisRun) error {
	deadline := time.Now().Add(readyTimeout)
	for {
		select {
		case <-run.done:
			tail := r.logTail()
			if strings.Contains(tail, "Address already in use") {
				return fmt.Errorf("%w: %s\n%s", errAddrInUse, r.Addr(), tail)
			}
			return fmt.Errorf("redis-server exited before it was ready (%v)\n%s", run.err, tail)
		default:
		}
		err := r.ping(run.cmd.Process.Pid)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server on %s not ready after %v: %v\n%s", r.Addr(), readyTimeout, err, r.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ping checks that the server on r.Addr() answers PING (not LOADING) and is
// the process pid, not some other server that took the port meanwhile.
func (r *Redis) ping(pid int) error {
	pong, err := r.resp.str(r.Addr(), time.Second, "PING")
	if err != nil {
		return err
	}
	if pong != "PONG" {
		return fmt.Errorf("PING = %q, want PONG", pong)
	}
	info, err := r.resp.str(r.Addr(), time.Second, "INFO", "server")
	if err != nil {
		return err
	}
	if want := "process_id:" + strconv.Itoa(pid) + "\r\n"; !strings.Contains(info, want) {
		return fmt.Errorf("%s answered by another process: INFO lacks %q", r.Addr(), strings.TrimSpace(want))
	}
	return nil
}

// stop stops the process, if any, killing it at once if kill is set, and
// waits until it is reaped. An error tells that a clean stop failed; the
// process is gone all the same.
func (r *Redis) stop(kill bool) error {
	run := r.run
	if run == nil {
		return nil
	}
	r.run = nil
	pgid := run.cmd.Process.Pid // the leader of its own group (Setpgid)

	var err error
	if !kill {
		// On success SHUTDOWN closes the connection without a reply, so a
		// read error is expected; an error reply means it refused.
		var refused respError
		if _, e := r.resp.do(r.Addr(), shutdownTimeout, "SHUTDOWN"); errors.As(e, &refused) {
			err = fmt.Errorf("SHUTDOWN: %w", e)
		} else {
			select {
			case <-run.done:
				if run.err != nil {
					err = fmt.Errorf("exit after SHUTDOWN: %w", run.err)
				}
			case <-time.After(shutdownTimeout):
				err = fmt.Errorf("still running %v after SHUTDOWN; killed", shutdownTimeout)
			}
		}
	}

	// Kill the whole group: the server if still running, and any child it
	// forked. After a clean exit the leader is already reaped, but its id
	// cannot name another group while one of its children lives, and pids
	// are not reused fast enough for a new group to take it meanwhile.
	if e := syscall.Kill(-pgid, syscall.SIGKILL); e != nil && !errors.Is(e, syscall.ESRCH) && err == nil {
		err = fmt.Errorf("kill process group %d: %w", pgid, e)
	}
	<-run.done
	return err
}

// cleanup stops the server at the end of the test, and shows its log if the
// test failed.
func (r *Redis) cleanup() {
	if r.tb.Failed() && !r.logShown {
		r.tb.Logf("testenv: redis-server on %s:\n%s", r.Addr(), r.logTail())
	}
	if err := r.stop(true); err != nil {
		r.tb.Errorf("testenv: stop redis-server on %s: %v", r.Addr(), err)
	}
}

// logTail returns the last lines of the server's log, with a heading.
func (r *Redis) logTail() string {
	data, err := os.ReadFile(r.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > logTailLines {
		lines = lines[len(lines)-logTailLines:]
	}
	return fmt.Sprintf("--- last lines of %s ---\n%s", r.logPath, strings.Join(lines, "\n"))
}

// quoteArgs joins args for a log line, quoting those that need it.
func quoteArgs(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = a
		if a == "" || strings.ContainsAny(a, " \t\"'\\") {
			q[i] = strconv.Quote(a)
		}
	}
	return strings.Join(q, " ")
}
