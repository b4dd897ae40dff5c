package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/types/known/timestamppb"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/sar"
)

// TestCoverageContention: many searchers of one incident add coverage to
// the same cells at once, as the ingest bench's rescuers do. No call may
// fail, every cell ends with the sum of all coverage added to it, and the
// maintained total equals the total a whole read computes from the cells.
func TestCoverageContention(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	id := openIncident(t, s).GetId()
	const searchers, batches = 50, 20
	cells := []uint64{0x8928308280fffff, 0x8928308280bffff, 0x89283082807ffff, 0x89283082803ffff, 0x89283082833ffff}
	const out = 0x89283082877ffff // outside the grid
	prior := map[uint64]float64{}
	for i, c := range cells {
		prior[c] = 0.1 * float64(i+1) / 1.5
	}
	ev := &sarv1.Event{Id: sar.NewID(), IncidentId: id, Time: timestamppb.Now()}
	if err := s.PutGrid(ctx, sar.GridWrite{IncidentID: id, Seed: true, Summary: &sarv1.SearchGridSummary{IncidentId: id, Resolution: 9},
		Prior: prior, RestOfWorld: 0, Event: ev}); err != nil {
		t.Fatalf("PutGrid: %v", err)
	}
	// Searcher p adds, per batch, 1/64 to three overlapping cells
	// (chosen by p and the batch) and to the cell outside the grid: sums
	// of multiples of 1/64 are exact in binary.
	var wg sync.WaitGroup
	var mu sync.Mutex
	want := map[uint64]float64{}
	var failures []string
	for p := range searchers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pid := fmt.Sprintf("p%d", p)
			before := ""
			for i := range batches {
				cov := map[uint64]float64{out: 1.0 / 64}
				for k := range 3 {
					cov[cells[(p+i+k)%len(cells)]] = 1.0 / 64
				}
				after := fmt.Sprintf("%s-%d", pid, i)
				r, err := s.AddCoverage(ctx, sar.CoverageArgs{IncidentID: id, ParticipantID: pid, TrackerBefore: before, TrackerAfter: after,
					Coverage: cov, EventDelta: 0.01, EventEveryMs: 5000, NowMs: int64(i)})
				mu.Lock()
				switch {
				case err != nil:
					failures = append(failures, fmt.Sprintf("%s batch %d: %v", pid, i, err))
				case r.TrackerStale || r.NoGrid || r.Changed != 3:
					failures = append(failures, fmt.Sprintf("%s batch %d: %+v", pid, i, r))
				default:
					for c, v := range cov {
						want[c] += v
					}
					before = after
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(failures) > 0 {
		t.Errorf("%d of %d batches failed, e.g. %s", len(failures), searchers*batches, failures[0])
	}
	g, err := s.LoadGrid(ctx, id, 0)
	if err != nil {
		t.Fatalf("LoadGrid: %v", err)
	}
	var added float64
	for _, c := range append(cells, out) {
		if got := g.Cells[c].Coverage; got != want[c] {
			t.Errorf("cell %x coverage %v, want %v (the sum of all batches stored)", c, got, want[c])
		}
		added += want[c]
	}
	if added != 4.0/64*searchers*batches {
		t.Errorf("batches stored add up to %v, want %v (every batch)", added, 4.0/64*searchers*batches)
	}
	if full := fullTotal(g); math.Abs(full-g.Meta.Z) > 1e-12 {
		t.Errorf("maintained total %v, whole read total %v; want equal", g.Meta.Z, full)
	}
	inc, err := s.LoadGrid(ctx, id, 1)
	if err != nil {
		t.Fatalf("LoadGrid since 1: %v", err)
	}
	if math.Abs(fullTotal(g)-inc.Meta.Z) > 1e-12 {
		t.Errorf("incremental read total %v, whole read total %v; want equal", inc.Meta.Z, fullTotal(g))
	}
}

// TestCoverageBetweenSteps runs a grid write between the two steps of
// AddCoverage (cells incremented, total not yet updated): a rebase or seed
// computes the total from the cells, the batch's share included, so the
// second step must not add it again; a settings update leaves the total
// alone, so the second step must still add it. Either way the maintained
// total ends equal to the total of the cells.
func TestCoverageBetweenSteps(t *testing.T) {
	const a, b, c = 0x8928308280fffff, 0x8928308280bffff, 0x89283082807ffff
	cases := []struct {
		name   string
		write  func(t *testing.T, s *Store, id string, m sar.GridMeta)
		wantCb float64 // coverage of b at the end
	}{
		{"rebase", func(t *testing.T, s *Store, id string, m sar.GridMeta) {
			putGrid(t, s, sar.GridWrite{IncidentID: id, ExpectWriteVersion: m.WriteVersion, ExpectVersion: m.Version,
				Prior: map[uint64]float64{a: 0.2, b: 0.7, c: 0.05}, RestOfWorld: 0.05, POSBase: 0.3})
		}, 1.5},
		{"seed keeping coverage", func(t *testing.T, s *Store, id string, m sar.GridMeta) {
			putGrid(t, s, sar.GridWrite{IncidentID: id, ExpectWriteVersion: m.WriteVersion, ExpectVersion: m.Version, Seed: true,
				Prior: map[uint64]float64{b: 0.6, c: 0.3}, RestOfWorld: 0.1})
		}, 1.5},
		{"seed resetting coverage", func(t *testing.T, s *Store, id string, m sar.GridMeta) {
			putGrid(t, s, sar.GridWrite{IncidentID: id, ExpectWriteVersion: m.WriteVersion, ExpectVersion: m.Version, Seed: true,
				ResetCoverage: true, Prior: map[uint64]float64{a: 0.4, b: 0.4, c: 0.1}, RestOfWorld: 0.1})
		}, 0},
		{"seed clearing coverage", func(t *testing.T, s *Store, id string, m sar.GridMeta) {
			putGrid(t, s, sar.GridWrite{IncidentID: id, ExpectWriteVersion: m.WriteVersion, ExpectVersion: m.Version, Seed: true,
				ClearCoverage: true, Prior: map[uint64]float64{b: 0.9}, RestOfWorld: 0.1})
		}, 0},
		{"settings", func(t *testing.T, s *Store, id string, m sar.GridMeta) {
			if err := s.UpdateGridSummary(context.Background(), id, m.WriteVersion,
				&sarv1.SearchGridSummary{IncidentId: id, Resolution: 9, SweepWidthsM: map[string]float64{"foot": 30}}); err != nil {
				t.Fatalf("UpdateGridSummary: %v", err)
			}
		}, 1.5},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newStore(t)
			ctx := context.Background()
			id := openIncident(t, s).GetId()
			putGrid(t, s, sar.GridWrite{IncidentID: id, Seed: true, Prior: map[uint64]float64{a: 0.5, b: 0.3, c: 0.1}, RestOfWorld: 0.1})
			if _, err := s.AddCoverage(ctx, sar.CoverageArgs{IncidentID: id, ParticipantID: "p", TrackerAfter: "s1",
				Coverage: map[uint64]float64{a: 1, b: 0.5}}); err != nil {
				t.Fatalf("AddCoverage: %v", err)
			}
			s.betweenCoverageSteps = func() {
				m, err := s.GridMeta(ctx, id)
				if err != nil {
					t.Fatalf("GridMeta: %v", err)
				}
				tc.write(t, s, id, m)
			}
			r, err := s.AddCoverage(ctx, sar.CoverageArgs{IncidentID: id, ParticipantID: "p", TrackerBefore: "s1", TrackerAfter: "s2",
				Coverage: map[uint64]float64{b: 1, c: 0.25}, EventDelta: 0.01, EventEveryMs: 5000, NowMs: 1})
			s.betweenCoverageSteps = nil
			if err != nil || r.TrackerStale || r.NoGrid {
				t.Fatalf("AddCoverage with a write between its steps = %+v, %v", r, err)
			}
			g, err := s.LoadGrid(ctx, id, 0)
			if err != nil {
				t.Fatalf("LoadGrid: %v", err)
			}
			if full := fullTotal(g); math.Abs(full-g.Meta.Z) > 1e-12 {
				t.Errorf("maintained total %v, whole read total %v; want equal", g.Meta.Z, full)
			}
			if pos := 1 - (1-g.Meta.POSBase)*g.Meta.Z; math.Abs(r.POS-pos) > 1e-12 {
				t.Errorf("reported POS %v, want %v from the stored total", r.POS, pos)
			}
			if got := g.Cells[b].Coverage; got != tc.wantCb {
				t.Errorf("coverage of b %v, want %v", got, tc.wantCb)
			}
			// More coverage after the write counts in the total.
			if _, err := s.AddCoverage(ctx, sar.CoverageArgs{IncidentID: id, ParticipantID: "p", TrackerBefore: "s2", TrackerAfter: "s3",
				Coverage: map[uint64]float64{a: 0.5, b: 0.5, c: 0.5}}); err != nil {
				t.Fatalf("AddCoverage: %v", err)
			}
			g, err = s.LoadGrid(ctx, id, 0)
			if err != nil {
				t.Fatalf("LoadGrid: %v", err)
			}
			if full := fullTotal(g); math.Abs(full-g.Meta.Z) > 1e-12 {
				t.Errorf("after more coverage: maintained total %v, whole read total %v; want equal", g.Meta.Z, full)
			}
		})
	}
}

