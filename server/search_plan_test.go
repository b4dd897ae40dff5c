package server_test

import (
	"maps"
	"testing"

	"google.golang.org/grpc/codes"

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
	if _, err := sc.SetSweepWidths(e.as(op), &sarv1.SetSweepWidthsRequest{IncidentId: id, SweepWidthsM: map[string]float64{"dog": 60}}); err != nil {
		wantCode(t, "SetSweepWidths without a plan", err, codes.FailedPrecondition)
	} else {
		t.Errorf("SetSweepWidths without a plan: no error, want FailedPrecondition")
	}
	p := &sarv1.LatLng{Lat: ippLat + 0.02, Lng: ippLng - 0.01}
	plan := must[*sarv1.SetSearchPlanResponse](t, "SetSearchPlan")(sc.SetSearchPlan(e.as(op), &sarv1.SetSearchPlanRequest{
		IncidentId: id, Point: p, Cut: 0.3, Subject: &sarv1.SubjectProfile{Category: sarv1.SubjectCategory_SUBJECT_CATEGORY_HUNTER}})).GetGrid()
	ruledOut := hexCell(t, p.GetLat(), p.GetLng())
	must[*sarv1.AdjustCellsResponse](t, "AdjustCells")(sc.AdjustCells(e.as(op), &sarv1.AdjustCellsRequest{
		IncidentId: id, ScaleCells: []string{ruledOut}, ScaleFactor: 0}))
	before := e.grid(op, id, 0)

	sw := must[*sarv1.SetSweepWidthsResponse](t, "SetSweepWidths")(sc.SetSweepWidths(e.as(op), &sarv1.SetSweepWidthsRequest{
		IncidentId: id, SweepWidthsM: map[string]float64{"dog": 60, "drone": 35}})).GetGrid()
	if want := map[string]float64{"foot": 20, "dog": 60, "drone": 35}; !maps.Equal(sw.GetSweepWidthsM(), want) {
		t.Errorf("sweep widths after a merge = %v, want %v", sw.GetSweepWidthsM(), want)
	}
	after := e.grid(op, id, 0)
	if after.GetGrid().GetVersion() != before.GetGrid().GetVersion() || after.GetGrid().GetSeedVersion() != plan.GetSeedVersion() {
		t.Errorf("SetSweepWidths moved the grid: version %d → %d, seed %d → %d", before.GetGrid().GetVersion(),
			after.GetGrid().GetVersion(), plan.GetSeedVersion(), after.GetGrid().GetSeedVersion())
	}
	cells := checkNormalised(t, "after SetSweepWidths", after)
	if c := cells[ruledOut]; c == nil || c.GetPoa() != 0 {
		t.Errorf("the ruled-out cell after SetSweepWidths = %v, want POA 0 kept", c)
	}
	if got := after.GetGrid().GetSweepWidthsM(); !maps.Equal(got, sw.GetSweepWidthsM()) {
		t.Errorf("GetSearchGrid sweep widths = %v, want %v", got, sw.GetSweepWidthsM())
	}
	sw = must[*sarv1.SetSweepWidthsResponse](t, "SetSweepWidths replace")(sc.SetSweepWidths(e.as(op), &sarv1.SetSweepWidthsRequest{
		IncidentId: id, SweepWidthsM: map[string]float64{"dog": 50}, Replace: true})).GetGrid()
	if want := map[string]float64{"foot": 20, "dog": 50}; !maps.Equal(sw.GetSweepWidthsM(), want) {
		t.Errorf("sweep widths after a replace = %v, want %v", sw.GetSweepWidthsM(), want)
	}

	for _, tc := range []struct {
		name   string
		widths map[string]float64
	}{{"empty", nil}, {"zero", map[string]float64{"dog": 0}}, {"bad type", map[string]float64{"Dog!": 30}}, {"too wide", map[string]float64{"dog": 20_000}}} {
		_, err := sc.SetSweepWidths(e.as(op), &sarv1.SetSweepWidthsRequest{IncidentId: id, SweepWidthsM: tc.widths})
		if st := wantCode(t, "SetSweepWidths "+tc.name, err, codes.InvalidArgument); st != nil && !containsAny(fieldViolations(st)[0], "sweep_widths_m") {
			t.Errorf("SetSweepWidths %s: violations %v, want sweep_widths_m", tc.name, fieldViolations(st))
		}
	}
	_, err := sc.SetSweepWidths(e.as(officer), &sarv1.SetSweepWidthsRequest{IncidentId: id, SweepWidthsM: map[string]float64{"dog": 60}})
	wantCode(t, "SetSweepWidths by a rescuer", err, codes.PermissionDenied)

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
