package main

import (
	"os"
	"strings"
	"testing"
	"time"
)

// TestMain lets a test start this test binary as sarctl (the gRPC floor's
// server is a child process of the bench).
func TestMain(m *testing.M) {
	if os.Getenv("SARCTL_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// floorOptions starts the floor's server as this test binary.
func floorOptions(t *testing.T, o benchOptions) benchOptions {
	o.FloorCommand, o.FloorEnv, o.Log = []string{os.Args[0]}, []string{"SARCTL_TEST_MAIN=1"}, t.Output()
	return o
}

func TestGRPCFloor(t *testing.T) {
	t.Parallel()
	const dur = 800 * time.Millisecond
	t.Run("stream", func(t *testing.T) {
		f, err := runGRPCFloor(t.Context(), floorOptions(t, benchOptions{Devices: 3, Batch: 10, Duration: dur, Inflight: 2}))
		if err != nil {
			t.Fatalf("runGRPCFloor: %v", err)
		}
		if f.FixesPerS <= 0 || f.CPUUsPerFix <= 0 {
			t.Errorf("runGRPCFloor = %+v, want a rate and the child's CPU per fix", f)
		}
	})
	t.Run("report, paced", func(t *testing.T) {
		const rate = 300.0
		f, err := runGRPCFloor(t.Context(), floorOptions(t, benchOptions{Devices: 3, Batch: 10, Duration: dur, Inflight: 1, Report: true, Rate: rate}))
		if err != nil {
			t.Fatalf("runGRPCFloor: %v", err)
		}
		// One batch per device every 100 ms from a random phase.
		if f.FixesPerS <= 0 || f.FixesPerS > rate*1.1 || f.CPUUsPerFix <= 0 {
			t.Errorf("runGRPCFloor(--report --rate %v) = %+v, want a rate up to %v and the child's CPU per fix", rate, f, rate)
		}
	})
	t.Run("a server that gives no address", func(t *testing.T) {
		o := benchOptions{Devices: 1, Batch: 1, Duration: dur, Inflight: 1, FloorCommand: []string{"true"}, Log: t.Output()}
		if _, err := runGRPCFloor(t.Context(), o); err == nil || !strings.Contains(err.Error(), "address") {
			t.Errorf("runGRPCFloor with a server that exits at once: %v, want an error about its address", err)
		}
	})
}
