package server_test

import (
	"maps"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
)

// TestSearchPlanKeepsWhatIsNotGiven checks that changing sweep widths
// leaves the grid (and an operator's adjustments) alone, and that
// re-seeding without a point or subject keeps the current plan's origin
// and profile rather than falling back to the incident's IPP.
func TestSearchPlanKeepsWhatIsNotGiven(t *testing.T) {
	e := startEnv(t)
	op, officer, inc := e.officerOnIncident()
	id, sc := inc.GetId(), e.search()
	if _, err := sc.UpdateSearchSettings(e.as(op), &sarv1.UpdateSearchSettingsRequest{IncidentId: id, SweepWidthsM: map[string]float64{"dog": 60}}); err != nil {
		wantCode(t, "UpdateSearchSettings without a plan", err, codes.FailedPrecondition)
	} else {
		t.Errorf("UpdateSearchSettings without a plan: no error, want FailedPrecondition")
	}
	p := &sarv1.LatLng{Lat: ippLat + 0.02, Lng: ippLng - 0.01}
	plan := must[*sarv1.SetSearchPlanResponse](t, "SetSearchPlan")(sc.SetSearchPlan(e.as(op), &sarv1.SetSearchPlanRequest{
		IncidentId: id, Point: p, Cut: 0.3, Subject: &sarv1.SubjectProfile{Category: sarv1.SubjectCategory_SUBJECT_CATEGORY_HUNTER}})).GetGrid()
	ruledOut := hexCell(t, p.GetLat(), p.GetLng())
	must[*sarv1.AdjustCellsResponse](t, "AdjustCells")(sc.AdjustCells(e.as(op), &sarv1.AdjustCellsRequest{
		IncidentId: id, ScaleCells: []string{ruledOut}, ScaleFactor: 0}))
	before := e.grid(op, id, 0)

	sw := must[*sarv1.UpdateSearchSettingsResponse](t, "UpdateSearchSettings")(sc.UpdateSearchSettings(e.as(op), &sarv1.UpdateSearchSettingsRequest{
		IncidentId: id, SweepWidthsM: map[string]float64{"dog": 60, "drone": 35}})).GetGrid()
	if want := map[string]float64{"foot": 20, "dog": 60, "drone": 35}; !maps.Equal(sw.GetSweepWidthsM(), want) {
		t.Errorf("sweep widths after a merge = %v, want %v", sw.GetSweepWidthsM(), want)
	}
	after := e.grid(op, id, 0)
	if after.GetGrid().GetVersion() != before.GetGrid().GetVersion() || after.GetGrid().GetSeedVersion() != plan.GetSeedVersion() {
		t.Errorf("UpdateSearchSettings moved the grid: version %d → %d, seed %d → %d", before.GetGrid().GetVersion(),
			after.GetGrid().GetVersion(), plan.GetSeedVersion(), after.GetGrid().GetSeedVersion())
	}
	cells := checkNormalised(t, "after UpdateSearchSettings", after)
	if c := cells[ruledOut]; c == nil || c.GetPoa() != 0 {
		t.Errorf("the ruled-out cell after UpdateSearchSettings = %v, want POA 0 kept", c)
	}
	if got := after.GetGrid().GetSweepWidthsM(); !maps.Equal(got, sw.GetSweepWidthsM()) {
		t.Errorf("GetSearchGrid sweep widths = %v, want %v", got, sw.GetSweepWidthsM())
	}
	sw = must[*sarv1.UpdateSearchSettingsResponse](t, "UpdateSearchSettings replace")(sc.UpdateSearchSettings(e.as(op), &sarv1.UpdateSearchSettingsRequest{
		IncidentId: id, SweepWidthsM: map[string]float64{"dog": 50}, Replace: true})).GetGrid()
	if want := map[string]float64{"foot": 20, "dog": 50}; !maps.Equal(sw.GetSweepWidthsM(), want) {
		t.Errorf("sweep widths after a replace = %v, want %v", sw.GetSweepWidthsM(), want)
	}

	for _, tc := range []struct {
		name   string
		widths map[string]float64
	}{{"empty", nil}, {"zero", map[string]float64{"dog": 0}}, {"bad type", map[string]float64{"Dog!": 30}}, {"too wide", map[string]float64{"dog": 20_000}}} {
		_, err := sc.UpdateSearchSettings(e.as(op), &sarv1.UpdateSearchSettingsRequest{IncidentId: id, SweepWidthsM: tc.widths})
		if st := wantCode(t, "UpdateSearchSettings "+tc.name, err, codes.InvalidArgument); st != nil && !containsAny(fieldViolations(st)[0], "sweep_widths_m") {
			t.Errorf("UpdateSearchSettings %s: violations %v, want sweep_widths_m", tc.name, fieldViolations(st))
		}
	}
	_, err := sc.UpdateSearchSettings(e.as(officer), &sarv1.UpdateSearchSettingsRequest{IncidentId: id, SweepWidthsM: map[string]float64{"dog": 60}})
	wantCode(t, "UpdateSearchSettings by a rescuer", err, codes.PermissionDenied)

	// Re-seeding with only a new cut keeps the point and the hunter profile.
	again := must[*sarv1.SetSearchPlanResponse](t, "SetSearchPlan again")(sc.SetSearchPlan(e.as(op), &sarv1.SetSearchPlanRequest{
		IncidentId: id, Cut: 0.2})).GetGrid()
	if again.GetOrigin().GetLat() != p.GetLat() || again.GetOrigin().GetLng() != p.GetLng() || again.GetProfile() != plan.GetProfile() ||
		again.GetSweepWidthsM()["dog"] != 50 {
		t.Errorf("re-seed without point or subject = origin %v, profile %q, widths %v; want %v, %q, dog 50",
			again.GetOrigin(), again.GetProfile(), again.GetSweepWidthsM(), p, plan.GetProfile())
	}
	if plan.GetProfile() == "hiker/temperate/mountainous" || again.GetCellCount() >= plan.GetCellCount() {
		t.Errorf("profiles %q then %q, cells %d then %d: want a hunter profile and fewer cells at cut 0.2",
			plan.GetProfile(), again.GetProfile(), plan.GetCellCount(), again.GetCellCount())
	}
	// A point given again, with accuracy, seeds a fix disk there.
	fix := must[*sarv1.SetSearchPlanResponse](t, "SetSearchPlan fix")(sc.SetSearchPlan(e.as(op), &sarv1.SetSearchPlanRequest{
		IncidentId: id, Point: &sarv1.LatLng{Lat: ippLat, Lng: ippLng}, AccuracyM: 100})).GetGrid()
	if fix.GetProfile() != "fix" || fix.GetOriginAccuracyM() != 100 {
		t.Errorf("seed from a point with accuracy = profile %q, accuracy %v; want fix, 100", fix.GetProfile(), fix.GetOriginAccuracyM())
	}
	// Then a subject without a point: the lost-person rings around that point.
	rings := must[*sarv1.SetSearchPlanResponse](t, "SetSearchPlan subject")(sc.SetSearchPlan(e.as(op), &sarv1.SetSearchPlanRequest{
		IncidentId: id, Cut: 0.2, Subject: &sarv1.SubjectProfile{Category: sarv1.SubjectCategory_SUBJECT_CATEGORY_HIKER}})).GetGrid()
	if rings.GetProfile() != "hiker/temperate/mountainous" || rings.GetOriginAccuracyM() != 0 || rings.GetOrigin().GetLat() != ippLat {
		t.Errorf("seed with a subject only = profile %q, accuracy %v, origin %v; want hiker rings around the fix point",
			rings.GetProfile(), rings.GetOriginAccuracyM(), rings.GetOrigin())
	}
}

