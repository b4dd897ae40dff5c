package core

import (
	"context"
	"maps"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/geo"
	"github.com/mountain-sar/sar/internal/sar"
)

func TestCallerCollapseDue(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 16, 0, 0, 0, time.UTC)
	fromCaller := &sarv1.SearchGridSummary{FollowCallerFixes: true, OriginParticipantId: "caller", OriginTime: timestamppb.New(t0),
		Origin: &sarv1.LatLng{Lat: 46.6, Lng: 7.9}, OriginAccuracyM: 40}
	// The same grid as stored since followed_fix exists.
	followed := proto.Clone(fromCaller).(*sarv1.SearchGridSummary)
	followed.FollowedFix = &sarv1.CallerFix{ParticipantId: "caller", Position: &sarv1.LatLng{Lat: 46.6, Lng: 7.9}, AccuracyM: 40,
		Time: timestamppb.New(t0), Decision: sarv1.CallerFixDecision_CALLER_FIX_DECISION_FIRST_FIX}
	adjusted := proto.Clone(followed).(*sarv1.SearchGridSummary)
	adjusted.Adjusted = true
	// An operator re-seeded from the IPP 5 minutes after that fix.
	opPlan := &sarv1.SearchGridSummary{FollowCallerFixes: true, Profile: "hiker/temperate/mountainous",
		Origin: &sarv1.LatLng{Lat: 46.62, Lng: 7.88}, PlanTime: timestamppb.New(t0.Add(5 * time.Minute)), FollowedFix: followed.FollowedFix}
	ipp := &sarv1.SearchGridSummary{FollowCallerFixes: true, Profile: "hiker/temperate/mountainous", PlanTime: timestamppb.New(t0)}
	fix := func(after time.Duration, northM, acc float64) *sarv1.LocationFix {
		// 1° of latitude is 111,195 m on the mean sphere.
		return &sarv1.LocationFix{Lat: 46.6 + northM/111_195, Lng: 7.9, HorizontalAccuracyM: acc, Time: timestamppb.New(t0.Add(after))}
	}
	const (
		first      = sarv1.CallerFixDecision_CALLER_FIX_DECISION_FIRST_FIX
		superseded = sarv1.CallerFixDecision_CALLER_FIX_DECISION_PLAN_SUPERSEDED
		moved      = sarv1.CallerFixDecision_CALLER_FIX_DECISION_MOVED
		sharper    = sarv1.CallerFixDecision_CALLER_FIX_DECISION_MORE_ACCURATE
		opYields   = sarv1.CallerFixDecision_CALLER_FIX_DECISION_OPERATOR_PLAN_SUPERSEDED
		confirms   = sarv1.CallerFixDecision_CALLER_FIX_DECISION_CONFIRMS
		opStands   = sarv1.CallerFixDecision_CALLER_FIX_DECISION_OPERATOR_PLAN_STANDS
		glitch     = sarv1.CallerFixDecision_CALLER_FIX_DECISION_IMPLAUSIBLE
		soon       = sarv1.CallerFixDecision_CALLER_FIX_DECISION_TOO_SOON
		older      = sarv1.CallerFixDecision_CALLER_FIX_DECISION_OLDER
		off        = sarv1.CallerFixDecision_CALLER_FIX_DECISION_UNSPECIFIED
	)
	for _, tc := range []struct {
		name string
		sm   *sarv1.SearchGridSummary
		f    *sarv1.LocationFix
		want sarv1.CallerFixDecision
	}{
		{"no plan", nil, fix(0, 0, 40), first},
		{"plan from the IPP before any fix", ipp, fix(0, 0, 40), superseded},
		{"plan stored before plan_time (origin_participant_id empty)", &sarv1.SearchGridSummary{FollowCallerFixes: true,
			Profile: "hiker/temperate/mountainous"}, fix(0, 0, 40), superseded},
		{"plan does not follow", &sarv1.SearchGridSummary{FollowCallerFixes: false}, fix(0, 0, 40), off},
		{"older fix", followed, fix(-time.Minute, 500, 10), older},
		{"same fix", followed, fix(0, 500, 10), older},
		{"moved, but within 10 s", followed, fix(5*time.Second, 500, 40), soon},
		{"moved beyond the accuracy after 15 s", followed, fix(15*time.Second, 45, 40), moved},
		{"within the accuracy after 15 s", followed, fix(15*time.Second, 39, 40), confirms},
		{"within the followed fix's accuracy, outside its own", followed, fix(time.Minute, 35, 30), confirms},
		{"outside the followed fix's accuracy, within its own (coarser)", followed, fix(time.Minute, 90, 100), confirms},
		{"coarser, beyond its own accuracy", followed, fix(time.Minute, 150, 100), moved},
		{"much more accurate after 15 s", followed, fix(15*time.Second, 0, 20), sharper},
		{"slightly more accurate after 15 s", followed, fix(15*time.Second, 0, 35), confirms},
		{"same place 2 min later", followed, fix(2*time.Minute, 0, 40), confirms},
		{"same place 25 min later", followed, fix(25*time.Minute, 0, 40), confirms},
		{"same place 6 hours later", followed, fix(6*time.Hour, 10, 40), confirms},
		{"same place 25 min later, grid stored before followed_fix", fromCaller, fix(25*time.Minute, 0, 40), confirms},
		{"moved, grid stored before followed_fix", fromCaller, fix(time.Minute, 100, 40), moved},
		{"same place 2 min later, grid adjusted since", adjusted, fix(2*time.Minute, 0, 40), confirms},
		{"moved, grid adjusted since", adjusted, fix(15*time.Second, 45, 40), moved},
		{"20 km away 10 minutes later (33 m/s)", followed, fix(10*time.Minute, 20_000, 20), glitch},
		{"2 km away an hour later (0.6 m/s)", followed, fix(time.Hour, 2000, 20), moved},
		{"operator's plan, confirming fix 25 min later", opPlan, fix(25*time.Minute, 20, 40), opStands},
		{"operator's plan, markedly more accurate fix", opPlan, fix(25*time.Minute, 5, 10), opStands},
		{"operator's plan, fix moved beyond its accuracy", opPlan, fix(25*time.Minute, 300, 40), opYields},
		{"operator's plan, implausible fix", opPlan, fix(11*time.Minute, 20_000, 40), glitch},
	} {
		due, got, _ := callerCollapseDue(tc.sm, tc.f)
		wantDue := tc.want == first || tc.want == superseded || tc.want == moved || tc.want == sharper || tc.want == opYields
		if got != tc.want || due != wantDue {
			t.Errorf("%s: callerCollapseDue = %v, %v; want %v, %v", tc.name, due, got, wantDue, tc.want)
		}
	}
}

