package core

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/auth"
	"github.com/mountain-sar/sar/internal/sar"
	"github.com/mountain-sar/sar/internal/store"
)

// The search work of acknowledged batches survives the replica that
// acknowledged them: replica A stores thirty batches and dies before its
// worker runs; replica B, started later, finds the queue entry stale and
// credits the whole track, as much coverage as the track gives in one go.
func TestSearchWorkSurvivesItsReplica(t *testing.T) {
	a, ctx, _ := benchService(t)
	rctx, p, inc := rescuerOnPlan(t, a, ctx)
	g0, err := a.loadGrid(ctx, inc.GetId())
	if err != nil {
		t.Fatal(err)
	}
	a.work.close() // A dies after its acks: its worker never runs
	t0 := time.Now().Add(-time.Hour)
	var all []*sarv1.LocationFix
	for b := range 30 {
		fixes := benchFixes(uint64(b*10+1), 10, t0)
		ack, err := a.Ingest(rctx, p, &sarv1.FixBatch{IncidentId: inc.GetId(), DeviceId: "phone", Fixes: fixes})
		if err != nil || len(ack.GetStored()) != 10 {
			t.Fatalf("batch %d: %v, %v", b, ack, err)
		}
		all = append(all, fixes...)
	}
	items, err := a.st.SearchWork(ctx, inc.GetId())
	if err != nil || len(items) != 1 || items[0].Kind != sar.WorkCoverage {
		t.Fatalf("queued search work %+v, %v; want the rescuer's one coverage entry for its thirty batches", items, err)
	}
	if g, err := a.loadGrid(ctx, inc.GetId()); err != nil || g.meta.Version != g0.meta.Version {
		t.Fatalf("grid version %d before B ran (was %d), %v: coverage credited by a dead replica", g.meta.Version, g0.meta.Version, err)
	}
	if r, err := a.GetSearchGrid(ctx, &sarv1.GetSearchGridRequest{IncidentId: inc.GetId()}); err != nil ||
		r.GetGrid().GetSearchWorkPending() != 1 || r.GetGrid().GetSearchWorkSince().AsTime().Before(time.Now().Add(-time.Minute)) {
		t.Fatalf("GetSearchGrid before B ran: pending %d since %v, %v; want 1, just now", r.GetGrid().GetSearchWorkPending(),
			r.GetGrid().GetSearchWorkSince(), err)
	}

	b := takeOver(t, a)
	waitCovered(t, b, ctx, inc.GetId(), g0.meta.Version)
	checkCoverage(t, b, ctx, inc.GetId(), items[0].ParticipantID, all)
	if r, err := b.GetSearchGrid(ctx, &sarv1.GetSearchGridRequest{IncidentId: inc.GetId()}); err != nil ||
		r.GetGrid().GetSearchWorkPending() != 0 || r.GetGrid().GetSearchWorkSince() != nil {
		t.Fatalf("GetSearchGrid after B ran: pending %d since %v, %v; want none", r.GetGrid().GetSearchWorkPending(), r.GetGrid().GetSearchWorkSince(), err)
	}
}

// Batch by batch (the worker keeping up) or all at once (behind, or after
// a crash), a track is credited the same coverage: the tracker runs over
// the stored track in order from its checkpoint either way.
func TestSearchWorkPerBatchEqualsWholeTrack(t *testing.T) {
	s, ctx, _ := benchService(t)
	rctx, p, inc := rescuerOnPlan(t, s, ctx)
	t0 := time.Now().Add(-time.Hour)
	var all []*sarv1.LocationFix
	var v int64
	pid := ""
	for b := range 30 {
		fixes := benchFixes(uint64(b*10+1), 10, t0)
		if _, err := s.Ingest(rctx, p, &sarv1.FixBatch{IncidentId: inc.GetId(), DeviceId: "phone", Fixes: fixes}); err != nil {
			t.Fatal(err)
		}
		if pid == "" {
			items, err := s.st.SearchWork(ctx, inc.GetId())
			if err == nil && len(items) == 1 {
				pid = items[0].ParticipantID
			}
		}
		v = waitCovered(t, s, ctx, inc.GetId(), v)
		all = append(all, fixes...)
	}
	if pid == "" {
		pid = mustParticipant(t, s, ctx, inc.GetId())
	}
	checkCoverage(t, s, ctx, inc.GetId(), pid, all)
}

// slowCoverReads is a Store whose coverage steps take a while after their
// read (as under load), and whose reads are counted.
type slowCoverReads struct {
	Store
	delay time.Duration
	calls atomic.Int64
}

func (s *slowCoverReads) CoverWork(ctx context.Context, incidentID, participantID string, limit int) (sar.CoverWork, error) {
	s.calls.Add(1)
	cw, err := s.Store.CoverWork(ctx, incidentID, participantID, limit)
	time.Sleep(s.delay) // between the read and the write of the step
	return cw, err
}