// fastLine is n fixes due north from the IPP at speed m/s, one every 5 s.
func fastLine(first uint64, n int, speed float64, start time.Time) []*sarv1.LocationFix {
	out := make([]*sarv1.LocationFix, n)
	for i := range n {
		k := float64(int(first) - 1 + i)
		out[i] = &sarv1.LocationFix{Sequence: first + uint64(i), Lat: ippLat + k*5*speed/111_195.0, Lng: ippLng,
			HorizontalAccuracyM: 5, Time: timestamppb.New(start.Add(time.Duration(k) * 5 * time.Second)), Source: sarv1.FixSource_FIX_SOURCE_GNSS}
	}
	return out
}

func totalCoverage(g *sarv1.GetSearchGridResponse) float64 {
	sum := 0.0
	for _, c := range g.GetCells() {
		sum += c.GetCoverage() * c.GetAreaM2()
	}
	return sum
}

// TestSearchSettingsAndAssignmentRules checks what the review of the
// search plan asked for: fast searcher types get coverage with their own
// speed, assignments are not moved silently nor made on stale or unknown
// ids and teams, a rescuer's export does not choose the segment size, and
// a confirming caller fix does not wipe an operator's adjustment.
func TestSearchSettingsAndAssignmentRules(t *testing.T) {
	e := startEnv(t)
	op, officer, inc := e.officerOnIncident()
	id, sc := inc.GetId(), e.search()
	must[*sarv1.SetSearchPlanResponse](t, "SetSearchPlan")(sc.SetSearchPlan(e.as(op), &sarv1.SetSearchPlanRequest{IncidentId: id, Cut: 0.3}))
	w := e.watch(op, id)

	// A drone at 10 m/s: nothing counts with the foot filter (3 m/s)…
	drone := e.rescuer("police-north", "")
	must[*sarv1.JoinIncidentResponse](t, "JoinIncident drone")(e.inc.JoinIncident(e.as(drone), &sarv1.JoinIncidentRequest{
		IncidentId: id, DeviceId: "drone-1", SearcherType: "drone"}))
	start := time.Now().Add(-20 * time.Minute)
	d := e.openDevice(drone, id, "drone-1")
	d.send(fastLine(1, 12, 10, start)...)
	if got := totalCoverage(e.grid(op, id, 0)); got != 0 {
		t.Errorf("a drone at 10 m/s with the foot filter swept %v m², want 0 (its fixes are outliers at 3 m/s)", got)
	}
	// …and with the plan's 20 m/s for drones, its track counts.
	must[*sarv1.UpdateSearchSettingsResponse](t, "UpdateSearchSettings")(sc.UpdateSearchSettings(e.as(op), &sarv1.UpdateSearchSettingsRequest{
		IncidentId: id, SweepWidthsM: map[string]float64{"drone": 40}, MaxSpeedsMS: map[string]float64{"drone": 20}}))
	d.send(fastLine(13, 12, 10, start)...)
	d.close()
	if got := totalCoverage(e.grid(op, id, 0)); got < 40*5*10*10 {
		t.Errorf("a drone at 10 m/s with a 20 m/s filter swept %v m², want at least 40 m × 500 m", got)
	}
	_, err := sc.UpdateSearchSettings(e.as(op), &sarv1.UpdateSearchSettingsRequest{IncidentId: id, MaxSpeedsMS: map[string]float64{"drone": 1000}})
	wantField(t, "UpdateSearchSettings speed 1000 m/s", err, "max_speeds_m_s")
	_, err = sc.UpdateSearchSettings(e.as(op), &sarv1.UpdateSearchSettingsRequest{IncidentId: id})
	wantCode(t, "UpdateSearchSettings with nothing to change", err, codes.InvalidArgument)

	// Assignments.
	segs := e.segments(op, &sarv1.ListSegmentsRequest{IncidentId: id})
	if len(segs.GetSegments()) < 2 {
		t.Fatalf("%d segments, want several", len(segs.GetSegments()))
	}
	first := segs.GetSegments()[0].GetId()
	police := &sarv1.TeamRef{AgencyId: "police-north"}
	must[*sarv1.AssignSegmentResponse](t, "AssignSegment")(sc.AssignSegment(e.as(op), &sarv1.AssignSegmentRequest{IncidentId: id, SegmentId: first, Team: police}))
	e.createAgency("fire-north", "north", sarv1.AgencyKind_AGENCY_KIND_FIRE_BRIGADE)
	must[*sarv1.CreateTeamResponse](t, "CreateTeam")(e.agency.CreateTeam(e.as(e.admin), &sarv1.CreateTeamRequest{
		Team: &sarv1.Team{AgencyId: "fire-north", Id: "engine-1", Name: "Engine 1"}}))
	must[*sarv1.AssignAgenciesResponse](t, "AssignAgencies")(e.inc.AssignAgencies(e.as(op), &sarv1.AssignAgenciesRequest{
		IncidentId: id, AgencyIds: []string{"police-north", "fire-north"}}))
	fire := &sarv1.TeamRef{AgencyId: "fire-north", TeamId: "engine-1"}
	_, err = sc.AssignSegment(e.as(op), &sarv1.AssignSegmentRequest{IncidentId: id, SegmentId: first, Team: fire})
	wantCode(t, "AssignSegment of a segment another team holds", err, codes.FailedPrecondition)
	moved := must[*sarv1.AssignSegmentResponse](t, "AssignSegment reassign")(sc.AssignSegment(e.as(op), &sarv1.AssignSegmentRequest{
		IncidentId: id, SegmentId: first, Team: fire, Reassign: true}))
	if !sameTeam(moved.GetSegment().GetAssignedTeam(), fire) {
		t.Errorf("reassigned segment's team = %v, want %v", moved.GetSegment().GetAssignedTeam(), fire)
	}
	_, err = sc.AssignSegment(e.as(op), &sarv1.AssignSegmentRequest{IncidentId: id, SegmentId: segs.GetSegments()[1].GetId(),
		Team: &sarv1.TeamRef{AgencyId: "fire-north", TeamId: "engnie-1"}})
	wantField(t, "AssignSegment to a team that does not exist", err, "team.team_id")
	stale := segs.GetSegments()[1].GetId()
	must[*sarv1.SetSearchPlanResponse](t, "SetSearchPlan elsewhere")(sc.SetSearchPlan(e.as(op), &sarv1.SetSearchPlanRequest{
		IncidentId: id, Cut: 0.3, Point: &sarv1.LatLng{Lat: ippLat + 0.2, Lng: ippLng}}))
	_, err = sc.AssignSegment(e.as(op), &sarv1.AssignSegmentRequest{IncidentId: id, SegmentId: stale, Team: police})
	wantCode(t, "AssignSegment of a segment of the grid before the re-seed", err, codes.NotFound)
	// The refused assignment wrote nothing; the next read cuts the new grid.
	e.segments(op, &sarv1.ListSegmentsRequest{IncidentId: id})
	within(t, 10*time.Second, "a SEGMENTS event warning of the assigned segment left outside the grid", func() bool {
		for _, ev := range w.grid(sarv1.SearchGridChange_SEARCH_GRID_CHANGE_SEGMENTS) {
			if strings.Contains(ev.GetDescription(), "1 assigned segments lie outside the current grid") {
				return true
			}
		}
		return false
	})

	// A rescuer's export with a segment size uses the incident's.
	_, err = sc.ExportSearchGrid(e.as(officer), &sarv1.ExportSearchGridRequest{IncidentId: id, Format: sarv1.ExportFormat_EXPORT_FORMAT_GEOJSON,
		SegmentAreaM2: 10_000})
	if err != nil {
		t.Fatalf("ExportSearchGrid by a rescuer: %v", err)
	}
	if after := e.segments(op, &sarv1.ListSegmentsRequest{IncidentId: id}); after.GetTargetAreaM2() != segs.GetTargetAreaM2() {
		t.Errorf("after a rescuer's export with 1 ha segments the target area is %v, want %v", after.GetTargetAreaM2(), segs.GetTargetAreaM2())
	}

	// A caller's fix collapses the grid; an operator then rules a cell
	// out. A fix that only confirms the position later keeps the grid
	// (and the adjustment); one that moved re-seeds.
	link := must[*sarv1.CreateShareLinkResponse](t, "CreateShareLink")(e.auth.CreateShareLink(e.as(op), &sarv1.CreateShareLinkRequest{IncidentId: id}))
	e.join(link.GetToken(), id, "caller-phone")
	caller := e.openDevice(link.GetToken(), id, "caller-phone")
	base := time.Now().Add(-10 * time.Minute)
	cell, lat, lng := cellCentre(t, ippLat, ippLng)
	caller.send(callerFix(1, lat, lng, 100, base))
	collapsed := e.grid(op, id, 0)
	if collapsed.GetGrid().GetProfile() != "fix" || collapsed.GetGrid().GetAdjusted() {
		t.Fatalf("after the caller's fix: profile %q, adjusted %v; want fix, false", collapsed.GetGrid().GetProfile(), collapsed.GetGrid().GetAdjusted())
	}
	adj := must[*sarv1.AdjustCellsResponse](t, "AdjustCells")(sc.AdjustCells(e.as(op), &sarv1.AdjustCellsRequest{
		IncidentId: id, ScaleCells: []string{cell}, ScaleFactor: 0})).GetGrid()
	if !adj.GetAdjusted() {
		t.Errorf("after AdjustCells: adjusted = false")
	}
	caller.send(callerFix(2, lat, lng, 100, base.Add(3*time.Minute)))
	if g := e.grid(op, id, 0).GetGrid(); g.GetSeedVersion() != adj.GetSeedVersion() || !g.GetAdjusted() {
		t.Errorf("a confirming caller fix after an adjustment re-seeded the grid (seed %d, was %d; adjusted %v)", g.GetSeedVersion(),
			adj.GetSeedVersion(), g.GetAdjusted())
	}
	caller.send(callerFix(3, lat+500/111_195.0, lng, 100, base.Add(4*time.Minute)))
	if g := e.grid(op, id, 0).GetGrid(); g.GetSeedVersion() == adj.GetSeedVersion() || g.GetAdjusted() {
		t.Errorf("a caller fix 500 m away did not re-seed (seed %d, adjusted %v)", g.GetSeedVersion(), g.GetAdjusted())
	}
	caller.close()
}
