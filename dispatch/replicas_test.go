package dispatch_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mountain-sar/sar/dispatch"
	"github.com/mountain-sar/sar/internal/testenv"
)

// On a NATS cluster, EnsureStream raises SAR_EVENTS to the configured
// replicas and never lowers them: a replica of sard started with the
// default of 1 must not take away the copies the others rely on.
func TestEnsureStreamRaisesReplicasNeverLowers(t *testing.T) {
	c := testenv.StartNATSCluster(t, 3)
	nc, err := nats.Connect(c.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	replicas := func() int {
		t.Helper()
		s, err := js.Stream(ctx, dispatch.StreamName)
		if err != nil {
			t.Fatalf("stream %s: %v", dispatch.StreamName, err)
		}
		return s.CachedInfo().Config.Replicas
	}
	for _, step := range []struct{ configured, want int }{{1, 1}, {3, 3}, {1, 3}} {
		bus, err := dispatch.New(nc, dispatch.WithReplicas(step.configured))
		if err != nil {
			t.Fatal(err)
		}
		if err := bus.EnsureStream(ctx); err != nil {
			t.Fatalf("EnsureStream(replicas %d) = %v", step.configured, err)
		}
		if got := replicas(); got != step.want {
			t.Errorf("after EnsureStream with replicas %d: stream replicas = %d, want %d", step.configured, got, step.want)
		}
	}
}
