package main

import (
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime/debug"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/dustin/go-humanize"
)

// minMemoryLimit is the smallest --memory-limit accepted: below it the
// collector would run all the time on sard's own baseline (about 45 MiB
// idle).
const minMemoryLimit = 64 << 20

// setMemoryLimit sets the Go runtime's soft memory limit, the point at
// which the collector works harder rather than let the heap grow (the
// garbage between collections is otherwise as large as the live heap and
// stacks: docs/bench.md, the memory benchmark). In order:
//
//   - --memory-limit, e.g. 160MiB or 1GB;
//   - GOMEMLIMIT in the environment, which the runtime applied itself;
//   - 90 % of the container's memory limit (cgroup v1 or v2; AUTOMEMLIMIT
//     sets another ratio, AUTOMEMLIMIT=off none), so a container is
//     collected harder before it is killed for its memory;
//   - none.
//
// It returns the limit set (math.MaxInt64: none) and where it came from.
func setMemoryLimit(flag string, log *slog.Logger) (limit int64, from string, err error) {
	if flag != "" {
		n, err := humanize.ParseBytes(flag)
		if err != nil {
			return 0, "", fmt.Errorf("--memory-limit %q: not a size such as 160MiB or 1GB", flag)
		}
		if n < minMemoryLimit || n > math.MaxInt64 {
			return 0, "", fmt.Errorf("--memory-limit %q: at least %s", flag, humanize.IBytes(minMemoryLimit))
		}
		debug.SetMemoryLimit(int64(n))
		return int64(n), "--memory-limit", nil
	}
	if v, ok := os.LookupEnv("GOMEMLIMIT"); ok && v != "" {
		return debug.SetMemoryLimit(-1), "GOMEMLIMIT", nil
	}
	n, err := memlimit.SetGoMemLimitWithOpts(memlimit.WithProvider(memlimit.FromCgroup),
		memlimit.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		if _, set := os.LookupEnv("AUTOMEMLIMIT"); set {
			return 0, "", fmt.Errorf("AUTOMEMLIMIT: %w", err)
		}
		// Not in a cgroup with a memory controller, or one that cannot
		// be read: no limit, Go's default.
		log.Debug("no container memory limit read", "err", err)
	}
	if n <= 0 || n == math.MaxInt64 {
		return math.MaxInt64, "none", nil
	}
	return n, "container", nil
}

// logMemoryLimit reports the limit at start.
func logMemoryLimit(log *slog.Logger, limit int64, from string) {
	if limit == math.MaxInt64 {
		log.Info("no memory limit: the heap may grow to twice the live memory between collections; set --memory-limit (or run in a container with a memory limit)")
		return
	}
	log.Info("memory limit", "limit", humanize.IBytes(uint64(limit)), "limit_bytes", limit, "from", from)
}