// A worker does not chase a phone that keeps sending: when batches renew
// a participant's entry during a coverage step, the step ends the pass for
// that participant and the next pass (after the worker's wait) credits
// everything that came meanwhile at once. Here every step takes longer
// than the phone's batch interval, so every step sees the entry renewed:
// a worker that stepped again at once would make a step per batch or two
// (about 50 in 1.5 s), not one per pass.
func TestSearchWorkerCreditsRenewedEntriesNextPass(t *testing.T) {
	s, ctx, _ := benchService(t)
	slow := &slowCoverReads{Store: s.st, delay: 30 * time.Millisecond}
	s.st = slow
	s.work.delay = 300 * time.Millisecond
	rctx, p, inc := rescuerOnPlan(t, s, ctx)
	t0 := time.Now().Add(-time.Hour)
	var all []*sarv1.LocationFix
	const run = 1500 * time.Millisecond
	start := time.Now()
	for seq := uint64(1); time.Since(start) < run; seq += 5 {
		fixes := benchFixes(seq, 5, t0)
		if _, err := s.Ingest(rctx, p, &sarv1.FixBatch{IncidentId: inc.GetId(), DeviceId: "phone", Fixes: fixes}); err != nil {
			t.Fatal(err)
		}
		all = append(all, fixes...)
		time.Sleep(20 * time.Millisecond)
	}
	sending := time.Since(start)
	waitCovered(t, s, ctx, inc.GetId(), 0)
	// A pass per wait while the phone sent, a step per pass (two when a
	// pass started just as a batch came in), and the last pass after it.
	passes := int64(sending/(s.work.delay+slow.delay)) + 2
	if n := slow.calls.Load(); n > 2*passes {
		t.Errorf("%d coverage reads for %d batches in %v, want at most %d (one per pass)", n, len(all)/5, sending.Round(time.Millisecond), 2*passes)
	}
	checkCoverage(t, s, ctx, inc.GetId(), mustParticipant(t, s, ctx, inc.GetId()), all)
}

// takeOver starts replica B on a's store and bus, sweeping every 10 ms
// for search work stale after 1 ms: it does what a left queued.
func takeOver(t *testing.T, a *Service) *Service {
	t.Helper()
	cfg := DefaultConfig()
	cfg.WorkStaleAfter = time.Millisecond
	b := New(cfg, a.st, a.bus, a.log, nil)
	t.Cleanup(b.Close)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel) // before b.Close: cleanups run last-registered first
	go b.RunSearchWork(ctx, 10*time.Millisecond)
	return b
}

// mustParticipant returns the one rescuer participant of an incident.
func mustParticipant(t *testing.T, s *Service, ctx context.Context, id string) string {
	t.Helper()
	ps, err := s.st.Participants(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if p.GetKind() == sarv1.ParticipantKind_PARTICIPANT_KIND_RESCUER {
			return p.GetId()
		}
	}
	t.Fatal("no rescuer participant")
	return ""
}

