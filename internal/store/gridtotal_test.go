package store

import (
	"context"
	"errors"
	"math"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/geo"
	"github.com/mountain-sar/sar/internal/sar"
)

// fullTotal is the total of a whole grid read, as readers compute it.
func fullTotal(g *sar.Grid) float64 {
	z := g.Meta.RestOfWorld
	for _, c := range g.Cells {
		if c.InGrid {
			z += geo.Undetected(c.Prior, c.Coverage)
		}
	}
	return z
}

// TestGridTotalFullAndIncremental: after several coverage batches, some
// racing from two searchers on the same cells, some outside the grid, and
// a rebase in between, the total of a whole read (Σ geo.Undetected) and
// the total an incremental read returns agree, and no coverage was lost.
func TestGridTotalFullAndIncremental(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	id := openIncident(t, s).GetId()
	const a, b, c, out = 0x8928308280fffff, 0x8928308280bffff, 0x89283082807ffff, 0x89283082877ffff
	ev := func() *sarv1.Event { return &sarv1.Event{Id: sar.NewID(), IncidentId: id, Time: timestamppb.Now()} }
	if err := s.PutGrid(ctx, sar.GridWrite{IncidentID: id, Seed: true, Summary: &sarv1.SearchGridSummary{IncidentId: id, Resolution: 9},
		Prior: map[uint64]float64{a: 0.5, b: 0.3, c: 0.1}, RestOfWorld: 0.1, Event: ev()}); err != nil {
		t.Fatalf("PutGrid: %v", err)
	}
	// Two searchers, 20 batches each, at once: a and b get 0.25 per batch
	// from each, out (outside the grid) 0.5.
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for _, p := range []string{"p1", "p2"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			before := ""
			for i := range 20 {
				after := p + "-" + time.Duration(i).String()
				r, err := s.AddCoverage(ctx, sar.CoverageArgs{IncidentID: id, ParticipantID: p, TrackerBefore: before, TrackerAfter: after,
					Coverage: map[uint64]float64{a: 0.25, b: 0.25, out: 0.5}, EventDelta: 0.01, EventEveryMs: 5000, NowMs: int64(i)})
				if err != nil || r.TrackerStale || r.Changed != 2 {
					errs <- errors.New("AddCoverage failed or stale")
					return
				}
				before = after
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	check := func(when string, since int64) *sar.Grid {
		t.Helper()
		g, err := s.LoadGrid(ctx, id, 0)
		if err != nil {
			t.Fatalf("LoadGrid: %v", err)
		}
		inc, err := s.LoadGrid(ctx, id, since)
		if err != nil {
			t.Fatalf("LoadGrid since %d: %v", since, err)
		}
		full := fullTotal(g)
		if math.Abs(full-inc.Meta.Z) > 1e-12 || math.Abs(full-g.Meta.Z) > 1e-12 {
			t.Errorf("%s: whole read total %v, incremental read total %v, stored %v; want equal", when, full, inc.Meta.Z, g.Meta.Z)
		}
		return g
	}
	g := check("after racing coverage", 1)
	if g.Cells[a].Coverage != 10 || g.Cells[b].Coverage != 10 || g.Cells[out].Coverage != 20 || g.Meta.Version != 41 {
		t.Errorf("coverage a %v b %v out %v, version %d; want 10, 10, 20 (no batch lost) and version 41",
			g.Cells[a].Coverage, g.Cells[b].Coverage, g.Cells[out].Coverage, g.Meta.Version)
	}
	want := 0.5*math.Exp(-10) + 0.3*math.Exp(-10) + 0.1 + 0.1
	if math.Abs(g.Meta.Z-want) > 1e-12 {
		t.Errorf("total %v, want %v", g.Meta.Z, want)
	}
	// A rebase bringing out into the grid, then more coverage.
	if err := s.PutGrid(ctx, sar.GridWrite{IncidentID: id, ExpectWriteVersion: g.Meta.WriteVersion, ExpectVersion: g.Meta.Version,
		Summary: &sarv1.SearchGridSummary{IncidentId: id, Resolution: 9}, Prior: map[uint64]float64{a: 2, b: 1, c: 0.2, out: 3},
		RestOfWorld: 0.05, POSBase: 0.4, Event: ev()}); err != nil {
		t.Fatalf("PutGrid rebase: %v", err)
	}
	check("after the rebase", g.Meta.Version)
	for i := range 5 {
		if _, err := s.AddCoverage(ctx, sar.CoverageArgs{IncidentID: id, ParticipantID: "p3", TrackerBefore: map[bool]string{true: "", false: "x"}[i == 0],
			TrackerAfter: "x", Coverage: map[uint64]float64{c: 0.3, out: 0.1}, NowMs: int64(i)}); err != nil {
			t.Fatalf("AddCoverage: %v", err)
		}
	}
	g = check("after the rebase and more coverage", g.Meta.Version+1)
	want = 2*math.Exp(-10) + 1*math.Exp(-10) + 0.2*math.Exp(-1.5) + 3*math.Exp(-20.5) + 0.05
	if math.Abs(g.Meta.Z-want) > 1e-12 {
		t.Errorf("total after the rebase %v, want %v", g.Meta.Z, want)
	}
}

// TestPutGridChunked writes a grid of more cells than one staging chunk:
// every cell lands with the new version, the total is right, and no
// staging key is left; a write that loses leaves none either, and staged
// keys always carry an expiry.
func TestPutGridChunked(t *testing.T) {
	s, rdb := newStore(t)
	ctx := context.Background()
	id := openIncident(t, s).GetId()
	const n = 2*gridStageChunk + 123
	prior := make(map[uint64]float64, n)
	for i := range n {
		prior[uint64(0x100000+i)] = 1.0 / n
	}
	ev := func() *sarv1.Event { return &sarv1.Event{Id: sar.NewID(), IncidentId: id, Time: timestamppb.Now()} }
	if err := s.PutGrid(ctx, sar.GridWrite{IncidentID: id, Seed: true, Summary: &sarv1.SearchGridSummary{IncidentId: id, Resolution: 9},
		Prior: prior, Event: ev()}); err != nil {
		t.Fatalf("PutGrid: %v", err)
	}
	if _, err := s.AddCoverage(ctx, sar.CoverageArgs{IncidentID: id, ParticipantID: "p", TrackerAfter: "s",
		Coverage: map[uint64]float64{0x100000: 2, 0x100001: 1}}); err != nil {
		t.Fatalf("AddCoverage: %v", err)
	}
	// A rebase of all cells, from the snapshot before the coverage:
	// renumbered once, then written with the coverage counted.
	w := sar.GridWrite{IncidentID: id, ExpectWriteVersion: 1, ExpectVersion: 1, Summary: &sarv1.SearchGridSummary{IncidentId: id, Resolution: 9},
		Prior: prior, Event: ev()}
	var moved *sar.VersionMovedError
	if err := s.PutGrid(ctx, w); !errors.As(err, &moved) || moved.Current != 2 {
		t.Fatalf("PutGrid from an old version = %v, want sar.VersionMovedError at 2", err)
	}
	w.ExpectVersion = 2
	if err := s.PutGrid(ctx, w); err != nil {
		t.Fatalf("PutGrid renumbered: %v", err)
	}
	g, err := s.LoadGrid(ctx, id, 0)
	if err != nil {
		t.Fatalf("LoadGrid: %v", err)
	}
	if len(g.Cells) != n || g.Meta.Version != 3 || g.Cells[0x100000+n-1].Version != 3 || math.Abs(fullTotal(g)-g.Meta.Z) > 1e-12 {
		t.Errorf("grid: %d cells, version %d, last cell version %d, total %v stored %v; want %d cells at version 3, equal totals",
			len(g.Cells), g.Meta.Version, g.Cells[0x100000+n-1].Version, fullTotal(g), g.Meta.Z, n)
	}
	if ttl, _ := rdb.TTL(ctx, kGridPrior(id)).Result(); ttl != -1 {
		t.Errorf("TTL(gpri) = %v, want none (the staging key's expiry dropped)", ttl)
	}
	if err := s.PutGrid(ctx, w); !errors.Is(err, sar.ErrGridConflict) {
		t.Errorf("PutGrid again from the same snapshot = %v, want sar.ErrGridConflict", err)
	}
	if keys, _ := rdb.Keys(ctx, "sar:{"+id+"}:gstage*").Result(); len(keys) != 0 {
		t.Errorf("staging keys left: %v", keys)
	}
	// A writer that dies after staging leaves keys that expire.
	stage, stagev := kGridStage(id, "t"), kGridStageVer(id, "t")
	if err := s.stageGrid(ctx, stage, stagev, prior); err != nil {
		t.Fatalf("stageGrid: %v", err)
	}
	for _, k := range []string{stage, stagev} {
		if ttl, _ := rdb.TTL(ctx, k).Result(); ttl <= 0 || ttl > gridStageTTL {
			t.Errorf("TTL(%s) = %v, want at most %v", k, ttl, gridStageTTL)
		}
	}
	if n, _ := rdb.HLen(ctx, stage).Result(); n != int64(len(prior)) {
		t.Errorf("staged %d cells, want %d", n, len(prior))
	}
}
