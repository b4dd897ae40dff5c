package testenv

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/redis/go-redis/v9"
)

// newRedisClient returns a go-redis client for r, closed when the test ends.
// Each of tweaks may change its options.
func newRedisClient(t *testing.T, r *Redis, tweaks ...func(*redis.Options)) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(r.URL())
	if err != nil {
		t.Fatalf("redis.ParseURL(%q) = %v", r.URL(), err)
	}
	if opts.Addr != r.Addr() {
		t.Fatalf("redis.ParseURL(%q).Addr = %q, want %q", r.URL(), opts.Addr, r.Addr())
	}
	for _, tweak := range tweaks {
		tweak(opts)
	}
	c := redis.NewClient(opts)
	t.Cleanup(func() { c.Close() })
	return c
}

func mustSet(ctx context.Context, t *testing.T, c *redis.Client, key, value string) {
	t.Helper()
	if err := c.Set(ctx, key, value, 0).Err(); err != nil {
		t.Fatalf("SET %s = %v", key, err)
	}
}

func checkGet(ctx context.Context, t *testing.T, c *redis.Client, key, want string) {
	t.Helper()
	got, err := c.Get(ctx, key).Result()
	if err != nil || got != want {
		t.Errorf("GET %s = %q, %v; want %q, nil", key, got, err, want)
	}
}

// checkReaped checks that process pid is gone: neither running nor a
// zombie (kill(pid, 0) succeeds on a zombie).
func checkReaped(t *testing.T, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("kill(%d, 0) = %v, want ESRCH: process not reaped", pid, err)
	}
}

func TestRedisAOFKeepsDataAcrossRestarts(t *testing.T) {
	ctx := t.Context()
	r := StartRedis(t, WithAOF())
	c := newRedisClient(t, r)

	mustSet(ctx, t, c, "incident:1", "open")
	r.Restart() // clean SHUTDOWN
	checkGet(ctx, t, c, "incident:1", "open")

	// appendfsync always: an acknowledged write survives a crash too.
	mustSet(ctx, t, c, "incident:2", "found")
	r.Restart(WithSIGKILL())
	checkGet(ctx, t, c, "incident:1", "open")
	checkGet(ctx, t, c, "incident:2", "found")
}

func TestRedisWithoutAOFLosesDataOnRestart(t *testing.T) {
	ctx := t.Context()
	r := StartRedis(t)
	c := newRedisClient(t, r)

	mustSet(ctx, t, c, "incident:1", "open")
	r.Restart() // SHUTDOWN with --save "" writes no snapshot
	if got, err := c.Get(ctx, "incident:1").Result(); !errors.Is(err, redis.Nil) {
		t.Errorf("GET incident:1 after restart without AOF = %q, %v; want redis.Nil", got, err)
	}
}

func TestRedisKillThenStart(t *testing.T) {
	ctx := t.Context()
	r := StartRedis(t)
	c := newRedisClient(t, r)
	// A client that gives up at once, to see the outage without waiting.
	impatient := newRedisClient(t, r, func(o *redis.Options) { o.MaxRetries, o.DialerRetries = -1, 1 })
	addr := r.Addr()
	mustSet(ctx, t, c, "k", "v")
	if err := impatient.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING = %v, want nil", err)
	}

	pid := r.run.cmd.Process.Pid
	r.Stop(WithSIGKILL())
	checkReaped(t, pid)
	if err := impatient.Ping(ctx).Err(); err == nil {
		t.Fatal("PING after Stop(WithSIGKILL()) = nil, want an error")
	}
	r.Stop() // stopping a stopped server does nothing

	r.Start()
	if r.Addr() != addr {
		t.Errorf("Addr() after Start = %q, want %q", r.Addr(), addr)
	}
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after Start = %v, want nil", err)
	}
	mustSet(ctx, t, c, "k", "v2")
	checkGet(ctx, t, c, "k", "v2")

	pid = r.run.cmd.Process.Pid
	r.Stop()
	checkReaped(t, pid)
}

// recordingTB records the first Fatalf or Skipf and ends the goroutine, as
// testing.T does; the rest goes to the embedded testing.TB.
type recordingTB struct {
	testing.TB
	fatal, skip string
}

func (r *recordingTB) Helper() {}

func (r *recordingTB) Fatalf(format string, args ...any) {
	r.fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (r *recordingTB) Skipf(format string, args ...any) {
	r.skip = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// startRedisRecorded runs StartRedis on a recordingTB in its own goroutine,
// since Fatalf and Skipf end the goroutine.
func startRedisRecorded(t *testing.T) *recordingTB {
	rec := &recordingTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		StartRedis(rec)
		t.Error("StartRedis without redis-server on PATH returned")
	}()
	<-done
	return rec
}

func TestRedisMissingBinary(t *testing.T) {
	t.Setenv("PATH", t.TempDir())

	t.Setenv(allowSkipEnv, "")
	rec := startRedisRecorded(t)
	if !strings.Contains(rec.fatal, "make test") || !strings.Contains(rec.fatal, allowSkipEnv) {
		t.Errorf("StartRedis without redis-server: Fatalf(%q), want a message naming `make test` and %s", rec.fatal, allowSkipEnv)
	}
	if rec.skip != "" {
		t.Errorf("StartRedis without redis-server: Skipf(%q), want no skip", rec.skip)
	}

	t.Setenv(allowSkipEnv, "1")
	rec = startRedisRecorded(t)
	if rec.skip == "" || rec.fatal != "" {
		t.Errorf("StartRedis without redis-server, %s=1: Skipf(%q), Fatalf(%q); want a skip only", allowSkipEnv, rec.skip, rec.fatal)
	}
}
