package main

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

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
		// ParseBytes drops commas ("1,5GiB" would be 15 GiB): refused.
		if err != nil || strings.Contains(flag, ",") {
			return 0, "", fmt.Errorf("--memory-limit %q: not a size such as 160MiB, 1.5GiB or 1GB", flag)
		}
		if n < minMemoryLimit || n > math.MaxInt64 {
			return 0, "", fmt.Errorf("--memory-limit %q: from %s to 8 EiB", flag, humanize.IBytes(minMemoryLimit))
		}
		debug.SetMemoryLimit(int64(n))
		return int64(n), "--memory-limit", nil
	}
	if v := os.Getenv("GOMEMLIMIT"); v != "" {
		return debug.SetMemoryLimit(-1), "GOMEMLIMIT", nil
	}
	// automemlimit takes a GOMEMLIMIT or AUTOMEMLIMIT that is set but
	// empty (GOMEMLIMIT=${X} in a compose file) as given: as for the
	// runtime, empty is unset.
	for _, name := range []string{"GOMEMLIMIT", "AUTOMEMLIMIT"} {
		if v, ok := os.LookupEnv(name); ok && v == "" {
			_ = os.Unsetenv(name)
		}
	}
	ratio := os.Getenv("AUTOMEMLIMIT")
	if ratio != "" && ratio != "off" {
		if r, err := strconv.ParseFloat(ratio, 64); err != nil || !(r > 0 && r <= 1) {
			return 0, "", fmt.Errorf("AUTOMEMLIMIT=%q: a share of the container's memory limit, more than 0 and at most 1 (or off)", ratio)
		}
	}
	n, err := memlimit.SetGoMemLimitWithOpts(memlimit.WithProvider(memlimit.FromCgroup),
		memlimit.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		// Not in a cgroup with a memory controller, or one that cannot
		// be read: no limit, Go's default. Worth a warning only when a
		// ratio was asked for.
		lvl := slog.LevelDebug
		if ratio != "" && ratio != "off" {
			lvl = slog.LevelWarn
		}
		log.Log(context.Background(), lvl, "no container memory limit read", "err", err)
	}
	if n <= 0 || n == math.MaxInt64 {
		return math.MaxInt64, "none", nil
	}
	return n, "container", nil
}

// logMemoryLimit reports the limit at start.
func logMemoryLimit(log *slog.Logger, limit int64, from string) {
	if limit == math.MaxInt64 && from == "GOMEMLIMIT" {
		log.Info("no memory limit (GOMEMLIMIT=off)")
		return
	}
	if limit == math.MaxInt64 {
		log.Info("no memory limit: the heap may grow to twice the live memory between collections; set --memory-limit (or run in a container with a memory limit)")
		return
	}
	log.Info("memory limit", "limit", humanize.IBytes(uint64(limit)), "limit_bytes", limit, "from", from)
}
