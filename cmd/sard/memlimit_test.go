package main

import (
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
)

func TestSetMemoryLimit(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })
	log := slog.New(slog.DiscardHandler)
	t.Setenv("GOMEMLIMIT", "") // restored after the test
	os.Unsetenv("GOMEMLIMIT")
	t.Setenv("AUTOMEMLIMIT", "off") // this test must not depend on the machine's cgroup

	for _, tc := range []struct {
		flag string
		want int64
	}{{"160MiB", 160 << 20}, {"200MB", 200_000_000}, {"1GiB", 1 << 30}, {"64MiB", 64 << 20}} {
		debug.SetMemoryLimit(math.MaxInt64)
		got, from, err := setMemoryLimit(tc.flag, log)
		if err != nil || got != tc.want || from != "--memory-limit" {
			t.Errorf("setMemoryLimit(%q) = %d, %q, %v; want %d, --memory-limit", tc.flag, got, from, err, tc.want)
		}
		if rt := debug.SetMemoryLimit(-1); rt != tc.want {
			t.Errorf("after --memory-limit %s the runtime's limit is %d, want %d", tc.flag, rt, tc.want)
		}
	}
	for _, bad := range []string{"abc", "10MiB", "-5MiB", "160 parsecs", "1,5GiB", "9EiB"} {
		debug.SetMemoryLimit(math.MaxInt64)
		if _, _, err := setMemoryLimit(bad, log); err == nil {
			t.Errorf("setMemoryLimit(%q): no error", bad)
		}
		if rt := debug.SetMemoryLimit(-1); rt != math.MaxInt64 {
			t.Errorf("a refused --memory-limit %q changed the runtime's limit to %d", bad, rt)
		}
	}

	// No flag, no GOMEMLIMIT, AUTOMEMLIMIT=off: no limit.
	debug.SetMemoryLimit(math.MaxInt64)
	if got, from, err := setMemoryLimit("", log); err != nil || got != math.MaxInt64 || from != "none" {
		t.Errorf("setMemoryLimit with nothing set = %d, %q, %v; want none", got, from, err)
	}
	// GOMEMLIMIT, applied by the runtime at start: reported, not changed.
	t.Setenv("GOMEMLIMIT", "300MiB")
	debug.SetMemoryLimit(300 << 20)
	if got, from, err := setMemoryLimit("", log); err != nil || got != 300<<20 || from != "GOMEMLIMIT" {
		t.Errorf("setMemoryLimit with GOMEMLIMIT = %d, %q, %v; want %d, GOMEMLIMIT", got, from, err, 300<<20)
	}
	// A ratio that is not a share stops the start; an empty one is unset.
	os.Unsetenv("GOMEMLIMIT")
	for _, bad := range []string{"most", "1.5", "0", "-0.5"} {
		t.Setenv("AUTOMEMLIMIT", bad)
		if _, _, err := setMemoryLimit("", log); err == nil {
			t.Errorf("AUTOMEMLIMIT=%s: no error", bad)
		}
	}
	t.Setenv("AUTOMEMLIMIT", "")
	if _, _, err := setMemoryLimit("", log); err != nil {
		t.Errorf("AUTOMEMLIMIT empty: %v, want it taken as unset", err)
	}
}

// TestMemoryLimitFromContainer runs this test binary in a cgroup (v1) with
// a 600 MiB memory limit and checks that sard's start takes 90 % of it.
// It needs a writable cgroup v1 memory hierarchy (root on a cgroup v1
// machine, as CI's); elsewhere it is skipped.
func TestMemoryLimitFromContainer(t *testing.T) {
	if os.Getenv("SARD_MEMLIMIT_CHILD") == "1" {
		t.Setenv("GOMEMLIMIT", "")
		os.Unsetenv("GOMEMLIMIT")
		os.Unsetenv("AUTOMEMLIMIT")
		limit, from, err := setMemoryLimit("", slog.New(slog.DiscardHandler))
		fmt.Printf("limit=%d from=%s err=%v\n", limit, from, err)
		return
	}
	own := ""
	if b, err := os.ReadFile("/proc/self/cgroup"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if parts := strings.SplitN(line, ":", 3); len(parts) == 3 && parts[1] == "memory" {
				own = parts[2]
			}
		}
	}
	base := filepath.Join("/sys/fs/cgroup/memory", own)
	dir := filepath.Join(base, fmt.Sprintf("sard-test-%d", os.Getpid()))
	if own == "" || os.Mkdir(dir, 0o755) != nil {
		t.Skip("no writable cgroup v1 memory hierarchy here")
	}
	t.Cleanup(func() {
		if err := os.Remove(dir); err != nil {
			t.Logf("remove the test cgroup: %v", err)
		}
	})
	max := int64(600 << 20)
	if err := os.WriteFile(filepath.Join(dir, "memory.limit_in_bytes"), []byte(strconv.FormatInt(max, 10)), 0o644); err != nil {
		t.Skipf("cannot set a cgroup memory limit: %v", err)
	}
	// The cgroups above may limit it further (a CI container's own limit).
	if b, err := os.ReadFile(filepath.Join(dir, "memory.stat")); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "hierarchical_memory_limit "); ok {
				if h, err := strconv.ParseInt(v, 10, 64); err == nil && h < max {
					max = h
				}
			}
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The shell moves itself into the cgroup, then becomes the test binary.
	cmd := exec.Command("sh", "-c", `echo $$ > "$1/cgroup.procs" && exec "$2" -test.run '^TestMemoryLimitFromContainer$'`,
		"sh", dir, self)
	cmd.Env = append(os.Environ(), "SARD_MEMLIMIT_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	want := fmt.Sprintf("limit=%d from=container err=<nil>", int64(float64(max)*0.9))
	if !strings.Contains(string(out), want) {
		t.Errorf("in a cgroup limited to %d bytes: %s; want %q", max, out, want)
	}
}
