package server_test

import (
	"context"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uber/h3-go/v4"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/timestamppb"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
)

// Tests of segments, task suggestion, searcher types, caller fixes and the
// trailing coverage event. They share the harness of harness_test.go and
// the grid helpers of search_test.go.

// gridWatch collects the events of one WatchIncident stream.
type gridWatch struct {
	mu     sync.Mutex
	events []*sarv1.Event
}

// watch opens a WatchIncident stream for token (with no deadline: the
// stream lives until the test ends) and collects its events.
func (e *env) watch(token, incident string) *gridWatch {
	e.t.Helper()
	ctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token))
	e.t.Cleanup(cancel)
	s, err := e.inc.WatchIncident(ctx, &sarv1.WatchIncidentRequest{IncidentId: incident})
	if err != nil {
		e.t.Fatalf("WatchIncident: %v", err)
	}
	first, err := s.Recv()
	if err != nil || first.GetSnapshot() == nil {
		e.t.Fatalf("first watch message = %v, %v; want the snapshot", first, err)
	}
	w := &gridWatch{}
	go func() {
		for {
			m, err := s.Recv()
			if err != nil {
				return
			}
			if ev := m.GetEvent(); ev != nil {
				w.mu.Lock()
				w.events = append(w.events, ev)
				w.mu.Unlock()
			}
		}
	}()
	return w
}

// grid returns the grid events of one kind received so far.
func (w *gridWatch) grid(change sarv1.SearchGridChange) []*sarv1.SearchGridChangedEvent {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []*sarv1.SearchGridChangedEvent
	for _, ev := range w.events {
		if g := ev.GetSearchGridChanged(); g != nil && g.GetChange() == change {
			out = append(out, g)
		}
	}
	return out
}