// followStore fakes a stored grid seeded from a caller's fix (origin,
// accuracy acc, at t0) whose cells hold coverage, for followCaller.
type followStore struct {
	fakeStore
	mu      sync.Mutex
	meta    sar.GridMeta
	cells   map[uint64]sar.GridCellState
	writes  []sar.GridWrite
	notes   []*sarv1.SearchGridSummary
	updates int
}

func newFollowStore(t *testing.T, sm *sarv1.SearchGridSummary, lat, lng, acc, cov float64) *followStore {
	t.Helper()
	g, err := geo.SeedFix(lat, lng, acc, geo.WithResolution(int(sm.GetResolution())))
	if err != nil {
		t.Fatal(err)
	}
	fs := &followStore{meta: sar.GridMeta{Summary: sm, Version: 40, SeedVersion: 12, RestOfWorld: g.RestOfWorld, Z: 1, WriteVersion: 7},
		cells: map[uint64]sar.GridCellState{}}
	for _, c := range g.Cells {
		fs.cells[c.ID] = sar.GridCellState{Prior: c.POA, Coverage: cov, Version: 30, InGrid: true}
	}
	fs.GridMetaFn = func(context.Context, string) (sar.GridMeta, error) {
		fs.mu.Lock()
		defer fs.mu.Unlock()
		m := fs.meta
		m.Summary = proto.Clone(m.Summary).(*sarv1.SearchGridSummary)
		return m, nil
	}
	fs.LoadGridFn = func(ctx context.Context, id string, since int64) (*sar.Grid, error) {
		m, _ := fs.GridMetaFn(ctx, id)
		return &sar.Grid{Meta: m, Cells: maps.Clone(fs.cells)}, nil
	}
	fs.UpdateGridSummaryFn = func(_ context.Context, _ string, wver int64, sm *sarv1.SearchGridSummary) error {
		fs.mu.Lock()
		defer fs.mu.Unlock()
		if wver != fs.meta.WriteVersion {
			return sar.ErrGridConflict
		}
		fs.meta.Summary, fs.meta.WriteVersion = sm, wver+1
		fs.notes = append(fs.notes, sm)
		return nil
	}
	fs.PutGridFn = func(_ context.Context, w sar.GridWrite) error {
		fs.mu.Lock()
		defer fs.mu.Unlock()
		fs.writes = append(fs.writes, w)
		fs.meta.Summary, fs.meta.WriteVersion, fs.meta.Version, fs.meta.SeedVersion = w.Summary, w.ExpectWriteVersion+1, w.ExpectVersion+1, w.ExpectVersion+1
		for c, cs := range fs.cells {
			cs.InGrid, cs.Prior = false, 0
			fs.cells[c] = cs
		}
		for c, p := range w.Prior {
			cs := fs.cells[c]
			if w.ClearCoverage || w.ResetCoverage {
				cs.Coverage = 0
			}
			cs.InGrid, cs.Prior, cs.Version = true, p, w.ExpectVersion+1
			fs.cells[c] = cs
		}
		return nil
	}
	fs.PutEventFn = func(context.Context, *sarv1.Event) error { return nil }
	return fs
}

