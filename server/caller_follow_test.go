package server_test

import (
	"math"
	"testing"
	"time"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
)

// sweep is a rescuer's walk from 300 m south to 300 m north of lat, lng,
// a fix every 20 m and 10 s from start, sequences from first.
func sweep(first uint64, lat, lng float64, start time.Time) []*sarv1.LocationFix {
	out := make([]*sarv1.LocationFix, 31)
	for i := range out {
		out[i] = callerFix(first+uint64(i), lat+float64(i*20-300)/111_195.0, lng, 5, start.Add(time.Duration(i)*10*time.Second))
	}
	return out
}

// TestCallerFixRules runs the caller-collapse rules through the real
// server and Redis: a fix at the same spot 25 minutes later (the share
// page left open) changes nothing, neither the grid's version nor its
// coverage; a fix that moved collapses the grid and keeps the coverage of
// the cells that stay in the area; an operator's plan made after the
// followed fix stands against a confirming fix (even a sharper one) and
// yields to one that moved. The console sees which rule applied.
func TestCallerFixRules(t *testing.T) {
	e := startEnv(t)
	op, officer, inc := e.officerOnIncident()
	id, sc := inc.GetId(), e.search()
	must[*sarv1.SetSearchPlanResponse](t, "SetSearchPlan")(sc.SetSearchPlan(e.as(op), &sarv1.SetSearchPlanRequest{IncidentId: id}))
	w := e.watch(op, id)
	link := must[*sarv1.CreateShareLinkResponse](t, "CreateShareLink")(e.auth.CreateShareLink(e.as(op), &sarv1.CreateShareLinkRequest{IncidentId: id}))
	e.join(link.GetToken(), id, "caller-phone")
	caller := e.openDevice(link.GetToken(), id, "caller-phone")
	rescuer := e.openDevice(officer, id, "phone")
	callerSeq := uint64(0)
	send := func(lat, lng, acc float64, at time.Time) {
		t.Helper()
		callerSeq++
		if ack := caller.send(callerFix(callerSeq, lat, lng, acc, at)); len(ack.GetStored()) != 1 {
			t.Fatalf("caller fix %d not stored: %v", callerSeq, ack)
		}
	}
	const (
		acc   = 150.0 // a disk of a dozen resolution-9 cells
		north = 1 / 111_195.0
	)
	_, lat, lng := cellCentre(t, ippLat+2000*north, ippLng)
	base := time.Now().Add(-2 * time.Hour)

	// The first fix supersedes the plan from the IPP.
	send(lat, lng, acc, base)
	g1 := e.grid(op, id, 0)
	if sm := g1.GetGrid(); sm.GetProfile() != "fix" || sm.GetFollowedFix().GetDecision() != sarv1.CallerFixDecision_CALLER_FIX_DECISION_PLAN_SUPERSEDED {
		t.Fatalf("after the first fix: profile %q, rule %v; want fix, PLAN_SUPERSEDED", sm.GetProfile(), sm.GetFollowedFix().GetDecision())
	}
	// A team sweeps the disk while the phone says the caller is there.
	rescuer.send(sweep(1, lat, lng, base.Add(time.Minute))...)
	searched := e.grid(op, id, 0)
	cov := coverageOf(searched)
	if len(cov) < 2 {
		t.Fatalf("the sweep covered %d cells of the disk, want several", len(cov))
	}

	// 25 minutes later, the same spot; then every 3 s as the page does.
	for i := range 4 {
		send(lat+float64(i)*5*north, lng, acc, base.Add(25*time.Minute+time.Duration(i)*3*time.Second))
	}
	after := e.grid(op, id, 0)
	if a, b := after.GetGrid(), searched.GetGrid(); a.GetVersion() != b.GetVersion() || a.GetSeedVersion() != b.GetSeedVersion() ||
		!a.GetOriginTime().AsTime().Equal(base) {
		t.Errorf("same-spot fixes 25 min later: version %d, seed version %d, origin time %v; want %d, %d, %v (unchanged)",
			a.GetVersion(), a.GetSeedVersion(), a.GetOriginTime().AsTime(), b.GetVersion(), b.GetSeedVersion(), base)
	}
	for c, v := range cov {
		if got := coverageOf(after)[c]; got != v {
			t.Errorf("cell %s after same-spot fixes: coverage %v, want %v (kept)", c, got, v)
		}
	}
	if d := after.GetGrid().GetLastCallerFix().GetDecision(); d != sarv1.CallerFixDecision_CALLER_FIX_DECISION_CONFIRMS {
		t.Errorf("last caller fix decision = %v, want CONFIRMS", d)
	}

	// 35 minutes after the first, 200 m north: moved beyond both
	// accuracies. The new disk overlaps the old; its cells keep the sweep.
	lat2 := lat + 200*north
	send(lat2, lng, acc, base.Add(35*time.Minute))
	moved := e.grid(op, id, 0)
	sm := moved.GetGrid()
	if sm.GetSeedVersion() <= searched.GetGrid().GetSeedVersion() || sm.GetOrigin().GetLat() != lat2 ||
		sm.GetFollowedFix().GetDecision() != sarv1.CallerFixDecision_CALLER_FIX_DECISION_MOVED {
		t.Fatalf("a fix 200 m away: seed version %d (was %d), origin %v, rule %v; want a collapse to it, MOVED", sm.GetSeedVersion(),
			searched.GetGrid().GetSeedVersion(), sm.GetOrigin(), sm.GetFollowedFix().GetDecision())
	}
	kept := 0
	for _, c := range checkNormalised(t, "after the move", moved) {
		if v, ok := cov[c.GetCell()]; ok {
			kept++
			if c.GetCoverage() != v || !relClose(c.GetPod(), 1-math.Exp(-v), 1e-12) {
				t.Errorf("cell %s after the move: coverage %v, POD %v; want the sweep's %v kept", c.GetCell(), c.GetCoverage(), c.GetPod(), v)
			}
		}
	}
	if kept == 0 {
		t.Fatalf("no cell of the sweep stayed in the moved disk; the test needs an overlap")
	}
	if sm.GetProbabilityOfSuccess() <= 0 {
		t.Errorf("after the move the probability of success is %v; want the sweep counted", sm.GetProbabilityOfSuccess())
	}
	eventually(t, "a CALLER_FIX event saying MOVED", func() bool {
		for _, ev := range w.grid(sarv1.SearchGridChange_SEARCH_GRID_CHANGE_CALLER_FIX) {
			if ev.GetGrid().GetSeedVersion() == sm.GetSeedVersion() {
				return ev.GetGrid().GetFollowedFix().GetDecision() == sarv1.CallerFixDecision_CALLER_FIX_DECISION_MOVED
			}
		}
		return false
	})

	// An operator re-seeds from the IPP after that fix: the plan knows
	// when it was made and which fix it followed.
	plan := must[*sarv1.SetSearchPlanResponse](t, "SetSearchPlan after the fix")(sc.SetSearchPlan(e.as(op), &sarv1.SetSearchPlanRequest{
		IncidentId: id, Point: &sarv1.LatLng{Lat: ippLat, Lng: ippLng}, Subject: inc.GetSubject()})).GetGrid()
	if plan.GetPlanTime() == nil || plan.GetFollowedFix().GetPosition().GetLat() != lat2 || plan.GetOriginParticipantId() != "" {
		t.Fatalf("operator's plan: plan time %v, followed fix %v; want set, the fix 200 m north", plan.GetPlanTime(), plan.GetFollowedFix())
	}
	// A sharper fix that confirms the position: the plan stands.
	send(lat2+30*north, lng, 40, base.Add(45*time.Minute))
	if g := e.grid(op, id, 0).GetGrid(); g.GetSeedVersion() != plan.GetSeedVersion() || g.GetProfile() != plan.GetProfile() ||
		g.GetLastCallerFix().GetDecision() != sarv1.CallerFixDecision_CALLER_FIX_DECISION_OPERATOR_PLAN_STANDS {
		t.Errorf("a confirming fix after the operator's plan: seed version %d (was %d), profile %q, decision %v; want the plan, OPERATOR_PLAN_STANDS",
			g.GetSeedVersion(), plan.GetSeedVersion(), g.GetProfile(), g.GetLastCallerFix().GetDecision())
	}
	// A fix 500 m further north: the caller moved, the plan yields.
	send(lat2+500*north, lng, 40, base.Add(50*time.Minute))
	g := e.grid(op, id, 0).GetGrid()
	if g.GetSeedVersion() <= plan.GetSeedVersion() || g.GetProfile() != "fix" || g.GetPlanTime() != nil ||
		g.GetFollowedFix().GetDecision() != sarv1.CallerFixDecision_CALLER_FIX_DECISION_OPERATOR_PLAN_SUPERSEDED {
		t.Errorf("a fix 500 m away after the operator's plan: seed version %d (was %d), profile %q, plan time %v, rule %v; want a collapse, OPERATOR_PLAN_SUPERSEDED",
			g.GetSeedVersion(), plan.GetSeedVersion(), g.GetProfile(), g.GetPlanTime(), g.GetFollowedFix().GetDecision())
	}
}
