package store

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/sar"
)

// TestGridScripts checks the grid model on real Redis: the posterior
// POAᵢ ∝ wᵢ·e^(−cᵢ) with the maintained total, versions per cell, the
// tracker state's compare-and-set, the event throttle, the write's
// compare-and-set, and retention after close.
func TestGridScripts(t *testing.T) {
	s, rdb := newStore(t, WithRetention(time.Hour))
	ctx := context.Background()
	inc := openIncident(t, s)
	id := inc.GetId()
	const a, b, c, out = 0x8928308280fffff, 0x8928308280bffff, 0x89283082807ffff, 0x89283082877ffff
	ev := func() *sarv1.Event { return &sarv1.Event{Id: sar.NewID(), IncidentId: id, Time: timestamppb.Now()} }
	err := s.PutGrid(ctx, sar.GridWrite{IncidentID: id, Seed: true, Summary: &sarv1.SearchGridSummary{IncidentId: id, Resolution: 9},
		Prior: map[uint64]float64{a: 0.5, b: 0.3, c: 0.1}, RestOfWorld: 0.1, Event: ev()})
	if err != nil {
		t.Fatalf("PutGrid: %v", err)
	}
	if err := s.PutGrid(ctx, sar.GridWrite{IncidentID: id, ExpectVersion: 0, Summary: &sarv1.SearchGridSummary{}, Event: ev()}); !errors.Is(err, sar.ErrGridConflict) {
		t.Errorf("PutGrid at a stale version = %v, want sar.ErrGridConflict", err)
	}
	now := time.Now().UnixMilli()
	add := func(before, after string, cov map[uint64]float64, at int64) sar.CoverageResult {
		t.Helper()
		r, err := s.AddCoverage(ctx, sar.CoverageArgs{IncidentID: id, ParticipantID: "p1", TrackerBefore: before, TrackerAfter: after,
			Coverage: cov, EventDelta: 0.01, EventEveryMs: 5000, NowMs: at})
		if err != nil {
			t.Fatalf("AddCoverage: %v", err)
		}
		return r
	}
	r := add("", "s1", map[uint64]float64{a: 1, out: 0.5}, now)
	z := 0.5*math.Exp(-1) + 0.3 + 0.1 + 0.1
	if r.Version != 2 || r.Changed != 1 || !r.EventDue || math.Abs(r.POS-(1-z)) > 1e-12 || math.Abs(r.RestOfWorld-0.1/z) > 1e-12 {
		t.Errorf("first coverage = %+v, want version 2, 1 changed, event due, POS %v, rest of world %v", r, 1-z, 0.1/z)
	}
	if r := add("", "s2", map[uint64]float64{b: 1}, now); !r.TrackerStale {
		t.Errorf("coverage from a stale tracker state = %+v, want TrackerStale", r)
	}
	r = add("s1", "s2", map[uint64]float64{b: 0.5}, now+1000)
	z += 0.3 * (math.Exp(-0.5) - 1)
	if r.Version != 3 || r.EventDue || math.Abs(r.POS-(1-z)) > 1e-12 {
		t.Errorf("second coverage = %+v, want version 3, no event within 5 s, POS %v", r, 1-z)
	}
	if r := add("s2", "s3", map[uint64]float64{c: 0.01}, now+6000); !r.EventDue {
		t.Errorf("coverage 6 s later, POS moved since the last event: %+v, want an event", r)
	}
	if r := add("s3", "s4", map[uint64]float64{out: 1}, now+20000); r.Changed != 0 || r.Version != 4 || r.EventDue {
		t.Errorf("coverage outside the grid = %+v, want nothing changed at version 4", r)
	}

	g, err := s.LoadGrid(ctx, id, 0)
	if err != nil {
		t.Fatalf("LoadGrid: %v", err)
	}
	total := g.Meta.RestOfWorld
	for _, cs := range g.Cells {
		total += cs.Prior * math.Exp(-cs.Coverage)
	}
	if math.Abs(total-g.Meta.Z) > 1e-12 || g.Cells[out].InGrid || g.Cells[out].Coverage != 1.5 || g.Cells[a].Version != 2 || g.Cells[c].Version != 4 {
		t.Errorf("loaded grid: Σ weights %v, maintained z %v, outside cell %+v, versions a %d c %d", total, g.Meta.Z, g.Cells[out], g.Cells[a].Version, g.Cells[c].Version)
	}
	since, err := s.LoadGrid(ctx, id, 2)
	if err != nil {
		t.Fatalf("LoadGrid since 2: %v", err)
	}
	if len(since.Cells) != 2 || since.Cells[b].Coverage != 0.5 || since.Cells[c].Coverage != 0.01 {
		t.Errorf("cells changed since 2 = %+v, want b and c", since.Cells)
	}

	// A rebase prepared from the snapshot at version 1 (before any
	// coverage) is renumbered, not refused, and the maintained total takes
	// the coverage added since into account — also for a cell that was
	// covered while outside the grid and that the rebase brings in (a clue
	// that widens the area).
	w := sar.GridWrite{IncidentID: id, ExpectWriteVersion: 1, ExpectVersion: 1, Summary: &sarv1.SearchGridSummary{IncidentId: id, Resolution: 9},
		Prior: map[uint64]float64{a: 0.4, b: 0.35, c: 0.1, out: 0.1}, RestOfWorld: 0.05, Event: ev()}
	var moved *sar.VersionMovedError
	if err := s.PutGrid(ctx, w); !errors.As(err, &moved) || moved.Current != 4 {
		t.Fatalf("PutGrid after coverage = %v, want sar.VersionMovedError at 4", err)
	}
	w.ExpectVersion = 4
	if err := s.PutGrid(ctx, w); err != nil {
		t.Fatalf("PutGrid renumbered: %v", err)
	}
	g, err = s.LoadGrid(ctx, id, 0)
	if err != nil {
		t.Fatalf("LoadGrid: %v", err)
	}
	total = g.Meta.RestOfWorld
	for _, cs := range g.Cells {
		total += cs.Prior * math.Exp(-cs.Coverage)
	}
	if math.Abs(total-g.Meta.Z) > 1e-12 || g.Meta.Version != 5 || g.Meta.WriteVersion != 2 || g.Meta.SeedVersion != 1 || g.Cells[a].Version != 5 {
		t.Errorf("after the rebase: Σ weights %v, maintained z %v, meta %+v, version of a %d; want equal totals, version 5, write version 2",
			total, g.Meta.Z, g.Meta, g.Cells[a].Version)
	}
	if err := s.PutGrid(ctx, w); !errors.Is(err, sar.ErrGridConflict) {
		t.Errorf("PutGrid from the same snapshot again = %v, want sar.ErrGridConflict", err)
	}

	// Close: the grid and the tracker states (precise positions) expire.
	if _, err := s.UpdateIncident(ctx, id, func(i *sarv1.Incident) (*sarv1.Event, error) {
		i.State = sarv1.IncidentState_INCIDENT_STATE_CLOSED
		return ev(), nil
	}); err != nil {
		t.Fatalf("UpdateIncident: %v", err)
	}
	for _, k := range []string{kGrid(id), kGridPrior(id), kGridCov(id), kGridVer(id), kGridTrk(id)} {
		if ttl, _ := rdb.TTL(ctx, k).Result(); ttl <= 0 || ttl > time.Hour {
			t.Errorf("TTL(%s) = %v, want the 1h retention", k, ttl)
		}
	}
	if r := add("s4", "s5", map[uint64]float64{a: 1}, now+30000); !r.NoGrid {
		t.Errorf("coverage after close = %+v, want NoGrid", r)
	}
	err = s.PutGrid(ctx, sar.GridWrite{IncidentID: id, ExpectWriteVersion: 2, ExpectVersion: 5, Summary: &sarv1.SearchGridSummary{}, Event: ev()})
	if sar.KindOf(err) != sar.KindFailedPrecondition {
		t.Errorf("PutGrid after close = %v, want FailedPrecondition", err)
	}
}