// TestCoverageContentionWithWrites: searchers add coverage at once while
// rebases and settings updates come in. No batch is lost, the writes get
// through, and the maintained total ends equal to the total of the cells.
func TestCoverageContentionWithWrites(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	id := openIncident(t, s).GetId()
	cells := []uint64{0x8928308280fffff, 0x8928308280bffff, 0x89283082807ffff, 0x89283082803ffff}
	prior := func(k int) map[uint64]float64 {
		out := map[uint64]float64{}
		for i, c := range cells {
			out[c] = 0.2 + 0.05*float64((i+k)%len(cells))
		}
		return out
	}
	putGrid(t, s, sar.GridWrite{IncidentID: id, Seed: true, Prior: prior(0), RestOfWorld: 0.1})
	const searchers, batches = 20, 30
	var wg sync.WaitGroup
	failures := make(chan string, searchers*batches)
	for p := range searchers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pid := fmt.Sprintf("p%d", p)
			before := ""
			for i := range batches {
				after := fmt.Sprintf("%s-%d", pid, i)
				r, err := s.AddCoverage(ctx, sar.CoverageArgs{IncidentID: id, ParticipantID: pid, TrackerBefore: before, TrackerAfter: after,
					Coverage: map[uint64]float64{cells[(p+i)%len(cells)]: 1.0 / 32, cells[(p+i+1)%len(cells)]: 1.0 / 32}, NowMs: int64(i)})
				if err != nil || r.TrackerStale || r.NoGrid || r.Changed != 2 {
					failures <- fmt.Sprintf("%s batch %d: %+v, %v", pid, i, r, err)
					continue
				}
				before = after
			}
		}()
	}
	writes := make(chan error, 1)
	go func() {
		defer close(writes)
		for k := 1; k <= 10; k++ {
			var err error
			for range 50 {
				var m sar.GridMeta
				if m, err = s.GridMeta(ctx, id); err != nil {
					break
				}
				if k%2 == 0 {
					err = s.UpdateGridSummary(ctx, id, m.WriteVersion, &sarv1.SearchGridSummary{IncidentId: id, Resolution: 9})
				} else {
					err = s.PutGrid(ctx, sar.GridWrite{IncidentID: id, ExpectWriteVersion: m.WriteVersion, ExpectVersion: m.Version,
						Summary: &sarv1.SearchGridSummary{IncidentId: id, Resolution: 9}, Prior: prior(k), RestOfWorld: 0.1, POSBase: 0.01 * float64(k),
						Event: &sarv1.Event{Id: sar.NewID(), IncidentId: id, Time: timestamppb.Now()}})
				}
				var moved *sar.VersionMovedError
				if err == nil || !(errors.Is(err, sar.ErrGridConflict) || errors.As(err, &moved)) {
					break
				}
			}
			if err != nil {
				writes <- fmt.Errorf("write %d: %w", k, err)
				return
			}
		}
	}()
	wg.Wait()
	close(failures)
	for f := range failures {
		t.Error(f)
	}
	if err := <-writes; err != nil {
		t.Errorf("grid writes while coverage comes in: %v", err)
	}
	g, err := s.LoadGrid(ctx, id, 0)
	if err != nil {
		t.Fatalf("LoadGrid: %v", err)
	}
	var sum float64
	for _, c := range cells {
		sum += g.Cells[c].Coverage
	}
	if want := 2.0 / 32 * searchers * batches; sum != want {
		t.Errorf("coverage stored adds up to %v, want %v", sum, want)
	}
	if full := fullTotal(g); math.Abs(full-g.Meta.Z) > 1e-12 {
		t.Errorf("maintained total %v, whole read total %v; want equal", g.Meta.Z, full)
	}
}