// within polls cond until it holds or timeout passes.
func within(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// wantField fails unless err is an InvalidArgument naming field.
func wantField(t *testing.T, what string, err error, field string) {
	t.Helper()
	st := wantCode(t, what, err, codes.InvalidArgument)
	if fv := fieldViolations(st); !slices.Contains(fv, field) {
		t.Errorf("%s: field violations %v, want %q among them", what, fv, field)
	}
}

// haversineM is the great-circle distance on the mean Earth radius.
func haversineM(lat1, lng1, lat2, lng2 float64) float64 {
	const r, rad = 6371008.8, math.Pi / 180
	p1, p2 := lat1*rad, lat2*rad
	s1, s2 := math.Sin((p2-p1)/2), math.Sin((lng2-lng1)*rad/2)
	h := s1*s1 + math.Cos(p1)*math.Cos(p2)*s2*s2
	return 2 * r * math.Asin(math.Sqrt(min(1, h)))
}

func relClose(a, b, rel float64) bool {
	return math.Abs(a-b) <= rel*math.Max(math.Abs(a), math.Abs(b))+1e-15
}

func (e *env) segments(token string, req *sarv1.ListSegmentsRequest) *sarv1.ListSegmentsResponse {
	e.t.Helper()
	return must[*sarv1.ListSegmentsResponse](e.t, "ListSegments")(e.search().ListSegments(e.as(token), req))
}

func segByID(segs []*sarv1.SearchSegment, id int32) *sarv1.SearchSegment {
	for _, s := range segs {
		if s.GetId() == id {
			return s
		}
	}
	return nil
}

func sameTeam(a, b *sarv1.TeamRef) bool {
	return a.GetAgencyId() == b.GetAgencyId() && a.GetTeamId() == b.GetTeamId()
}

// checkPartition fails unless the segments' cells are disjoint, every cell
// of the grid is in a segment, and (when exact) no segment holds a cell
// outside the grid. It returns the segment of each cell.
func checkPartition(t *testing.T, what string, segs []*sarv1.SearchSegment, g *sarv1.GetSearchGridResponse, exact bool) map[string]int32 {
	t.Helper()
	owner := map[string]int32{}
	bad, dups := 0, 0
	for _, s := range segs {
		if !slices.IsSorted(s.GetCells()) || len(s.GetCells()) == 0 {
			if bad++; bad == 1 {
				t.Errorf("%s: segment %d cells are empty or not sorted", what, s.GetId())
			}
		}
		for _, c := range s.GetCells() {
			if o, dup := owner[c]; dup {
				if dups++; dups == 1 {
					t.Errorf("%s: cell %s in segments %d and %d", what, c, o, s.GetId())
				}
			}
			owner[c] = s.GetId()
		}
	}
	if bad > 1 || dups > 1 {
		t.Errorf("%s: %d segments empty or unsorted, %d cells in two segments", what, bad, dups)
	}
	inGrid := map[string]bool{}
	for _, c := range g.GetCells() {
		inGrid[c.GetCell()] = true
		if _, ok := owner[c.GetCell()]; !ok {
			t.Errorf("%s: grid cell %s in no segment", what, c.GetCell())
			break
		}
	}
	if exact {
		for c, id := range owner {
			if !inGrid[c] {
				t.Errorf("%s: segment %d holds cell %s that is not in the grid", what, id, c)
				break
			}
		}
	}
	return owner
}

func checkDensityOrder(t *testing.T, what string, segs []*sarv1.SearchSegment) {
	t.Helper()
	for i := 1; i < len(segs); i++ {
		if segs[i].GetDensityPerKm2() > segs[i-1].GetDensityPerKm2() {
			t.Errorf("%s: segment %d (density %v) listed after segment %d (density %v)", what,
				segs[i].GetId(), segs[i].GetDensityPerKm2(), segs[i-1].GetId(), segs[i-1].GetDensityPerKm2())
			return
		}
	}
}

func maxID(segs []*sarv1.SearchSegment) int32 {
	var m int32
	for _, s := range segs {
		m = max(m, s.GetId())
	}
	return m
}

// TestSearchSegmentsKeptAndAssigned checks that a segmentation is kept
// across reads, that an assignment survives re-cutting and re-seeding, and
// who may assign.
func TestSearchSegmentsKeptAndAssigned(t *testing.T) {
	e := startEnv(t)
	e.createAgency("police-north", "north", sarv1.AgencyKind_AGENCY_KIND_POLICE_STATION)
	e.createAgency("fire-north", "north", sarv1.AgencyKind_AGENCY_KIND_FIRE_BRIGADE)
	e.createAgency("ranger-north", "north", sarv1.AgencyKind_AGENCY_KIND_VOLUNTEER_RESCUE)
	op := e.operator("north")
	officer := e.rescuer("police-north", "")
	id := e.createIncident(op, "police-north", "fire-north").GetId()
	sc := e.search()
	must[*sarv1.SetSearchPlanResponse](t, "SetSearchPlan")(sc.SetSearchPlan(e.as(op), &sarv1.SetSearchPlanRequest{
		IncidentId: id, Point: &sarv1.LatLng{Lat: ippLat, Lng: ippLng}}))
	w := e.watch(op, id)
	grid := e.grid(op, id, 0)
	if grid.GetGrid().GetProfile() != "hiker/temperate/mountainous" {
		t.Fatalf("plan profile = %q, want the hiker default", grid.GetGrid().GetProfile())
	}

	// Kept, not re-cut.
	first := e.segments(op, &sarv1.ListSegmentsRequest{IncidentId: id})
	again := e.segments(officer, &sarv1.ListSegmentsRequest{IncidentId: id})
	if len(first.GetSegments()) < 2 || first.GetSegmentationVersion() <= 0 {
		t.Fatalf("ListSegments: %d segments at version %d; want several", len(first.GetSegments()), first.GetSegmentationVersion())
	}
	if again.GetSegmentationVersion() != first.GetSegmentationVersion() || len(again.GetSegments()) != len(first.GetSegments()) {
		t.Fatalf("second ListSegments: version %d, %d segments; want the same %d, %d", again.GetSegmentationVersion(),
			len(again.GetSegments()), first.GetSegmentationVersion(), len(first.GetSegments()))
	}
	for i, s := range first.GetSegments() {
		o := again.GetSegments()[i]
		if o.GetId() != s.GetId() || !slices.Equal(o.GetCells(), s.GetCells()) {
			t.Errorf("segment %d of the second read: id %d, %d cells; want id %d, the same %d cells", i, o.GetId(),
				len(o.GetCells()), s.GetId(), len(s.GetCells()))
		}
	}
	checkDensityOrder(t, "first ListSegments", first.GetSegments())
	checkPartition(t, "first ListSegments", first.GetSegments(), grid, true)
	if first.GetTargetAreaM2() != 500_000 {
		t.Errorf("target area = %v, want the default 500,000 m²", first.GetTargetAreaM2())
	}

	// Assign the densest segment to an assigned agency.
	x := first.GetSegments()[0]
	police := &sarv1.TeamRef{AgencyId: "police-north"}
	before := time.Now().Add(-time.Minute)
	as := must[*sarv1.AssignSegmentResponse](t, "AssignSegment")(sc.AssignSegment(e.as(op), &sarv1.AssignSegmentRequest{
		IncidentId: id, SegmentId: x.GetId(), Team: police}))
	if !sameTeam(as.GetSegment().GetAssignedTeam(), police) || as.GetSegment().GetAssignTime() == nil ||
		as.GetSegment().GetAssignTime().AsTime().Before(before) || as.GetSegment().GetAssignTime().AsTime().After(time.Now().Add(time.Minute)) {
		t.Errorf("assigned segment: team %v, time %v; want police-north, now", as.GetSegment().GetAssignedTeam(), as.GetSegment().GetAssignTime())
	}
	if as.GetSegment().GetId() != x.GetId() || !slices.Equal(as.GetSegment().GetCells(), x.GetCells()) {
		t.Errorf("assigned segment id %d, %d cells; want %d with its %d cells", as.GetSegment().GetId(), len(as.GetSegment().GetCells()),
			x.GetId(), len(x.GetCells()))
	}
	if as.GetSegmentationVersion() <= first.GetSegmentationVersion() {
		t.Errorf("segmentation version after assigning = %d, want above %d", as.GetSegmentationVersion(), first.GetSegmentationVersion())
	}
	eventually(t, "a SEGMENTS grid event for the assignment", func() bool {
		for _, ev := range w.grid(sarv1.SearchGridChange_SEARCH_GRID_CHANGE_SEGMENTS) {
			if strings.Contains(ev.GetDescription(), "segment "+strconv.Itoa(int(x.GetId()))+" assigned") {
				return true
			}
		}
		return false
	})
	assigned := e.segments(officer, &sarv1.ListSegmentsRequest{IncidentId: id})
	if s := segByID(assigned.GetSegments(), x.GetId()); !sameTeam(s.GetAssignedTeam(), police) ||
		assigned.GetSegmentationVersion() != as.GetSegmentationVersion() {
		t.Errorf("ListSegments after assigning: segment %d team %v, version %d; want police-north at %d", x.GetId(),
			s.GetAssignedTeam(), assigned.GetSegmentationVersion(), as.GetSegmentationVersion())
	}

	// Re-cut on request: the assigned segment stays, the others are new.
	recut := e.segments(op, &sarv1.ListSegmentsRequest{IncidentId: id, Resegment: true})
	if recut.GetSegmentationVersion() <= as.GetSegmentationVersion() {
		t.Errorf("segmentation version after re-cutting = %d, want above %d", recut.GetSegmentationVersion(), as.GetSegmentationVersion())
	}
	oldMax := maxID(first.GetSegments())
	var reused []int32
	for _, s := range recut.GetSegments() {
		switch {
		case s.GetId() == x.GetId():
			if !slices.Equal(s.GetCells(), x.GetCells()) || !sameTeam(s.GetAssignedTeam(), police) ||
				!s.GetAssignTime().AsTime().Equal(as.GetSegment().GetAssignTime().AsTime()) {
				t.Errorf("re-cut: assigned segment %d has %d cells, team %v, time %v; want its %d cells, police-north, %v", s.GetId(),
					len(s.GetCells()), s.GetAssignedTeam(), s.GetAssignTime(), len(x.GetCells()), as.GetSegment().GetAssignTime())
			}
		case s.GetId() <= oldMax:
			reused = append(reused, s.GetId())
		case s.GetAssignedTeam() != nil:
			t.Errorf("re-cut: new segment %d assigned to %v", s.GetId(), s.GetAssignedTeam())
		}
	}
	if len(reused) > 0 {
		t.Errorf("re-cut: %d segment ids reused (e.g. %d); old ids go up to %d, new ones must be above", len(reused), reused[0], oldMax)
	}
	if segByID(recut.GetSegments(), x.GetId()) == nil {
		t.Fatalf("re-cut: assigned segment %d is gone", x.GetId())
	}
	checkDensityOrder(t, "re-cut", recut.GetSegments())
	checkPartition(t, "re-cut", recut.GetSegments(), grid, true)

	// One segment's cells.
	one := must[*sarv1.GetSearchGridResponse](t, "GetSearchGrid segment")(sc.GetSearchGrid(e.as(officer), &sarv1.GetSearchGridRequest{
		IncidentId: id, SegmentId: x.GetId()}))
	var got []string
	for _, c := range one.GetCells() {
		got = append(got, c.GetCell())
	}
	if one.GetFull() || one.GetSegment().GetId() != x.GetId() || !slices.Equal(got, x.GetCells()) {
		t.Errorf("GetSearchGrid(segment %d): full %v, segment %d, %d cells; want not full, segment %d, its %d cells",
			x.GetId(), one.GetFull(), one.GetSegment().GetId(), len(got), x.GetId(), len(x.GetCells()))
	}
	_, err := sc.GetSearchGrid(e.as(op), &sarv1.GetSearchGridRequest{IncidentId: id, SegmentId: maxID(recut.GetSegments()) + 1000})
	wantCode(t, "GetSearchGrid of an unknown segment", err, codes.NotFound)
	stale := first.GetSegments()[1].GetId() // cut away by the re-cut
	_, err = sc.GetSearchGrid(e.as(op), &sarv1.GetSearchGridRequest{IncidentId: id, SegmentId: stale})
	wantCode(t, "GetSearchGrid of a segment that was cut anew", err, codes.NotFound)

	// Refusals.
	_, err = sc.AssignSegment(e.as(op), &sarv1.AssignSegmentRequest{IncidentId: id, SegmentId: x.GetId(),
		Team: &sarv1.TeamRef{AgencyId: "ranger-north"}})
	wantField(t, "AssignSegment to an agency not on the incident", err, "team")
	_, err = sc.AssignSegment(e.as(op), &sarv1.AssignSegmentRequest{IncidentId: id, SegmentId: 0, Team: police})
	wantField(t, "AssignSegment of segment 0", err, "segment_id")
	_, err = sc.AssignSegment(e.as(officer), &sarv1.AssignSegmentRequest{IncidentId: id, SegmentId: x.GetId(), Team: police})
	wantCode(t, "rescuer AssignSegment", err, codes.PermissionDenied)
	_, err = sc.ListSegments(e.as(officer), &sarv1.ListSegmentsRequest{IncidentId: id, Resegment: true})
	wantCode(t, "rescuer ListSegments resegment", err, codes.PermissionDenied)
	if r := e.segments(officer, &sarv1.ListSegmentsRequest{IncidentId: id}); r.GetSegmentationVersion() != recut.GetSegmentationVersion() {
		t.Errorf("refusals changed the segmentation version to %d, want %d", r.GetSegmentationVersion(), recut.GetSegmentationVersion())
	}

	// Freeing.
	freed := must[*sarv1.AssignSegmentResponse](t, "AssignSegment free")(sc.AssignSegment(e.as(op), &sarv1.AssignSegmentRequest{
		IncidentId: id, SegmentId: x.GetId()}))
	if freed.GetSegment().GetAssignedTeam() != nil || freed.GetSegment().GetAssignTime() != nil ||
		freed.GetSegmentationVersion() <= recut.GetSegmentationVersion() {
		t.Errorf("freed segment: team %v, time %v, version %d; want none, none, above %d", freed.GetSegment().GetAssignedTeam(),
			freed.GetSegment().GetAssignTime(), freed.GetSegmentationVersion(), recut.GetSegmentationVersion())
	}
	if s := segByID(e.segments(op, &sarv1.ListSegmentsRequest{IncidentId: id}).GetSegments(), x.GetId()); s == nil || s.GetAssignedTeam() != nil {
		t.Errorf("ListSegments after freeing: segment %d = %v, want it unassigned", x.GetId(), s)
	}

	// A re-seed elsewhere re-cuts the unassigned part; an assigned segment
	// stays as it was.
	fire := &sarv1.TeamRef{AgencyId: "fire-north"}
	as2 := must[*sarv1.AssignSegmentResponse](t, "AssignSegment fire")(sc.AssignSegment(e.as(op), &sarv1.AssignSegmentRequest{
		IncidentId: id, SegmentId: x.GetId(), Team: fire}))
	// Another target area cuts the unassigned part anew; a rescuer's
	// target area does not.
	bigger := e.segments(op, &sarv1.ListSegmentsRequest{IncidentId: id, TargetAreaM2: 2_000_000})
	if bigger.GetTargetAreaM2() != 2_000_000 || bigger.GetSegmentationVersion() <= as2.GetSegmentationVersion() ||
		len(bigger.GetSegments()) >= len(recut.GetSegments()) {
		t.Errorf("ListSegments with 2 km²: target %v, version %d, %d segments; want 2 km², above %d, fewer than %d",
			bigger.GetTargetAreaM2(), bigger.GetSegmentationVersion(), len(bigger.GetSegments()), as2.GetSegmentationVersion(), len(recut.GetSegments()))
	}
	if s := segByID(bigger.GetSegments(), x.GetId()); s == nil || !sameTeam(s.GetAssignedTeam(), fire) || !slices.Equal(s.GetCells(), x.GetCells()) {
		t.Errorf("ListSegments with 2 km²: assigned segment %d = %v, want it kept", x.GetId(), s)
	}
	checkPartition(t, "ListSegments with 2 km²", bigger.GetSegments(), grid, true)
	if r := e.segments(officer, &sarv1.ListSegmentsRequest{IncidentId: id, TargetAreaM2: 1_000_000}); r.GetSegmentationVersion() != bigger.GetSegmentationVersion() ||
		r.GetTargetAreaM2() != 2_000_000 {
		t.Errorf("rescuer ListSegments with 1 km²: version %d, target %v; want %d, 2 km² (a rescuer's read does not re-cut)",
			r.GetSegmentationVersion(), r.GetTargetAreaM2(), bigger.GetSegmentationVersion())
	}
	latest := e.segments(op, &sarv1.ListSegmentsRequest{IncidentId: id})
	must[*sarv1.SetSearchPlanResponse](t, "SetSearchPlan elsewhere")(sc.SetSearchPlan(e.as(op), &sarv1.SetSearchPlanRequest{
		IncidentId: id, Point: &sarv1.LatLng{Lat: ippLat + 0.01, Lng: ippLng + 0.01}}))
	grid2 := e.grid(op, id, 0)
	if grid2.GetGrid().GetSeedVersion() <= grid.GetGrid().GetSeedVersion() {
		t.Fatalf("seed version after re-seeding = %d, want above %d", grid2.GetGrid().GetSeedVersion(), grid.GetGrid().GetSeedVersion())
	}
	reseeded := e.segments(officer, &sarv1.ListSegmentsRequest{IncidentId: id})
	if reseeded.GetSegmentationVersion() <= as2.GetSegmentationVersion() {
		t.Errorf("segmentation version after a re-seed = %d, want above %d (cut anew)", reseeded.GetSegmentationVersion(), as2.GetSegmentationVersion())
	}
	if reseeded.GetTargetAreaM2() != 2_000_000 {
		t.Errorf("after a re-seed: target area %v, want the segmentation's 2 km² kept", reseeded.GetTargetAreaM2())
	}
	latestMax := maxID(latest.GetSegments())
	xs := segByID(reseeded.GetSegments(), x.GetId())
	if xs == nil || !slices.Equal(xs.GetCells(), x.GetCells()) || !sameTeam(xs.GetAssignedTeam(), fire) {
		t.Errorf("after a re-seed, assigned segment %d = %v; want its cells assigned to fire-north", x.GetId(), xs)
	}
	var free []*sarv1.SearchSegment
	for _, s := range reseeded.GetSegments() {
		if s.GetId() == x.GetId() {
			continue
		}
		if s.GetId() <= latestMax || s.GetAssignedTeam() != nil {
			t.Errorf("after a re-seed: segment %d (team %v), want a new unassigned id above %d", s.GetId(), s.GetAssignedTeam(), latestMax)
			break
		}
		free = append(free, s)
	}
	checkDensityOrder(t, "after a re-seed", reseeded.GetSegments())
	checkPartition(t, "after a re-seed (unassigned part)", free, &sarv1.GetSearchGridResponse{}, false)
	owner := checkPartition(t, "after a re-seed", reseeded.GetSegments(), grid2, false)
	inGrid2 := map[string]bool{}
	for _, c := range grid2.GetCells() {
		inGrid2[c.GetCell()] = true
	}
	for c, sid := range owner {
		if sid != x.GetId() && !inGrid2[c] {
			t.Errorf("after a re-seed: new segment %d holds cell %s outside the new grid", sid, c)
			break
		}
	}
}

// TestSearchTaskSuggestion checks SuggestNextTask against a computation by
// hand, its assignment, a rescuer's own-team request, and its refusals.
func TestSearchTaskSuggestion(t *testing.T) {
	e := startEnv(t)
	e.createAgency("police-north", "north", sarv1.AgencyKind_AGENCY_KIND_POLICE_STATION)
	e.createAgency("fire-north", "north", sarv1.AgencyKind_AGENCY_KIND_FIRE_BRIGADE)
	op := e.operator("north")
	officer, officer2 := e.rescuer("police-north", ""), e.rescuer("police-north", "")
	fireman := e.rescuer("fire-north", "")
	id := e.createIncident(op, "police-north", "fire-north").GetId()
	sc := e.search()
	police, fire := &sarv1.TeamRef{AgencyId: "police-north"}, &sarv1.TeamRef{AgencyId: "fire-north"}
	// 5 km south-west of the IPP.
	pos := &sarv1.LatLng{Lat: ippLat - 0.032, Lng: ippLng - 0.037}

	_, err := sc.SuggestNextTask(e.as(op), &sarv1.SuggestNextTaskRequest{IncidentId: id, Team: police, Position: pos})
	wantCode(t, "SuggestNextTask without a plan", err, codes.FailedPrecondition)

	must[*sarv1.SetSearchPlanResponse](t, "SetSearchPlan")(sc.SetSearchPlan(e.as(op), &sarv1.SetSearchPlanRequest{
		IncidentId: id, Point: &sarv1.LatLng{Lat: ippLat, Lng: ippLng}, SweepWidthsM: map[string]float64{"dog": 60}}))
	list := e.segments(op, &sarv1.ListSegmentsRequest{IncidentId: id})
	const searchers, searchSpeed, travelSpeed, coverage = 3, 0.5, 0.8, 1.0
	sweep := 20.0 // foot, the default
	type hand struct {
		id                            int32
		score, travel, srch, expected float64
	}
	byHand := func(segs []*sarv1.SearchSegment, at *sarv1.LatLng, n int, skip map[int32]bool) (best hand, all map[int32]hand) {
		all = map[int32]hand{}
		best.id = -1
		pod := 1 - math.Exp(-coverage)
		for _, s := range segs {
			if s.GetAssignedTeam() != nil || skip[s.GetId()] || !(s.GetPoa() > 0) {
				continue
			}
			d := haversineM(at.GetLat(), at.GetLng(), s.GetCentroid().GetLat(), s.GetCentroid().GetLng()) - math.Sqrt(s.GetAreaM2()/math.Pi)
			h := hand{id: s.GetId(), travel: max(0, d) / travelSpeed, srch: coverage * s.GetAreaM2() / (float64(n) * sweep * searchSpeed)}
			h.expected = s.GetPoa() * pod
			h.score = h.expected / ((h.travel + h.srch) / 3600)
			all[h.id] = h
			if best.id < 0 || h.score > best.score || (h.score == best.score && h.id < best.id) {
				best = h
			}
		}
		return best, all
	}
	checkTask := func(what string, got *sarv1.SuggestNextTaskResponse, best hand, all map[int32]hand) {
		t.Helper()
		h, ok := all[got.GetSegment().GetId()]
		if !ok {
			t.Errorf("%s: suggested segment %d is not an unassigned segment", what, got.GetSegment().GetId())
			return
		}
		if !relClose(got.GetScorePerHour(), h.score, 1e-6) || !relClose(got.GetExpectedPos(), h.expected, 1e-9) {
			t.Errorf("%s: segment %d score %v/h, expected POS %v; by hand %v/h, %v", what, h.id, got.GetScorePerHour(),
				got.GetExpectedPos(), h.score, h.expected)
		}
		if math.Abs(got.GetTravel().AsDuration().Seconds()-h.travel) > 1 || math.Abs(got.GetSearch().AsDuration().Seconds()-h.srch) > 1 {
			t.Errorf("%s: travel %v, search %v; by hand %.0f s, %.0f s", what, got.GetTravel().AsDuration(), got.GetSearch().AsDuration(), h.travel, h.srch)
		}
		if h.id != best.id && !relClose(h.score, best.score, 1e-9) {
			t.Errorf("%s: suggested segment %d (%v/h), but segment %d scores %v/h by hand", what, h.id, h.score, best.id, best.score)
		}
	}

	s1 := must[*sarv1.SuggestNextTaskResponse](t, "SuggestNextTask")(sc.SuggestNextTask(e.as(op), &sarv1.SuggestNextTaskRequest{
		IncidentId: id, Team: police, Position: pos, Searchers: searchers}))
	best, all := byHand(list.GetSegments(), pos, searchers, nil)
	if s1.GetSegment() == nil || s1.GetExpectedPos() <= 0 || s1.GetTravel().AsDuration() <= 0 || s1.GetSearch().AsDuration() <= 0 ||
		s1.GetScorePerHour() <= 0 || s1.GetAssigned() {
		t.Fatalf("SuggestNextTask = %v; want a segment with positive expected POS, travel, search and score, not assigned", s1)
	}
	if s1.GetTeamPosition().GetLat() != pos.GetLat() || s1.GetTeamPosition().GetLng() != pos.GetLng() {
		t.Errorf("team position = %v, want the given %v", s1.GetTeamPosition(), pos)
	}
	checkTask("operator's suggestion", s1, best, all)
	if s1.GetSegment().GetId() != best.id {
		t.Errorf("suggested segment %d, by hand %d", s1.GetSegment().GetId(), best.id)
	}
	t.Logf("suggested segment %d of %d: POA %.5f, %.0f m², travel %v, search %v, %.6f/h", s1.GetSegment().GetId(), len(all),
		s1.GetSegment().GetPoa(), s1.GetSegment().GetAreaM2(), s1.GetTravel().AsDuration(), s1.GetSearch().AsDuration(), s1.GetScorePerHour())
	// A dog team sweeps with the plan's dog width.
	sweep = 60
	sd := must[*sarv1.SuggestNextTaskResponse](t, "SuggestNextTask dog")(sc.SuggestNextTask(e.as(op), &sarv1.SuggestNextTaskRequest{
		IncidentId: id, Team: police, Position: pos, Searchers: searchers, SearcherType: "dog"}))
	bestDog, allDog := byHand(list.GetSegments(), pos, searchers, nil)
	checkTask("dog team's suggestion", sd, bestDog, allDog)
	sweep = 20
	if l := e.segments(op, &sarv1.ListSegmentsRequest{IncidentId: id}); l.GetSegmentationVersion() != list.GetSegmentationVersion() {
		t.Errorf("a suggestion without assign moved the segmentation version to %d, want %d", l.GetSegmentationVersion(), list.GetSegmentationVersion())
	}

	// Assign it; another team gets another segment.
	a1 := must[*sarv1.SuggestNextTaskResponse](t, "SuggestNextTask assign")(sc.SuggestNextTask(e.as(op), &sarv1.SuggestNextTaskRequest{
		IncidentId: id, Team: police, Position: pos, Searchers: searchers, Assign: true}))
	if !a1.GetAssigned() || a1.GetSegment().GetId() != s1.GetSegment().GetId() || !sameTeam(a1.GetSegment().GetAssignedTeam(), police) {
		t.Errorf("assigning suggestion: assigned %v, segment %d, team %v; want segment %d assigned to police-north", a1.GetAssigned(),
			a1.GetSegment().GetId(), a1.GetSegment().GetAssignedTeam(), s1.GetSegment().GetId())
	}
	list2 := e.segments(op, &sarv1.ListSegmentsRequest{IncidentId: id})
	if s := segByID(list2.GetSegments(), a1.GetSegment().GetId()); !sameTeam(s.GetAssignedTeam(), police) {
		t.Errorf("ListSegments after assigning: segment %d team %v, want police-north", a1.GetSegment().GetId(), s.GetAssignedTeam())
	}
	a2 := must[*sarv1.SuggestNextTaskResponse](t, "SuggestNextTask fire")(sc.SuggestNextTask(e.as(op), &sarv1.SuggestNextTaskRequest{
		IncidentId: id, Team: fire, Position: pos, Searchers: searchers}))
	if a2.GetSegment().GetId() == a1.GetSegment().GetId() {
		t.Errorf("second team's suggestion is the segment assigned to the first (%d)", a1.GetSegment().GetId())
	}
	best2, all2 := byHand(list2.GetSegments(), pos, searchers, nil)
	checkTask("second team's suggestion", a2, best2, all2)

	// A rescuer asks for their own team: the team's newest last known
	// position, and the team's size as the number of searchers.
	e.join(officer, id, "officer-phone")
	e.join(officer2, id, "officer2-phone")
	now := time.Now()
	newest := walk(1, 3, now.Add(-10*time.Second))
	e.openDevice(officer, id, "officer-phone").send(newest...)
	e.openDevice(officer2, id, "officer2-phone").send(walk(40, 3, now.Add(-2*time.Minute))...) // sent later, but older
	last := newest[len(newest)-1]
	var own *sarv1.SuggestNextTaskResponse
	eventually(t, "the team's position", func() bool {
		r, err := sc.SuggestNextTask(e.as(officer), &sarv1.SuggestNextTaskRequest{IncidentId: id})
		if err != nil {
			t.Fatalf("rescuer SuggestNextTask: %v", err)
		}
		own = r
		return r.GetTeamPosition().GetLat() == last.GetLat() && r.GetTeamPosition().GetLng() == last.GetLng()
	})
	ownList := e.segments(officer, &sarv1.ListSegmentsRequest{IncidentId: id})
	ownBest, ownAll := byHand(ownList.GetSegments(), own.GetTeamPosition(), 2, nil)
	checkTask("rescuer's own suggestion (2 searchers)", own, ownBest, ownAll)
	if own.GetAssigned() {
		t.Errorf("rescuer's suggestion is assigned")
	}

	// Refusals.
	_, err = sc.SuggestNextTask(e.as(officer), &sarv1.SuggestNextTaskRequest{IncidentId: id, Team: fire, Position: pos})
	wantCode(t, "rescuer asks for another team", err, codes.PermissionDenied)
	_, err = sc.SuggestNextTask(e.as(fireman), &sarv1.SuggestNextTaskRequest{IncidentId: id, Team: police})
	wantCode(t, "fireman asks for the police", err, codes.PermissionDenied)
	_, err = sc.SuggestNextTask(e.as(officer), &sarv1.SuggestNextTaskRequest{IncidentId: id, Assign: true})
	wantCode(t, "rescuer assigns", err, codes.PermissionDenied)
	_, err = sc.SuggestNextTask(e.as(op), &sarv1.SuggestNextTaskRequest{IncidentId: id, Team: fire})
	wantCode(t, "no position and a team without fixes", err, codes.FailedPrecondition)
	for _, bad := range []struct {
		field string
		req   *sarv1.SuggestNextTaskRequest
	}{
		{"searchers", &sarv1.SuggestNextTaskRequest{Searchers: -1}},
		{"search_speed_m_s", &sarv1.SuggestNextTaskRequest{SearchSpeedMS: math.NaN()}},
		{"search_speed_m_s", &sarv1.SuggestNextTaskRequest{SearchSpeedMS: 100}},
		{"coverage", &sarv1.SuggestNextTaskRequest{Coverage: 0.01}},
		{"searcher_type", &sarv1.SuggestNextTaskRequest{SearcherType: "Bad Type"}},
	} {
		bad.req.IncidentId, bad.req.Team, bad.req.Position = id, police, pos
		_, err = sc.SuggestNextTask(e.as(op), bad.req)
		wantField(t, "SuggestNextTask with a bad "+bad.field, err, bad.field)
	}
}

// coverageOf returns the coverage of every covered cell of a grid.
func coverageOf(g *sarv1.GetSearchGridResponse) map[string]float64 {
	out := map[string]float64{}
	for _, c := range g.GetCells() {
		if c.GetCoverage() > 0 {
			out[c.GetCell()] = c.GetCoverage()
		}
	}
	return out
}

func participantType(t *testing.T, e *env, token, incident, participant string) string {
	t.Helper()
	ps := must[*sarv1.ListParticipantsResponse](t, "ListParticipants")(e.inc.ListParticipants(e.as(token),
		&sarv1.ListParticipantsRequest{IncidentId: incident}))
	for _, p := range ps.GetParticipants() {
		if p.GetId() == participant {
			return p.GetSearcherType()
		}
	}
	t.Fatalf("participant %s not listed", participant)
	return ""
}

// TestSearchSearcherTypeSweepWidth checks that a track counts with the
// sweep width of the searcher's type.
func TestSearchSearcherTypeSweepWidth(t *testing.T) {
	e := startEnv(t)
	e.createAgency("police-north", "north", sarv1.AgencyKind_AGENCY_KIND_POLICE_STATION)
	op := e.operator("north")
	handler, walker := e.rescuer("police-north", ""), e.rescuer("police-north", "")
	sc := e.search()
	widths := map[string]float64{"foot": 20, "dog": 60}
	a := e.createIncident(op, "police-north").GetId() // the dog searches here…
	b := e.createIncident(op, "police-north").GetId() // …and the searcher on foot here, the same way
	for _, id := range []string{a, b} {
		plan := must[*sarv1.SetSearchPlanResponse](t, "SetSearchPlan")(sc.SetSearchPlan(e.as(op), &sarv1.SetSearchPlanRequest{
			IncidentId: id, SweepWidthsM: widths})).GetGrid()
		if plan.GetSweepWidthsM()["dog"] != 60 || plan.GetSweepWidthsM()["foot"] != 20 {
			t.Fatalf("plan sweep widths = %v, want foot 20, dog 60", plan.GetSweepWidthsM())
		}
	}

	dog := must[*sarv1.JoinIncidentResponse](t, "JoinIncident dog")(e.inc.JoinIncident(e.as(handler), &sarv1.JoinIncidentRequest{
		IncidentId: a, DeviceId: "dog-phone", DisplayName: "Rex", SearcherType: "dog"})).GetParticipant()
	footA := e.join(walker, a, "walker-phone").GetParticipant()
	footB := e.join(walker, b, "walker-phone").GetParticipant()
	if dog.GetSearcherType() != "dog" || footA.GetSearcherType() != "foot" {
		t.Errorf("JoinIncident searcher types %q, %q; want dog, foot", dog.GetSearcherType(), footA.GetSearcherType())
	}
	if got := participantType(t, e, op, a, dog.GetId()); got != "dog" {
		t.Errorf("ListParticipants: dog handler's searcher type = %q, want dog", got)
	}
	if got := participantType(t, e, op, a, footA.GetId()); got != "foot" {
		t.Errorf("ListParticipants: walker's searcher type = %q, want foot", got)
	}

	// Bad searcher types.
	_, err := e.inc.JoinIncident(e.as(handler), &sarv1.JoinIncidentRequest{IncidentId: a, DeviceId: "dog-phone", SearcherType: "DOG!"})
	wantField(t, "JoinIncident with searcher type DOG!", err, "searcher_type")
	caller := must[*sarv1.CreateShareLinkResponse](t, "CreateShareLink")(e.auth.CreateShareLink(e.as(op),
		&sarv1.CreateShareLinkRequest{IncidentId: a})).GetToken()
	_, err = e.inc.JoinIncident(e.as(caller), &sarv1.JoinIncidentRequest{IncidentId: a, DeviceId: "caller-phone", SearcherType: "foot"})
	wantField(t, "caller JoinIncident with a searcher type", err, "searcher_type")

	// The same 39 confirmed moves of 20 m in each incident.
	start := time.Now().Add(-time.Hour)
	dogDev, footDev := e.openDevice(handler, a, "dog-phone"), e.openDevice(walker, b, "walker-phone")
	for i := range 2 {
		dogDev.send(line(uint64(i*20+1), 20, start)...)
		footDev.send(line(uint64(i*20+1), 20, start)...)
	}
	covDog, covFoot := coverageOf(e.grid(op, a, 0)), coverageOf(e.grid(op, b, 0))
	if len(covFoot) < 3 || len(covDog) != len(covFoot) {
		t.Fatalf("covered cells: %d by the dog, %d on foot; want the same, at least 3", len(covDog), len(covFoot))
	}
	for c, f := range covFoot {
		if d := covDog[c]; !relClose(d, 3*f, 1e-9) {
			t.Errorf("cell %s: dog coverage %v, foot %v; want a ratio of 3 (got %v)", c, d, f, d/f)
		}
	}

	// The handler's phone joins again as a drone, which the plan has no
	// width for: the following fixes count with the foot width.
	drone := must[*sarv1.JoinIncidentResponse](t, "JoinIncident drone")(e.inc.JoinIncident(e.as(handler), &sarv1.JoinIncidentRequest{
		IncidentId: a, DeviceId: "dog-phone", SearcherType: "drone"}))
	if drone.GetParticipant().GetId() != dog.GetId() || drone.GetAckedThrough() != 40 {
		t.Errorf("rejoin: participant %s at %d; want %s at 40", drone.GetParticipant().GetId(), drone.GetAckedThrough(), dog.GetId())
	}
	if got := participantType(t, e, op, a, dog.GetId()); got != "drone" {
		t.Errorf("ListParticipants after rejoining as a drone: searcher type %q, want drone", got)
	}
	if got := participantType(t, e, op, a, footA.GetId()); got != "foot" {
		t.Errorf("ListParticipants after the drone rejoined: walker's searcher type %q, want foot", got)
	}
	// Rejoining without a type keeps the type.
	e.join(walker, b, "walker-phone")
	if got := participantType(t, e, op, b, footB.GetId()); got != "foot" {
		t.Errorf("walker rejoined without a type: %q, want foot kept", got)
	}
	dogDev.send(line(41, 20, start)...)
	footDev.send(line(41, 20, start)...)
	covDrone, covFoot2 := coverageOf(e.grid(op, a, 0)), coverageOf(e.grid(op, b, 0))
	grew := 0
	for c, f2 := range covFoot2 {
		df, dd := f2-covFoot[c], covDrone[c]-covDog[c]
		if df == 0 && dd == 0 {
			continue
		}
		grew++
		if math.Abs(dd-df) > 1e-9*math.Max(math.Abs(dd), math.Abs(df))+1e-12 {
			t.Errorf("cell %s after rejoining as a drone: coverage grew by %v, on foot by %v; want the same (foot width)", c, dd, df)
		}
	}
	if grew == 0 || len(covDrone) != len(covFoot2) {
		t.Errorf("after the drone's batch: %d cells grew, %d covered by the drone, %d on foot; want some, the same", grew, len(covDrone), len(covFoot2))
	}
}

// cellCentre returns the centre of the resolution-9 cell at lat, lng.
func cellCentre(t *testing.T, lat, lng float64) (string, float64, float64) {
	t.Helper()
	hex := hexCell(t, lat, lng)
	c, err := strconv.ParseUint(hex, 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	ll, err := h3.Cell(c).LatLng()
	if err != nil {
		t.Fatal(err)
	}
	return hex, ll.Lat, ll.Lng
}

func callerFix(seq uint64, lat, lng, acc float64, at time.Time) *sarv1.LocationFix {
	return &sarv1.LocationFix{Sequence: seq, Lat: lat, Lng: lng, HorizontalAccuracyM: acc, Time: timestamppb.New(at),
		Source: sarv1.FixSource_FIX_SOURCE_GNSS}
}

// TestSearchCallerFixCollapse checks that a caller's live fix collapses the
// grid to its accuracy disk, when it does so again, and when not.
func TestSearchCallerFixCollapse(t *testing.T) {
	e := startEnv(t)
	e.createAgency("police-north", "north", sarv1.AgencyKind_AGENCY_KIND_POLICE_STATION)
	op := e.operator("north")
	id := e.createIncident(op, "police-north").GetId()
	sc := e.search()
	hiker := must[*sarv1.SetSearchPlanResponse](t, "SetSearchPlan")(sc.SetSearchPlan(e.as(op), &sarv1.SetSearchPlanRequest{
		IncidentId: id})).GetGrid()
	if hiker.GetCellCount() < 5000 || !hiker.GetFollowCallerFixes() {
		t.Fatalf("hiker plan: %d cells, follow_caller_fixes %v; want thousands, true", hiker.GetCellCount(), hiker.GetFollowCallerFixes())
	}
	w := e.watch(op, id)
	link := must[*sarv1.CreateShareLinkResponse](t, "CreateShareLink")(e.auth.CreateShareLink(e.as(op), &sarv1.CreateShareLinkRequest{
		IncidentId: id, DisplayName: "Caller"}))
	callerPart := link.GetParticipant().GetId()
	e.join(link.GetToken(), id, "caller-phone")
	dev := e.openDevice(link.GetToken(), id, "caller-phone")

	// 3 km north of the IPP, at a cell's centre.
	fixCell, lat, lng := cellCentre(t, ippLat+3000/111_195.0, ippLng)
	base := time.Now().Add(-10 * time.Minute)
	// A rescuer searched there before the caller's fix: that search counts
	// against the collapsed grid too (coverage is kept, see followCaller).
	e.createAgency("fire-north", "north", sarv1.AgencyKind_AGENCY_KIND_FIRE_BRIGADE)
	must[*sarv1.AssignAgenciesResponse](t, "AssignAgencies")(e.inc.AssignAgencies(e.as(op), &sarv1.AssignAgenciesRequest{
		IncidentId: id, AgencyIds: []string{"fire-north"}}))
	fireman := e.rescuer("fire-north", "")
	e.join(fireman, id, "fire-phone")
	track := make([]*sarv1.LocationFix, 12)
	for i := range track {
		track[i] = callerFix(uint64(i+1), lat+float64(i-6)*20/111_195.0, lng, 5, base.Add(time.Duration(i-20)*10*time.Second))
	}
	e.openDevice(fireman, id, "fire-phone").send(track...)
	searched := checkNormalised(t, "searched", e.grid(op, id, 0))[fixCell].GetCoverage()
	if searched <= 0.01 {
		t.Fatalf("the fix's cell has coverage %v after the search, want some", searched)
	}
	f1 := callerFix(1, lat, lng, 50, base)
	if ack := dev.send(f1); len(ack.GetStored()) != 1 {
		t.Fatalf("caller fix ack = %v, want it stored", ack)
	}
	var g *sarv1.GetSearchGridResponse
	eventually(t, "the grid collapsed to the caller's fix", func() bool {
		g = e.grid(op, id, 0)
		return g.GetGrid().GetProfile() == "fix"
	})
	sm := g.GetGrid()
	if sm.GetOrigin().GetLat() != lat || sm.GetOrigin().GetLng() != lng || sm.GetOriginAccuracyM() != 50 ||
		sm.GetOriginParticipantId() != callerPart || !sm.GetFollowCallerFixes() || !sm.GetOriginTime().AsTime().Equal(base) {
		t.Errorf("collapsed grid: origin %v ± %v m, participant %q, follow %v, time %v; want %v,%v ± 50 m, %q, true, %v",
			sm.GetOrigin(), sm.GetOriginAccuracyM(), sm.GetOriginParticipantId(), sm.GetFollowCallerFixes(), sm.GetOriginTime().AsTime(),
			lat, lng, callerPart, base)
	}
	cells := checkNormalised(t, "collapsed grid", g)
	if len(cells) == 0 || len(cells) > 100 || len(cells)*20 > int(hiker.GetCellCount()) {
		t.Errorf("collapsed grid has %d cells, want far fewer than the plan's %d", len(cells), hiker.GetCellCount())
	}
	top := ""
	for c, cell := range cells {
		if top == "" || cell.GetPoa() > cells[top].GetPoa() {
			top = c
		}
	}
	if top != fixCell {
		t.Errorf("highest POA in cell %s (%v), want the fix's cell %s (%v)", top, cells[top].GetPoa(), fixCell, cells[fixCell].GetPoa())
	}
	if c := cells[fixCell].GetCoverage(); c != searched {
		t.Errorf("the fix's cell has coverage %v after the collapse, want the %v searched before (kept)", c, searched)
	}
	if sm.GetProbabilityOfSuccess() <= 0 || sm.GetSeedVersion() <= hiker.GetSeedVersion() || sm.GetSeedVersion() != sm.GetVersion() ||
		sm.GetFollowedFix().GetDecision() != sarv1.CallerFixDecision_CALLER_FIX_DECISION_PLAN_SUPERSEDED {
		t.Errorf("collapsed grid: POS %v, seed version %d, version %d, rule %v; want the search counted, a new seed version, PLAN_SUPERSEDED",
			sm.GetProbabilityOfSuccess(), sm.GetSeedVersion(), sm.GetVersion(), sm.GetFollowedFix().GetDecision())
	}
	eventually(t, "a CALLER_FIX grid event", func() bool {
		for _, ev := range w.grid(sarv1.SearchGridChange_SEARCH_GRID_CHANGE_CALLER_FIX) {
			if ev.GetGrid().GetSeedVersion() == sm.GetSeedVersion() && ev.GetGrid().GetOriginParticipantId() == callerPart {
				if !relClose(ev.GetGrid().GetProbabilityOfSuccess(), sm.GetProbabilityOfSuccess(), 1e-9) || int(ev.GetGrid().GetCellCount()) != len(cells) ||
					ev.GetGrid().GetProfile() != "fix" || ev.GetGrid().GetFollowedFix().GetDecision() != sarv1.CallerFixDecision_CALLER_FIX_DECISION_PLAN_SUPERSEDED {
					t.Errorf("CALLER_FIX event grid %v; want POS %v, %d cells, profile fix, PLAN_SUPERSEDED", ev.GetGrid(), sm.GetProbabilityOfSuccess(), len(cells))
				}
				return true
			}
		}
		return false
	})
	seed := sm.GetSeedVersion()
	seedOf := func() int64 { return e.grid(op, id, 0).GetGrid().GetSeedVersion() }

	// 5 s later, 3 m away: the same place.
	dev.send(callerFix(2, lat+3/111_195.0, lng, 50, base.Add(5*time.Second)))
	if s := seedOf(); s != seed {
		t.Errorf("a fix 5 s later at the same place re-seeded the grid (seed version %d, was %d)", s, seed)
	}
	// 8 s after the first, 60 m west and more accurate: it would count
	// (moved beyond both accuracies, at a walking pace), but within 10 s
	// of the last collapse it is too soon.
	dev.send(callerFix(3, lat, lng-60/(111_195.0*math.Cos(lat*math.Pi/180)), 20, base.Add(8*time.Second)))
	if s := seedOf(); s != seed {
		t.Errorf("a fix 8 s after the collapse re-seeded the grid (seed version %d, was %d); want at most one collapse per 10 s", s, seed)
	}
	// 15 s after the first, 100 m east: moved beyond both accuracies (a
	// plausible pace after the fixes' accuracy).
	lng3 := lng + 100/(111_195.0*math.Cos(lat*math.Pi/180))
	dev.send(callerFix(4, lat, lng3, 50, base.Add(15*time.Second)))
	var g3 *sarv1.SearchGridSummary
	eventually(t, "a re-seed from a fix 100 m away", func() bool {
		g3 = e.grid(op, id, 0).GetGrid()
		return g3.GetSeedVersion() > seed
	})
	if g3.GetOrigin().GetLng() != lng3 || !g3.GetOriginTime().AsTime().Equal(base.Add(15*time.Second)) {
		t.Errorf("re-seeded grid origin %v at %v, want the third fix", g3.GetOrigin(), g3.GetOriginTime().AsTime())
	}
	seed = g3.GetSeedVersion()
	// 15 s later at the same place, markedly more accurate: again.
	dev.send(callerFix(5, lat, lng3, 30, base.Add(30*time.Second)))
	if s := e.grid(op, id, 0).GetGrid(); s.GetSeedVersion() <= seed || s.GetOriginAccuracyM() != 30 {
		t.Errorf("a fix 30 %% more accurate did not re-seed (seed version %d, was %d; accuracy %v)", s.GetSeedVersion(), seed, s.GetOriginAccuracyM())
	} else {
		seed = s.GetSeedVersion()
	}
	// A coarse fix (2 km), 3 minutes later and elsewhere: kept as a
	// position but never a plan.
	dev.send(callerFix(6, lat+0.01, lng, 2000, base.Add(3*time.Minute)))
	if s := e.grid(op, id, 0).GetGrid(); s.GetSeedVersion() != seed || s.GetOriginAccuracyM() != 30 {
		t.Errorf("a 2 km fix re-seeded the grid (seed version %d, was %d; accuracy %v)", s.GetSeedVersion(), seed, s.GetOriginAccuracyM())
	}
	// More than 2 minutes after the last collapse, at the same place: it
	// only confirms the position, which changes nothing.
	before7 := e.grid(op, id, 0).GetGrid()
	dev.send(callerFix(7, lat, lng3, 30, base.Add(3*time.Minute+30*time.Second)))
	if s := e.grid(op, id, 0).GetGrid(); s.GetSeedVersion() != seed || s.GetVersion() != before7.GetVersion() ||
		!s.GetOriginTime().AsTime().Equal(base.Add(30*time.Second)) ||
		s.GetLastCallerFix().GetDecision() != sarv1.CallerFixDecision_CALLER_FIX_DECISION_CONFIRMS {
		t.Errorf("a confirming fix 3 min later: seed version %d (was %d), version %d (was %d), origin time %v, last decision %v; want unchanged, CONFIRMS",
			s.GetSeedVersion(), seed, s.GetVersion(), before7.GetVersion(), s.GetOriginTime().AsTime(), s.GetLastCallerFix().GetDecision())
	}

	// Not following caller fixes any more: a settings change, the grid
	// stays as it is.
	beforeStop := e.grid(op, id, 0).GetGrid()
	stop := must[*sarv1.UpdateSearchSettingsResponse](t, "UpdateSearchSettings unfollow")(sc.UpdateSearchSettings(e.as(op),
		&sarv1.UpdateSearchSettingsRequest{IncidentId: id, FollowCallerFixes: new(bool)})).GetGrid()
	if stop.GetFollowCallerFixes() || stop.GetProfile() != "fix" || stop.GetSeedVersion() != beforeStop.GetSeedVersion() ||
		stop.GetVersion() != beforeStop.GetVersion() {
		t.Fatalf("settings with follow_caller_fixes false: follow %v, profile %q, seed %d (was %d), version %d (was %d); want the grid unchanged",
			stop.GetFollowCallerFixes(), stop.GetProfile(), stop.GetSeedVersion(), beforeStop.GetSeedVersion(), stop.GetVersion(), beforeStop.GetVersion())
	}
	dev.send(callerFix(8, lat-0.005, lng, 20, base.Add(5*time.Minute)))
	if s := e.grid(op, id, 0).GetGrid(); s.GetSeedVersion() != stop.GetSeedVersion() || s.GetVersion() != stop.GetVersion() || s.GetProfile() != stop.GetProfile() {
		t.Errorf("a caller fix changed a plan that does not follow them: seed version %d, version %d, profile %q; want %d, %d, %q",
			s.GetSeedVersion(), s.GetVersion(), s.GetProfile(), stop.GetSeedVersion(), stop.GetVersion(), stop.GetProfile())
	}

	// An incident without a plan gets one from the caller's first
	// accurate fix.
	id2 := e.createIncident(op, "police-north").GetId()
	_, err := sc.GetSearchGrid(e.as(op), &sarv1.GetSearchGridRequest{IncidentId: id2})
	wantCode(t, "GetSearchGrid before a plan", err, codes.NotFound)
	link2 := must[*sarv1.CreateShareLinkResponse](t, "CreateShareLink")(e.auth.CreateShareLink(e.as(op), &sarv1.CreateShareLinkRequest{IncidentId: id2}))
	e.join(link2.GetToken(), id2, "caller2-phone")
	dev2 := e.openDevice(link2.GetToken(), id2, "caller2-phone")
	dev2.send(callerFix(1, lat, lng, 1500, time.Now().Add(-time.Minute))) // too coarse
	if _, err := sc.GetSearchGrid(e.as(op), &sarv1.GetSearchGridRequest{IncidentId: id2}); err == nil {
		t.Errorf("a 1.5 km caller fix made a plan")
	}
	dev2.send(callerFix(2, lat, lng, 50, time.Now().Add(-30*time.Second)))
	var p2 *sarv1.GetSearchGridResponse
	eventually(t, "a plan from the caller's fix", func() bool {
		r, err := sc.GetSearchGrid(e.as(op), &sarv1.GetSearchGridRequest{IncidentId: id2})
		p2 = r
		return err == nil
	})
	if s := p2.GetGrid(); s.GetProfile() != "fix" || !s.GetFollowCallerFixes() || s.GetOriginParticipantId() != link2.GetParticipant().GetId() ||
		s.GetOriginAccuracyM() != 50 || s.GetSweepWidthsM()["foot"] != 20 || s.GetProbabilityOfSuccess() != 0 ||
		s.GetFollowedFix().GetDecision() != sarv1.CallerFixDecision_CALLER_FIX_DECISION_FIRST_FIX {
		t.Errorf("plan from a caller's fix: %v; want profile fix, following, the caller's, ± 50 m, foot 20 m, POS 0, FIRST_FIX", s)
	}
	// The same fix made the same prior here, without any search, as the
	// first incident's collapse over a searched area; there the search
	// counts: weight = prior · e^(−coverage).
	pure := checkNormalised(t, "plan from a caller's fix", p2)
	if len(pure) != len(cells) {
		t.Errorf("the same fix made %d cells without a search, %d over a searched area", len(pure), len(cells))
	}
	for c, pc := range pure {
		if got, want := cells[c].GetWeight(), pc.GetWeight()*math.Exp(-cells[c].GetCoverage()); !relClose(got, want, 1e-9) {
			t.Errorf("cell %s: weight %v after a search made before the fix (coverage %v), want %v", c, got, cells[c].GetCoverage(), want)
		}
	}
}

// TestSearchTrailingCoverageEvent checks that coverage too small for the
// throttled event is still announced once tracks pause.
func TestSearchTrailingCoverageEvent(t *testing.T) {
	e := startEnv(t)
	e.createAgency("police-north", "north", sarv1.AgencyKind_AGENCY_KIND_POLICE_STATION)
	op, officer := e.operator("north"), e.rescuer("police-north", "")
	id := e.createIncident(op, "police-north").GetId()
	must[*sarv1.SetSearchPlanResponse](t, "SetSearchPlan")(e.search().SetSearchPlan(e.as(op), &sarv1.SetSearchPlanRequest{IncidentId: id}))
	w := e.watch(op, id)
	e.join(officer, id, "phone")
	d := e.openDevice(officer, id, "phone")
	start := time.Now().Add(-time.Hour)
	// Two quick batches: a throttled event of the first would carry the
	// first batch's figure; the trailing event carries the second's.
	d.send(line(1, 5, start)...)
	first := e.grid(op, id, 0).GetGrid()
	d.send(line(6, 5, start)...)
	g := e.grid(op, id, 0).GetGrid()
	pos := g.GetProbabilityOfSuccess()
	if pos <= first.GetProbabilityOfSuccess() || pos >= 0.01 {
		t.Fatalf("probability of success %v after one batch, %v after two; want growing and below 0.01", first.GetProbabilityOfSuccess(), pos)
	}
	var ev *sarv1.SearchGridChangedEvent
	within(t, 20*time.Second, "a trailing COVERAGE grid event", func() bool {
		evs := w.grid(sarv1.SearchGridChange_SEARCH_GRID_CHANGE_COVERAGE)
		if len(evs) == 0 {
			return false
		}
		ev = evs[len(evs)-1]
		return true
	})
	now := e.grid(op, id, 0).GetGrid()
	if math.Abs(ev.GetGrid().GetProbabilityOfSuccess()-now.GetProbabilityOfSuccess()) > 1e-9 || ev.GetGrid().GetVersion() != now.GetVersion() {
		t.Errorf("trailing event: POS %v at version %d; grid: POS %v at version %d", ev.GetGrid().GetProbabilityOfSuccess(),
			ev.GetGrid().GetVersion(), now.GetProbabilityOfSuccess(), now.GetVersion())
	}
	if now.GetVersion() != g.GetVersion() {
		t.Errorf("grid version moved from %d to %d with no new tracks", g.GetVersion(), now.GetVersion())
	}
	if ev.GetGrid().GetIncidentId() != id || ev.GetGrid().GetSeedVersion() != now.GetSeedVersion() || ev.GetGrid().GetProfile() != now.GetProfile() {
		t.Errorf("trailing event grid %v, want the incident's grid summary %v", ev.GetGrid(), now)
	}
	// Only one: nothing more is due after the trailing event.
	time.Sleep(6 * time.Second)
	if n := len(w.grid(sarv1.SearchGridChange_SEARCH_GRID_CHANGE_COVERAGE)); n != 1 {
		t.Errorf("%d COVERAGE events, want exactly the trailing one", n)
	}
}
