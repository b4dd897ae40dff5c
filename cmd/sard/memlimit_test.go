package main

import (
	"log/slog"
	"math"
	"os"
	"runtime/debug"
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
	for _, bad := range []string{"abc", "10MiB", "-5MiB", "160 parsecs"} {
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
	// A ratio that is not a number stops the start.
	os.Unsetenv("GOMEMLIMIT")
	t.Setenv("AUTOMEMLIMIT", "most")
	if _, _, err := setMemoryLimit("", log); err == nil {
		t.Error("AUTOMEMLIMIT=most: no error")
	}
}
