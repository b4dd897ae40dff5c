package server_test

import (
	"testing"

	"google.golang.org/grpc/codes"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
)

// TestSearchPlanLimits: a plan that would need an unbounded grid, or too
// many searcher types, is refused with field details instead of blocking
// Redis.
func TestSearchPlanLimits(t *testing.T) {
	e := startEnv(t)
	op := e.operator("north")
	inc := e.createIncident(op)
	search := sarv1.NewSearchServiceClient(e.conn)
	_, err := search.SetSearchPlan(e.as(op), &sarv1.SetSearchPlanRequest{IncidentId: inc.GetId(),
		Point: &sarv1.LatLng{Lat: 30.2458, Lng: 119.7156}, AccuracyM: 60_000})
	if st := wantCode(t, "SetSearchPlan 60 km fix", err, codes.InvalidArgument); len(fieldViolations(st)) == 0 {
		t.Errorf("SetSearchPlan 60 km fix: no field violation")
	}
	widths := map[string]float64{}
	for _, k := range []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q"} {
		widths[k] = 10
	}
	_, err = search.SetSearchPlan(e.as(op), &sarv1.SetSearchPlanRequest{IncidentId: inc.GetId(), SweepWidthsM: widths})
	wantCode(t, "SetSearchPlan with 17 searcher types", err, codes.InvalidArgument)
	if _, err := search.SetSearchPlan(e.as(op), &sarv1.SetSearchPlanRequest{IncidentId: inc.GetId()}); err != nil {
		t.Errorf("SetSearchPlan for a hiker = %v, want it within the limits", err)
	}
}