func counted(t *testing.T, s *Service, decision string) float64 {
	t.Helper()
	var m dto.Metric
	if err := s.met.CallerFixes.WithLabelValues(decision).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// A caller's fix at the same spot 25 minutes after the followed one (the
// share page left open) changes nothing: no write of the grid, no event,
// the coverage stays; the decision is counted and noted in the summary,
// once per decision and half minute, not per fix.
func TestFollowCallerConfirmingFixChangesNothing(t *testing.T) {
	t0 := ruleNow.Add(-time.Hour)
	const lat, lng = 46.6, 7.9
	ff := &sarv1.CallerFix{ParticipantId: "caller", Position: &sarv1.LatLng{Lat: lat, Lng: lng}, AccuracyM: 40, Time: timestamppb.New(t0),
		Decision: sarv1.CallerFixDecision_CALLER_FIX_DECISION_FIRST_FIX}
	sm := &sarv1.SearchGridSummary{IncidentId: "inc", Resolution: 9, Profile: "fix", FollowCallerFixes: true, Origin: ff.Position,
		OriginAccuracyM: 40, OriginParticipantId: "caller", OriginTime: ff.Time, FollowedFix: ff, LastCallerFix: ff}
	fs := newFollowStore(t, sm, lat, lng, 40, 0.8)
	bus := &fakeBus{}
	s := newRuleService(t, &fs.fakeStore, bus)
	inc := ruleIncident()
	at := func(d time.Duration, northM float64) *sarv1.LocationFix {
		return &sarv1.LocationFix{Lat: lat + northM/111_195, Lng: lng, HorizontalAccuracyM: 40, Time: timestamppb.New(t0.Add(d))}
	}
	s.followCaller(context.Background(), inc, "caller", at(25*time.Minute, 5))
	for i := range 5 { // the page keeps sending, every 3 s
		s.followCaller(context.Background(), inc, "caller", at(25*time.Minute+time.Duration(i+1)*3*time.Second, 3))
	}
	s.followCaller(context.Background(), inc, "caller", at(26*time.Minute, 0))
	if len(fs.writes) != 0 {
		t.Fatalf("confirming fixes wrote the grid %d times (first: seed %v, clear coverage %v); want never", len(fs.writes),
			fs.writes[0].Seed, fs.writes[0].ClearCoverage)
	}
	if d, l := bus.published(); len(d)+len(l) != 0 {
		t.Errorf("confirming fixes made %d events, want none", len(d)+len(l))
	}
	if fs.meta.Version != 40 || fs.meta.SeedVersion != 12 {
		t.Errorf("grid version %d, seed version %d; want 40, 12 (unchanged)", fs.meta.Version, fs.meta.SeedVersion)
	}
	for c, cs := range fs.cells {
		if cs.Coverage != 0.8 || !cs.InGrid {
			t.Fatalf("cell %x: coverage %v, in grid %v; want 0.8 kept", c, cs.Coverage, cs.InGrid)
		}
	}
	// Noted at 25:00 and again at 26:00 (a minute later), not in between.
	if len(fs.notes) != 2 {
		t.Fatalf("summary notes = %d, want 2 (throttled per decision)", len(fs.notes))
	}
	last := fs.meta.Summary.GetLastCallerFix()
	if last.GetDecision() != sarv1.CallerFixDecision_CALLER_FIX_DECISION_CONFIRMS || !last.GetTime().AsTime().Equal(t0.Add(26*time.Minute)) ||
		!proto.Equal(fs.meta.Summary.GetFollowedFix(), ff) || fs.meta.Summary.GetOriginTime().AsTime() != t0 {
		t.Errorf("summary after confirming fixes: last %v, followed %v; want CONFIRMS at 26 min, the followed fix unchanged", last,
			fs.meta.Summary.GetFollowedFix())
	}
	if n := counted(t, s, "confirms"); n != 7 {
		t.Errorf("sar_caller_fixes_total{decision=confirms} = %v, want 7", n)
	}
}

// A fix that moved collapses the grid to its disk and keeps the coverage
// of the cells that stay in it: the write neither clears nor resets
// coverage, and the event's figures count it (a probability of success
// above 0, more rest of world than the disk's 5 %).
func TestFollowCallerMovedFixKeepsCoverage(t *testing.T) {
	t0 := ruleNow.Add(-time.Hour)
	const lat, lng = 46.6, 7.9
	ff := &sarv1.CallerFix{ParticipantId: "caller", Position: &sarv1.LatLng{Lat: lat, Lng: lng}, AccuracyM: 100, Time: timestamppb.New(t0)}
	sm := &sarv1.SearchGridSummary{IncidentId: "inc", Resolution: 10, Profile: "fix", FollowCallerFixes: true, Origin: ff.Position,
		OriginAccuracyM: 100, OriginParticipantId: "caller", OriginTime: ff.Time, FollowedFix: ff, Adjusted: true}
	fs := newFollowStore(t, sm, lat, lng, 100, 1.5)
	bus := &fakeBus{}
	s := newRuleService(t, &fs.fakeStore, bus)
	f := &sarv1.LocationFix{Lat: lat + 150/111_195.0, Lng: lng, HorizontalAccuracyM: 100, Time: timestamppb.New(t0.Add(10 * time.Minute))}
	s.followCaller(context.Background(), ruleIncident(), "caller", f)
	if len(fs.writes) != 1 {
		t.Fatalf("grid writes = %d, want 1", len(fs.writes))
	}
	w := fs.writes[0]
	if !w.Seed || w.ClearCoverage || w.ResetCoverage || w.ExpectWriteVersion != 7 || w.ExpectVersion != 40 {
		t.Errorf("write: seed %v, clear %v, reset %v, expects write version %d, version %d; want a seed keeping coverage after 7, 40",
			w.Seed, w.ClearCoverage, w.ResetCoverage, w.ExpectWriteVersion, w.ExpectVersion)
	}
	kept, fresh := 0, 0
	for c := range w.Prior {
		if fs.cells[c].Coverage == 1.5 {
			kept++
		} else {
			fresh++
		}
	}
	if kept == 0 || fresh == 0 {
		t.Errorf("new disk: %d cells kept their coverage, %d without; want both (the disks overlap)", kept, fresh)
	}
	got := w.Summary
	if got.GetFollowedFix().GetDecision() != sarv1.CallerFixDecision_CALLER_FIX_DECISION_MOVED || got.GetPlanTime() != nil ||
		got.GetAdjusted() || got.GetLastCallerFix().GetDecision() != sarv1.CallerFixDecision_CALLER_FIX_DECISION_MOVED ||
		!proto.Equal(got.GetFollowedFix().GetTime(), f.GetTime()) {
		t.Errorf("stored summary %v; want the fix followed (MOVED), no plan time, not adjusted", got)
	}
	d, _ := bus.published()
	if len(d) != 1 {
		t.Fatalf("events = %d, want 1", len(d))
	}
	ev := d[0].GetSearchGridChanged()
	// With z = Σ wᵢe^(−cᵢ) + row over the kept coverage:
	z := w.RestOfWorld
	for c, p := range w.Prior {
		z += geo.Undetected(p, fs.cells[c].Coverage)
	}
	if ev.GetChange() != sarv1.SearchGridChange_SEARCH_GRID_CHANGE_CALLER_FIX ||
		ev.GetGrid().GetFollowedFix().GetDecision() != sarv1.CallerFixDecision_CALLER_FIX_DECISION_MOVED ||
		!relClose(ev.GetGrid().GetProbabilityOfSuccess(), 1-z, 1e-12) || ev.GetGrid().GetProbabilityOfSuccess() < 0.1 ||
		!relClose(ev.GetGrid().GetRestOfWorld(), w.RestOfWorld/z, 1e-12) {
		t.Errorf("event %v; want CALLER_FIX (MOVED), POS %v, rest of world %v", ev, 1-z, w.RestOfWorld/z)
	}
	if n := counted(t, s, "moved"); n != 1 {
		t.Errorf("sar_caller_fixes_total{decision=moved} = %v, want 1", n)
	}
}

// An operator's plan made after the followed fix stands against a fix
// that confirms the position, even a much more accurate one, and yields
// to one that moved.
func TestFollowCallerOperatorPlanStandsUntilMoved(t *testing.T) {
	t0 := ruleNow.Add(-time.Hour)
	const lat, lng = 46.6, 7.9
	ff := &sarv1.CallerFix{ParticipantId: "caller", Position: &sarv1.LatLng{Lat: lat, Lng: lng}, AccuracyM: 60, Time: timestamppb.New(t0),
		Decision: sarv1.CallerFixDecision_CALLER_FIX_DECISION_MOVED}
	sm := &sarv1.SearchGridSummary{IncidentId: "inc", Resolution: 9, Profile: "hiker/temperate/mountainous", FollowCallerFixes: true,
		Origin: &sarv1.LatLng{Lat: lat + 0.01, Lng: lng}, PlanTime: timestamppb.New(t0.Add(5 * time.Minute)), FollowedFix: ff}
	fs := newFollowStore(t, sm, lat+0.01, lng, 500, 0.3)
	s := newRuleService(t, &fs.fakeStore, &fakeBus{})
	inc := ruleIncident()
	s.followCaller(context.Background(), inc, "caller", &sarv1.LocationFix{Lat: lat + 30/111_195.0, Lng: lng, HorizontalAccuracyM: 10,
		Time: timestamppb.New(t0.Add(25 * time.Minute))})
	if len(fs.writes) != 0 || fs.meta.Summary.GetLastCallerFix().GetDecision() != sarv1.CallerFixDecision_CALLER_FIX_DECISION_OPERATOR_PLAN_STANDS {
		t.Fatalf("a confirming, sharper fix: %d grid writes, last decision %v; want none, OPERATOR_PLAN_STANDS", len(fs.writes),
			fs.meta.Summary.GetLastCallerFix().GetDecision())
	}
	if fs.meta.Summary.GetPlanTime() == nil || fs.meta.Summary.GetProfile() != "hiker/temperate/mountainous" {
		t.Errorf("the operator's plan changed: %v", fs.meta.Summary)
	}
	s.followCaller(context.Background(), inc, "caller", &sarv1.LocationFix{Lat: lat + 400/111_195.0, Lng: lng, HorizontalAccuracyM: 30,
		Time: timestamppb.New(t0.Add(27 * time.Minute))})
	if len(fs.writes) != 1 ||
		fs.writes[0].Summary.GetFollowedFix().GetDecision() != sarv1.CallerFixDecision_CALLER_FIX_DECISION_OPERATOR_PLAN_SUPERSEDED ||
		fs.writes[0].Summary.GetPlanTime() != nil || fs.writes[0].ClearCoverage {
		t.Errorf("a fix 400 m away: %d grid writes; want one collapse (OPERATOR_PLAN_SUPERSEDED, coverage kept)", len(fs.writes))
	}
}

func TestTrailerOneTimerPerIncidentAndClose(t *testing.T) {
	var mu sync.Mutex
	var calls []string
	var again atomic.Bool
	again.Store(true)
	tr := &trailer{flush: func(id string) time.Duration {
		mu.Lock()
		calls = append(calls, id)
		mu.Unlock()
		if id == "a" && again.Swap(false) {
			return time.Millisecond // not yet due: asked again once
		}
		return 0
	}}
	for range 5 {
		tr.schedule("a", 10*time.Millisecond)
		tr.schedule("b", 10*time.Millisecond)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(calls)
		mu.Unlock()
		if n >= 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	tr.schedule("c", time.Hour) // pending at close: never runs
	tr.close()
	tr.schedule("d", time.Millisecond) // after close: ignored
	time.Sleep(20 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(calls)
	if !slices.Equal(calls, []string{"a", "a", "b"}) {
		t.Errorf("flushes = %v, want a twice (asked again once) and b once", calls)
	}
}

// TestCutSegmentsKeepsAssigned checks that re-cutting keeps assigned
// segments whole, cuts every other grid cell exactly once, and numbers new
// segments after every id used before.
func TestCutSegmentsKeepsAssigned(t *testing.T) {
	g0, err := geo.Seed(46.6, 7.9, mustProfile(t), geo.WithResolution(8), geo.WithCut(0.5))
	if err != nil {
		t.Fatalf("Seed: %v", err)
	}
	g := &grid{g: g0, meta: sar.GridMeta{SeedVersion: 1}}
	first, err := cutSegments(nil, g, 5e6)
	if err != nil || len(first.Segments) < 3 {
		t.Fatalf("cutSegments = %+v, %v; want at least 3 segments", first, err)
	}
	if !coversGrid(first, g0) {
		t.Errorf("the first cut leaves grid cells out")
	}
	kept := first.Segments[1]
	kept.Agency, kept.Team, kept.AssignMs = "rescue", "alpha", 1
	first.Segments[1] = kept
	g.meta.SeedVersion = 2
	second, err := cutSegments(first, g, 2e6)
	if err != nil {
		t.Fatalf("cutSegments again: %v", err)
	}
	seen := map[uint64]int{}
	foundKept := false
	for _, ss := range second.Segments {
		if ss.ID == kept.ID {
			foundKept = slices.Equal(ss.Cells, kept.Cells) && ss.Assigned()
			continue
		}
		if ss.ID < first.NextID {
			t.Errorf("new segment id %d reuses an id below %d", ss.ID, first.NextID)
		}
		for _, c := range ss.Cells {
			seen[c]++
		}
	}
	if !foundKept {
		t.Errorf("the assigned segment %d was not kept whole", kept.ID)
	}
	for _, c := range g0.Cells {
		want := 1
		if slices.Contains(kept.Cells, c.ID) {
			want = 0
		}
		if seen[c.ID] != want {
			t.Errorf("cell %x is in %d new segments, want %d", c.ID, seen[c.ID], want)
		}
	}
	if second.SeedVersion != 2 || second.TargetAreaM2 != 2e6 || second.Version != first.Version {
		t.Errorf("second cut = seed %d, area %v, version %d", second.SeedVersion, second.TargetAreaM2, second.Version)
	}
}

func mustProfile(t *testing.T) geo.Profile {
	t.Helper()
	p, err := geo.LookupProfile(geo.Hiker, geo.Temperate, geo.Mountainous)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func relClose(a, b, rel float64) bool {
	return math.Abs(a-b) <= rel*math.Max(math.Abs(a), math.Abs(b))+1e-15
}