// checkCoverage compares the grid's coverage with what a fresh tracker
// credits over the whole track at once.
func checkCoverage(t *testing.T, s *Service, ctx context.Context, id, pid string, track []*sarv1.LocationFix) {
	t.Helper()
	g, err := s.loadGrid(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	cw := sar.CoverWork{Searcher: sar.Searcher{Meta: g.meta, HasGrid: true}}
	for _, f := range track {
		cw.Fixes = append(cw.Fixes, sar.TrackFix{Fix: f, TimeMs: f.GetTime().AsTime().UnixMilli()})
	}
	want, err := s.coverage(cw, pid)
	if err != nil {
		t.Fatal(err)
	}
	if len(want.Coverage) < 2 {
		t.Fatalf("the whole track credits %d cells: the test walks too little", len(want.Coverage))
	}
	for c, w := range want.Coverage {
		if got := g.coverage[c]; math.Abs(got-w) > 1e-9*math.Max(1, w) {
			t.Errorf("cell %s: coverage %v, want %v", sar.CellHex(c), got, w)
		}
	}
	for c, got := range g.coverage {
		if _, ok := want.Coverage[c]; !ok {
			t.Errorf("cell %s: coverage %v, want none", sar.CellHex(c), got)
		}
	}
	items, err := s.st.SearchWork(ctx, id)
	if err != nil || len(items) != 0 {
		t.Errorf("search work left %+v, %v; want none", items, err)
	}
}

// Closing the service ends the passes running (their work stays queued in
// the store) instead of waiting out their timeout, and takes no more kicks.
func TestSearchWorkerCloseEndsPasses(t *testing.T) {
	started := make(chan struct{})
	ended := make(chan error, 1)
	calls := 0
	w := &searchWorker{stop: make(chan struct{}), do: func(ctx context.Context, id string) bool {
		calls++
		close(started)
		<-ctx.Done() // a pass stuck on a store that does not answer
		ended <- ctx.Err()
		return false
	}}
	w.kick("inc1")
	<-started
	w.close()
	if err := <-ended; !errors.Is(err, context.Canceled) {
		t.Fatalf("the pass ended with %v, want it cancelled by close", err)
	}
	w.kick("inc1")
	if calls != 1 {
		t.Fatalf("%d passes, want 1 (no kicks after close)", calls)
	}
}

// An operator's adjustments go through while eight rescuers' tracks keep
// the grid's coverage moving as fast as batches come (no wait before a
// pass): a rebase is not starved by the search work.
func TestRebaseNotStarvedByCoverage(t *testing.T) {
	s, ctx, _ := benchService(t)
	s.work.delay = 0 // coverage as often as batches come
	rctx, p, inc := rescuerOnPlan(t, s, ctx)
	g, err := s.loadGrid(ctx, inc.GetId())
	if err != nil {
		t.Fatal(err)
	}
	var cells []string
	for _, c := range g.g.Cells {
		if len(cells) < 5 {
			cells = append(cells, sar.CellHex(c.ID))
		}
	}
	type dev struct {
		ctx context.Context
		p   *sarv1.Principal
		id  string
	}
	devs := []dev{{rctx, p, "phone"}}
	for i := range 7 {
		pi := &sarv1.Principal{Role: sarv1.Role_ROLE_RESCUER, CredentialId: fmt.Sprintf("benchcred%d", i+2), AgencyId: "benchag"}
		ci := auth.WithPrincipal(context.Background(), pi)
		id := fmt.Sprintf("phone%d", i+2)
		if _, err := s.JoinIncident(ci, &sarv1.JoinIncidentRequest{IncidentId: inc.GetId(), DeviceId: id}); err != nil {
			t.Fatal(err)
		}
		devs = append(devs, dev{ci, pi, id})
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	t0 := time.Now().Add(-20 * time.Hour)
	for _, d := range devs {
		wg.Go(func() {
			for seq := uint64(1); ; seq += 50 {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := s.Ingest(d.ctx, d.p, &sarv1.FixBatch{IncidentId: inc.GetId(), DeviceId: d.id, Fixes: benchFixes(seq, 50, t0)}); err != nil {
					t.Errorf("%s: %v", d.id, err)
					return
				}
			}
		})
	}
	time.Sleep(200 * time.Millisecond) // the tracks are flowing
	for i, c := range cells {
		if _, err := s.AdjustCells(ctx, &sarv1.AdjustCellsRequest{IncidentId: inc.GetId(),
			Set: []*sarv1.CellProbability{{Cell: c, Poa: 0.001 * float64(i+1)}}}); err != nil {
			t.Errorf("adjustment %d under coverage: %v", i, err)
		}
	}
	close(stop)
	wg.Wait()
	waitCovered(t, s, ctx, inc.GetId(), 0)
}

// Fixes not yet credited outlive the track's trim: with 20 breadcrumbs
// kept per participant, a replica stores 80 fixes and dies before its
// worker runs; the replica that takes the work over still credits all 80.
func TestUncreditedFixesOutliveTheTrim(t *testing.T) {
	a, ctx, _ := benchServiceStore(t, []store.Option{store.WithTrackMax(20)})
	rctx, p, inc := rescuerOnPlan(t, a, ctx)
	g0, err := a.loadGrid(ctx, inc.GetId())
	if err != nil {
		t.Fatal(err)
	}
	a.work.close()
	t0 := time.Now().Add(-time.Hour)
	var all []*sarv1.LocationFix
	for b := range 8 {
		fixes := benchFixes(uint64(b*10+1), 10, t0)
		if _, err := a.Ingest(rctx, p, &sarv1.FixBatch{IncidentId: inc.GetId(), DeviceId: "phone", Fixes: fixes}); err != nil {
			t.Fatal(err)
		}
		all = append(all, benchFixes(uint64(b*10+1), 10, t0)...)
	}
	pid := mustParticipant(t, a, ctx, inc.GetId())
	b := takeOver(t, a)
	waitCovered(t, b, ctx, inc.GetId(), g0.meta.Version)
	checkCoverage(t, b, ctx, inc.GetId(), pid, all)
	// Credited, the track is trimmed back to its bound at the next batch.
	if _, err := b.Ingest(rctx, p, &sarv1.FixBatch{IncidentId: inc.GetId(), DeviceId: "phone", Fixes: benchFixes(81, 10, t0)}); err != nil {
		t.Fatal(err)
	}
	if fx, err := b.st.Track(ctx, inc.GetId(), pid, 0, 1000); err != nil || len(fx) > 40 {
		t.Fatalf("track holds %d fixes (%v), want it trimmed once credited", len(fx), err)
	}
}
