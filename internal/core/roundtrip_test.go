package core

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/sar"
)

// roundTrips counts the round trips to Redis (a command or a pipeline)
// made with a context carrying onRequest, and names them by their
// commands: the request's own, not the background work's.
type roundTrips struct {
	mu    sync.Mutex
	on    bool
	names []string
}

type onRequest struct{}

func (h *roundTrips) note(ctx context.Context, cmds ...redis.Cmder) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.on || ctx.Value(onRequest{}) == nil {
		return
	}
	var parts []string
	for _, c := range cmds {
		parts = append(parts, strings.ToLower(c.Name()))
	}
	h.names = append(h.names, strings.Join(parts, "+"))
}

func (h *roundTrips) start() { h.mu.Lock(); h.on, h.names = true, nil; h.mu.Unlock() }

func (h *roundTrips) stop() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.on = false
	return h.names
}

func (h *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.note(ctx, cmd)
		return next(ctx, cmd)
	}
}

func (h *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.note(ctx, cmds...)
		return next(ctx, cmds)
	}
}

// A rescuer's batch on an incident with a search plan is acknowledged
// after one round trip, the ingest script, which also queues its search
// work; the worker then credits the coverage, and the queue ends empty.
func TestRescuerBatchRoundTrips(t *testing.T) {
	h := &roundTrips{}
	s, ctx, _ := benchService(t, h)
	if err := s.st.(interface{ LoadScripts(context.Context) error }).LoadScripts(ctx); err != nil {
		t.Fatal(err) // else the first run of each script pays a NOSCRIPT round trip
	}
	rctx, p, inc := rescuerOnPlan(t, s, ctx)
	rctx = context.WithValue(rctx, onRequest{}, true)
	t0 := time.Now().Add(-time.Hour)
	batch := func(seq uint64) *sarv1.FixBatch {
		return &sarv1.FixBatch{IncidentId: inc.GetId(), DeviceId: "phone", Fixes: benchFixes(seq, 10, t0)}
	}
	if _, err := s.Ingest(rctx, p, batch(1)); err != nil { // warms the caches (incident, device owner)
		t.Fatal(err)
	}
	g0 := waitCovered(t, s, ctx, inc.GetId(), 0)
	h.start()
	ack, err := s.Ingest(rctx, p, batch(11))
	names := h.stop()
	if err != nil {
		t.Fatal(err)
	}
	if len(ack.GetStored()) != 10 {
		t.Fatalf("stored %v", ack.GetStored())
	}
	if len(names) != 1 || names[0] != "evalsha" {
		t.Fatalf("round trips of a rescuer's batch before its ack: %q, want 1 script run (ingest)", names)
	}
	waitCovered(t, s, ctx, inc.GetId(), g0)
}

// waitCovered waits until the incident's queue of search work is empty and
// the grid's version is above after, and returns the version.
func waitCovered(t *testing.T, s *Service, ctx context.Context, id string, after int64) int64 {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		items, err := s.st.SearchWork(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		g, err := s.loadGrid(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if len(items) == 0 && g.meta.Version > after {
			return g.meta.Version
		}
		if time.Now().After(deadline) {
			t.Fatalf("search work %+v, grid version %d: the coverage was not credited (want a version above %d)", items, g.meta.Version, after)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A caller's batch queues its search work (following its position) with
// the batch: nothing about the grid is read before the ack.
func TestCallerBatchQueuesItsSearchWork(t *testing.T) {
	inc := ruleIncident()
	var calls []sar.IngestArgs
	f := ruleFix(1, 30.5)
	st := ingestStore(inc, sar.IngestResult{AckedThrough: 1, Stored: 1, LastChanged: true, Last: f, HasGrid: true}, &calls)
	st.GridMetaFn = func(context.Context, string) (sar.GridMeta, error) {
		t.Error("GridMeta read before the ack")
		return sar.GridMeta{}, nil
	}
	s := newRuleService(t, st, &fakeBus{})
	p := &sarv1.Principal{CredentialId: "cred1", Role: sarv1.Role_ROLE_CALLER, IncidentId: inc.GetId(), ParticipantId: "p1"}
	if _, err := s.Ingest(context.Background(), p, &sarv1.FixBatch{IncidentId: inc.GetId(), DeviceId: "phone1",
		Fixes: []*sarv1.LocationFix{f}}); err != nil {
		t.Fatal(err)
	}
	if len(calls) != 1 || calls[0].Queue != sar.WorkFollow || calls[0].NowMs == 0 {
		t.Fatalf("ingest calls %+v, want one queueing the caller's search work", calls)
	}
}