// putGrid writes a grid with a summary and event, or fails the test.
func putGrid(t *testing.T, s *Store, w sar.GridWrite) {
	t.Helper()
	w.Summary = &sarv1.SearchGridSummary{IncidentId: w.IncidentID, Resolution: 9}
	w.Event = &sarv1.Event{Id: sar.NewID(), IncidentId: w.IncidentID, Time: timestamppb.Now()}
	if err := s.PutGrid(context.Background(), w); err != nil {
		t.Fatalf("PutGrid: %v", err)
	}
}

// TestCoverageEndsItsWorkAfterTheTotal: a batch of coverage that changed
// grid cells ends its queue entry only in the second step, once the total
// has followed the cells, so a reader who sees no work pending never sees
// the cells' new coverage against the old total. A batch that changed no
// grid cell (none has a weight) ends it in the first, and an entry that
// more work renewed meanwhile stays.
func TestCoverageEndsItsWorkAfterTheTotal(t *testing.T) {
	const a, b, outside = 0x8928308280fffff, 0x8928308280bffff, 0x89283082807ffff
	s, rdb := newStore(t)
	ctx := context.Background()
	id := openIncident(t, s).GetId()
	putGrid(t, s, sar.GridWrite{IncidentID: id, Seed: true, Prior: map[uint64]float64{a: 0.6, b: 0.3}, RestOfWorld: 0.1})
	m := sar.WorkMember(sar.WorkCoverage, "p")
	queue := func(gen string) {
		rdb.HSet(ctx, kWork(id), m, gen)
		rdb.ZAdd(ctx, kWorkTime(id), redis.Z{Score: 1000, Member: m})
	}
	pending := func() int {
		items, err := s.SearchWork(ctx, id)
		if err != nil {
			t.Fatalf("SearchWork: %v", err)
		}
		return len(items)
	}

	queue("1")
	between := -1
	s.betweenCoverageSteps = func() { between = pending() }
	r, err := s.AddCoverage(ctx, sar.CoverageArgs{IncidentID: id, ParticipantID: "p", TrackerAfter: "s1",
		Coverage: map[uint64]float64{a: 1, b: 0.5}, Member: m, Gen: "1", NowMs: 2000})
	s.betweenCoverageSteps = nil
	if err != nil || !r.Done {
		t.Fatalf("AddCoverage = %+v, %v; want its work done", r, err)
	}
	if between != 1 || pending() != 0 {
		t.Errorf("work pending between the steps %d, after %d; want 1 then 0", between, pending())
	}

	queue("2") // coverage outside the grid only: one step
	r, err = s.AddCoverage(ctx, sar.CoverageArgs{IncidentID: id, ParticipantID: "p", TrackerBefore: "s1", TrackerAfter: "s2",
		Coverage: map[uint64]float64{outside: 1}, Member: m, Gen: "2", NowMs: 3000})
	if err != nil || !r.Done || pending() != 0 {
		t.Fatalf("AddCoverage outside the grid = %+v, %v, %d pending; want its work done", r, err, pending())
	}

	queue("4") // renewed since the worker read generation 3
	r, err = s.AddCoverage(ctx, sar.CoverageArgs{IncidentID: id, ParticipantID: "p", TrackerBefore: "s2", TrackerAfter: "s3",
		Coverage: map[uint64]float64{a: 0.5}, Member: m, Gen: "3", NowMs: 4000})
	if err != nil || r.Done {
		t.Fatalf("AddCoverage of an old generation = %+v, %v; want the entry kept", r, err)
	}
	items, err := s.SearchWork(ctx, id)
	if err != nil || len(items) != 1 || items[0].SinceMs != 4000 {
		t.Errorf("SearchWork = %+v, %v; want the entry kept, its time moved to 4000", items, err)
	}
}
