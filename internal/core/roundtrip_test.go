package core

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/sar"
)

// roundTrips counts the round trips to Redis (a command or a pipeline)
// and names them: the command, or the script's first line for EVALSHA.
type roundTrips struct {
	mu    sync.Mutex
	on    bool
	names []string
}

func (h *roundTrips) note(cmds ...redis.Cmder) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.on {
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
		h.note(cmd)
		return next(ctx, cmd)
	}
}

func (h *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.note(cmds...)
		return next(ctx, cmds)
	}
}

// A rescuer's batch on an incident with a search plan costs three round
// trips: the ingest script (which answers the grid's meta and the tracker
// state) and the two coverage scripts; no separate read of the tracker
// state. The coverage it adds is what the grid then shows.
func TestRescuerBatchRoundTrips(t *testing.T) {
	h := &roundTrips{}
	s, ctx, _ := benchService(t, h)
	if err := s.st.(interface{ LoadScripts(context.Context) error }).LoadScripts(ctx); err != nil {
		t.Fatal(err) // else the first run of each script pays a NOSCRIPT round trip
	}
	rctx, p, inc := rescuerOnPlan(t, s, ctx)
	t0 := time.Now().Add(-time.Hour)
	batch := func(seq uint64) *sarv1.FixBatch {
		return &sarv1.FixBatch{IncidentId: inc.GetId(), DeviceId: "phone", Fixes: benchFixes(seq, 10, t0)}
	}
	if _, err := s.Ingest(rctx, p, batch(1)); err != nil { // warms the caches (incident, device owner)
		t.Fatal(err)
	}
	g0, err := s.loadGrid(ctx, inc.GetId())
	if err != nil {
		t.Fatal(err)
	}
	h.start()
	ack, err := s.Ingest(rctx, p, batch(11))
	names := h.stop()
	if err != nil {
		t.Fatal(err)
	}
	if len(ack.GetStored()) != 10 {
		t.Fatalf("stored %v", ack.GetStored())
	}
	evalsha := slices.DeleteFunc(slices.Clone(names), func(n string) bool { return n != "evalsha" })
	if len(names) != 3 || len(evalsha) != 3 {
		t.Fatalf("round trips of a rescuer's batch: %q, want 3 script runs (ingest, coverage, coverage total)", names)
	}
	g1, err := s.loadGrid(ctx, inc.GetId())
	if err != nil {
		t.Fatal(err)
	}
	if g1.meta.Version <= g0.meta.Version {
		t.Fatalf("grid version %d after the batch, %d before: no coverage added", g1.meta.Version, g0.meta.Version)
	}
}

// A caller's batch that moved its last position decides on the grid's meta
// the ingest script answered with the batch: no read of its own.
func TestCallerBatchUsesTheIngestScriptsGridMeta(t *testing.T) {
	inc := ruleIncident()
	var calls []sar.IngestArgs
	f := ruleFix(1, 30.5)
	meta := sar.GridMeta{Summary: &sarv1.SearchGridSummary{IncidentId: inc.GetId(), Resolution: 9}, Version: 3} // does not follow caller fixes
	st := ingestStore(inc, sar.IngestResult{AckedThrough: 1, Stored: 1, LastChanged: true, Last: f, HasGrid: true,
		Search: &sar.Searcher{Meta: meta, HasGrid: true}}, &calls)
	st.GridMetaFn = func(context.Context, string) (sar.GridMeta, error) {
		t.Error("GridMeta read: the ingest script answered it")
		return meta, nil
	}
	s := newRuleService(t, st, &fakeBus{})
	p := &sarv1.Principal{CredentialId: "cred1", Role: sarv1.Role_ROLE_CALLER, IncidentId: inc.GetId(), ParticipantId: "p1"}
	if _, err := s.Ingest(context.Background(), p, &sarv1.FixBatch{IncidentId: inc.GetId(), DeviceId: "phone1",
		Fixes: []*sarv1.LocationFix{f}}); err != nil {
		t.Fatal(err)
	}
	if len(calls) != 1 || calls[0].Want != sar.WantGrid {
		t.Fatalf("ingest calls %+v, want one asking for the grid (WantGrid)", calls)
	}
}
