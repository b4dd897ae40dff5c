package server_test

import (
	"encoding/json"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/uber/h3-go/v4"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/geo"
)

const ippLat, ippLng = 30.2458, 119.7156 // createIncident's IPP

func (e *env) search() sarv1.SearchServiceClient { return sarv1.NewSearchServiceClient(e.conn) }

func (e *env) grid(token, incident string, since int64) *sarv1.GetSearchGridResponse {
	e.t.Helper()
	return must[*sarv1.GetSearchGridResponse](e.t, "GetSearchGrid")(e.search().GetSearchGrid(e.as(token),
		&sarv1.GetSearchGridRequest{IncidentId: incident, SinceVersion: since}))
}

// checkNormalised fails unless Σ POA + rest of world = 1.
func checkNormalised(t *testing.T, what string, g *sarv1.GetSearchGridResponse) map[string]*sarv1.SearchCell {
	t.Helper()
	if !g.GetFull() {
		t.Fatalf("%s: full = false, want a whole grid", what)
	}
	sum := g.GetGrid().GetRestOfWorld()
	cells := make(map[string]*sarv1.SearchCell, len(g.GetCells()))
	for _, c := range g.GetCells() {
		sum += c.GetPoa()
		cells[c.GetCell()] = c
	}
	if math.Abs(sum-1) > 1e-9 {
		t.Errorf("%s: Σ POA + rest of world = %.15f, want 1", what, sum)
	}
	if int(g.GetGrid().GetCellCount()) != len(cells) {
		t.Errorf("%s: cell_count = %d, want %d", what, g.GetGrid().GetCellCount(), len(cells))
	}
	return cells
}

// line makes n fixes from sequence first walking due north from the IPP,
// 20 m apart and 10 s apart: fix k (from 1) is (k−1)·20 m north of the IPP
// at start + (k−1)·10 s.
func line(first uint64, n int, start time.Time) []*sarv1.LocationFix {
	const mPerDegLat = 111_195.0
	out := make([]*sarv1.LocationFix, n)
	for i := range n {
		k := float64(int(first) - 1 + i)
		out[i] = &sarv1.LocationFix{Sequence: first + uint64(i), Lat: ippLat + k*20/mPerDegLat, Lng: ippLng,
			HorizontalAccuracyM: 5, Time: timestamppb.New(start.Add(time.Duration(k) * 10 * time.Second)),
			Source: sarv1.FixSource_FIX_SOURCE_GNSS}
	}
	return out
}

func hexCell(t *testing.T, lat, lng float64) string {
	t.Helper()
	c, err := geo.CellAt(lat, lng, 9)
	if err != nil {
		t.Fatal(err)
	}
	return strconv.FormatUint(c, 16)
}

func TestSearchGridLifecycle(t *testing.T) {
	e := startEnv(t)
	e.createAgency("police-north", "north", sarv1.AgencyKind_AGENCY_KIND_POLICE_STATION)
	e.createAgency("police-south", "south", sarv1.AgencyKind_AGENCY_KIND_POLICE_STATION)
	opNorth, opSouth := e.operator("north"), e.operator("south")
	officer, southOfficer := e.rescuer("police-north", ""), e.rescuer("police-south", "")
	inc := e.createIncident(opNorth, "police-north")
	id := inc.GetId()
	caller := must[*sarv1.CreateShareLinkResponse](t, "CreateShareLink")(e.auth.CreateShareLink(e.as(opNorth),
		&sarv1.CreateShareLinkRequest{IncidentId: id})).GetToken()
	rec := e.recordNATS()
	sc := e.search()

	// Before a plan there is no grid.
	_, err := sc.GetSearchGrid(e.as(opNorth), &sarv1.GetSearchGridRequest{IncidentId: id})
	wantCode(t, "GetSearchGrid before a plan", err, codes.NotFound)

	// Seed from the incident's IPP and hiker profile. The sweep width is
	// set wide so that a short walk moves the probability of success by
	// more than the event threshold.
	plan := must[*sarv1.SetSearchPlanResponse](t, "SetSearchPlan")(sc.SetSearchPlan(e.as(opNorth), &sarv1.SetSearchPlanRequest{
		IncidentId: id, SweepWidthsM: map[string]float64{"foot": 200}})).GetGrid()
	if plan.GetProfile() != "hiker/temperate/mountainous" || plan.GetProfileFallback() {
		t.Errorf("profile = %q (fallback %v), want hiker/temperate/mountainous", plan.GetProfile(), plan.GetProfileFallback())
	}
	if plan.GetVersion() != 1 || plan.GetSeedVersion() != 1 || plan.GetCellCount() < 10_000 {
		t.Errorf("plan = version %d, seed_version %d, %d cells; want 1, 1, > 10,000", plan.GetVersion(), plan.GetSeedVersion(), plan.GetCellCount())
	}
	if math.Abs(plan.GetRestOfWorld()-0.05) > 1e-9 || plan.GetProbabilityOfSuccess() != 0 || plan.GetSweepWidthsM()["foot"] != 200 {
		t.Errorf("plan rest of world %v, POS %v, sweep widths %v; want 0.05, 0, foot 200", plan.GetRestOfWorld(),
			plan.GetProbabilityOfSuccess(), plan.GetSweepWidthsM())
	}
	seeded := e.grid(officer, id, 0)
	seedCells := checkNormalised(t, "seeded", seeded)
	// The ISRID rings (hiker, temperate, mountainous): share of POA in cells
	// whose centre lies within each distance, ±1.5 percentage points.
	rings := []struct{ km, share float64 }{{1.1, 0.25}, {3.1, 0.50}, {5.8, 0.75}, {18.3, 0.95}}
	inside := make([]float64, len(rings))
	for _, c := range seeded.GetCells() {
		id, _ := strconv.ParseUint(c.GetCell(), 16, 64)
		ll, err := h3.Cell(id).LatLng()
		if err != nil {
			t.Fatal(err)
		}
		d := geo.DistanceM(ippLat, ippLng, ll.Lat, ll.Lng) / 1000
		for i, r := range rings {
			if d <= r.km {
				inside[i] += c.GetPoa()
			}
		}
		if c.GetCoverage() != 0 || c.GetPod() != 0 || c.GetAreaM2() < 60_000 || c.GetAreaM2() > 150_000 {
			t.Fatalf("seeded cell %+v: want no coverage and a res-9 area", c)
		}
	}
	for i, r := range rings {
		if math.Abs(inside[i]-r.share) > 0.015 {
			t.Errorf("POA within %.1f km = %.4f, want %.2f ± 0.015", r.km, inside[i], r.share)
		}
	}
	seedEvents := func(change sarv1.SearchGridChange) func() bool {
		return func() bool {
			return rec.count(func(ev *sarv1.Event) bool {
				g := ev.GetSearchGridChanged()
				return g != nil && g.GetChange() == change && ev.GetIncidentId() == id
			}) > 0
		}
	}
	eventually(t, "a SEEDED grid event", seedEvents(sarv1.SearchGridChange_SEARCH_GRID_CHANGE_SEEDED))
	rec.mu.Lock()
	for i, ev := range rec.events {
		if ev.GetSearchGridChanged() != nil && rec.subj[i] != "sar.v1.inc."+id+".evt.grid" {
			t.Errorf("grid event on subject %q, want sar.v1.inc.%s.evt.grid", rec.subj[i], id)
		}
	}
	rec.mu.Unlock()

	// A rescuer walks 1.2 km due north in six batches of ten fixes.
	e.join(officer, id, "officer-phone")
	d := e.openDevice(officer, id, "officer-phone")
	start := time.Now().Add(-time.Hour)
	const batches, per = 6, 10
	for b := range batches {
		fixes := line(uint64(b*per+1), per, start)
		if ack := d.send(fixes...); ack.GetAckedThrough() != uint64((b+1)*per) {
			t.Fatalf("batch %d: acked_through = %d, want %d", b, ack.GetAckedThrough(), (b+1)*per)
		}
	}
	walked := e.grid(officer, id, 0)
	cells := checkNormalised(t, "after the walk", walked)
	if walked.GetGrid().GetVersion() <= 1 {
		t.Errorf("version after the walk = %d, want > 1", walked.GetGrid().GetVersion())
	}
	var swept float64
	covered := 0
	for _, c := range walked.GetCells() {
		before := seedCells[c.GetCell()]
		if c.GetCoverage() > 0 {
			covered++
			swept += c.GetCoverage() * c.GetAreaM2() / 200
			if c.GetPoa() >= before.GetPoa() {
				t.Errorf("covered cell %s: POA %v, was %v; want lower", c.GetCell(), c.GetPoa(), before.GetPoa())
			}
			if want := 1 - math.Exp(-c.GetCoverage()); math.Abs(c.GetPod()-want) > 1e-12 {
				t.Errorf("cell %s: POD %v, want 1 − e^(−%v) = %v", c.GetCell(), c.GetPod(), c.GetCoverage(), want)
			}
		} else if c.GetPoa() <= before.GetPoa() {
			t.Errorf("uncovered cell %s: POA %v, was %v; want higher", c.GetCell(), c.GetPoa(), before.GetPoa())
			break
		}
	}
	// The crossed cells: every fix's cell but the last (the last move is
	// not yet confirmed by a following fix).
	for i, f := range line(1, batches*per-1, start) {
		if c := cells[hexCell(t, f.GetLat(), f.GetLng())]; c.GetCoverage() <= 0 {
			t.Errorf("fix %d's cell %s has no coverage", i+1, c.GetCell())
		}
	}
	// Fix 1 is the first anchor; the moves to fixes 2…59 were confirmed by
	// the fix after each (the move to fix 60 waits for fix 61): 58 × 20 m.
	if covered < 4 || math.Abs(swept-58*20) > 5 {
		t.Errorf("walk credited %.1f m over %d cells, want 1160 ± 5 m over at least 4", swept, covered)
	}
	pos := walked.GetGrid().GetProbabilityOfSuccess()
	if pos <= 0.01 || pos >= 0.5 {
		t.Errorf("probability of success = %v, want between 0.01 and 0.5", pos)
	}
	// POS = Σ POA_before·POD for one search from the seeded grid.
	var want float64
	for _, c := range walked.GetCells() {
		want += seedCells[c.GetCell()].GetPoa() * c.GetPod()
	}
	if math.Abs(pos-want) > 1e-9 {
		t.Errorf("probability of success = %v, want Σ POA·POD = %v", pos, want)
	}
	eventually(t, "a COVERAGE grid event", seedEvents(sarv1.SearchGridChange_SEARCH_GRID_CHANGE_COVERAGE))

	// Only the cells changed since a version.
	v := walked.GetGrid().GetVersion()
	if got := e.grid(officer, id, v); got.GetFull() || len(got.GetCells()) != 0 || got.GetGrid().GetVersion() != v {
		t.Errorf("since %d with no change: full %v, %d cells, version %d; want none at %d", v, got.GetFull(), len(got.GetCells()), got.GetGrid().GetVersion(), v)
	}
	d.send(line(uint64(batches*per+1), per, start)...)
	// The batch's work is done (send settles), so the total has followed
	// the cells (store.AddCoverage ends the queue entry in its last step):
	// the changed cells read alone carry the POA of a whole read.
	inc2 := e.grid(officer, id, v)
	afterResp := e.grid(officer, id, 0)
	after := checkNormalised(t, "after one more batch", afterResp)
	for _, c := range inc2.GetCells() {
		full := after[c.GetCell()]
		if c.GetVersion() <= v || c.GetCoverage() <= cells[c.GetCell()].GetCoverage() || math.Abs(c.GetPoa()-full.GetPoa()) > 1e-12 {
			t.Errorf("changed cell %+v; want version > %d, more coverage than %v, POA %v", c, v, cells[c.GetCell()].GetCoverage(), full.GetPoa())
		}
	}
	if inc2.GetFull() || len(inc2.GetCells()) == 0 || len(inc2.GetCells()) > 4 {
		t.Errorf("since %d: full %v, %d cells; want 1-4 changed cells", v, inc2.GetFull(), len(inc2.GetCells()))
	}

	// An operator scales the IPP's cell to 0, then sets another to 0.2.
	ippCell := hexCell(t, ippLat, ippLng)
	must[*sarv1.AdjustCellsResponse](t, "AdjustCells scale")(sc.AdjustCells(e.as(opNorth), &sarv1.AdjustCellsRequest{
		IncidentId: id, ScaleCells: []string{ippCell}, ScaleFactor: 0}))
	g := checkNormalised(t, "after scaling", e.grid(opNorth, id, 0))
	if g[ippCell].GetPoa() != 0 || g[ippCell].GetCoverage() != after[ippCell].GetCoverage() {
		t.Errorf("scaled cell: POA %v, coverage %v; want 0 and the coverage kept", g[ippCell].GetPoa(), g[ippCell].GetCoverage())
	}
	farCell := hexCell(t, ippLat-0.02, ippLng+0.02)
	adj := must[*sarv1.AdjustCellsResponse](t, "AdjustCells set")(sc.AdjustCells(e.as(opNorth), &sarv1.AdjustCellsRequest{
		IncidentId: id, Set: []*sarv1.CellProbability{{Cell: farCell, Poa: 0.2}}})).GetGrid()
	g = checkNormalised(t, "after setting", e.grid(opNorth, id, 0))
	if math.Abs(g[farCell].GetPoa()-0.2) > 1e-12 {
		t.Errorf("set cell POA = %v, want 0.2", g[farCell].GetPoa())
	}
	// An adjustment is not a search: the probability of success stays.
	if p0, p1 := afterResp.GetGrid().GetProbabilityOfSuccess(), adj.GetProbabilityOfSuccess(); math.Abs(p0-p1) > 1e-9 || p0 <= 0 {
		t.Errorf("probability of success %v before the adjustments, %v after; want equal and above 0", p0, p1)
	}
	eventually(t, "an ADJUSTED grid event", seedEvents(sarv1.SearchGridChange_SEARCH_GRID_CHANGE_ADJUSTED))

	// Coverage after an adjustment still updates by Bayes from the adjusted
	// grid: the set cell is untouched, so its POA only rises.
	d.send(line(uint64(batches*per+per+1), per, start)...)
	g2 := checkNormalised(t, "after walking on", e.grid(opNorth, id, 0))
	if g2[farCell].GetPoa() <= 0.2 {
		t.Errorf("set cell after more search elsewhere: POA %v, want above 0.2", g2[farCell].GetPoa())
	}

	// A clue 2 km east draws probability towards itself.
	clueLat, clueLng := ippLat, ippLng+0.0207
	clueCell := hexCell(t, clueLat, clueLng)
	must[*sarv1.RecordClueResponse](t, "RecordClue")(sc.RecordClue(e.as(opNorth), &sarv1.RecordClueRequest{
		IncidentId: id, Position: &sarv1.LatLng{Lat: clueLat, Lng: clueLng}, RadiusM: 300, Weight: 10, Description: "a glove"}))
	g3 := checkNormalised(t, "after the clue", e.grid(opNorth, id, 0))
	if ratio := g3[clueCell].GetPoa() / g2[clueCell].GetPoa(); ratio < 3 {
		t.Errorf("clue cell POA rose %.2f times, want at least 3", ratio)
	}
	eventually(t, "a CLUE grid event", func() bool {
		return rec.count(func(ev *sarv1.Event) bool {
			return ev.GetSearchGridChanged().GetChange() == sarv1.SearchGridChange_SEARCH_GRID_CHANGE_CLUE &&
				ev.GetSearchGridChanged().GetDescription() == "a glove"
		}) == 1
	})

	// Segments for the assigned rescuer, densest first, covering the grid.
	segs := must[*sarv1.ListSegmentsResponse](t, "ListSegments")(sc.ListSegments(e.as(officer), &sarv1.ListSegmentsRequest{
		IncidentId: id, TargetAreaM2: 2_000_000}))
	n, sumPOA := 0, 0.0
	for i, s := range segs.GetSegments() {
		n += len(s.GetCells())
		sumPOA += s.GetPoa()
		if i > 0 && s.GetDensityPerKm2() > segs.GetSegments()[i-1].GetDensityPerKm2() {
			t.Errorf("segment %d denser than segment %d", s.GetId(), segs.GetSegments()[i-1].GetId())
		}
	}
	if n != len(g3) || math.Abs(sumPOA+g3RestOfWorld(e, opNorth, id)-1) > 1e-6 {
		t.Errorf("segments hold %d cells and POA %v; want %d and 1 − rest of world", n, sumPOA, len(g3))
	}

	// GeoJSON export parses.
	big := grpc.MaxCallRecvMsgSize(32 << 20) // the whole 95 % grid is ~6 MB of GeoJSON
	ex := must[*sarv1.ExportSearchGridResponse](t, "ExportSearchGrid")(sc.ExportSearchGrid(e.as(officer), &sarv1.ExportSearchGridRequest{
		IncidentId: id, Format: sarv1.ExportFormat_EXPORT_FORMAT_GEOJSON}, big))
	var fc struct {
		Type     string `json:"type"`
		Features []struct {
			Properties map[string]any `json:"properties"`
		} `json:"features"`
	}
	if err := json.Unmarshal(ex.GetContent(), &fc); err != nil {
		t.Fatalf("GeoJSON export does not parse: %v", err)
	}
	if fc.Type != "FeatureCollection" || len(fc.Features) != len(g3) || ex.GetContentType() != "application/geo+json" {
		t.Errorf("export: type %q, %d features, content type %q; want FeatureCollection, %d, application/geo+json",
			fc.Type, len(fc.Features), ex.GetContentType(), len(g3))
	}
	kml := must[*sarv1.ExportSearchGridResponse](t, "ExportSearchGrid KML")(sc.ExportSearchGrid(e.as(opNorth), &sarv1.ExportSearchGridRequest{
		IncidentId: id, Format: sarv1.ExportFormat_EXPORT_FORMAT_KML}, big))
	if len(kml.GetContent()) == 0 || kml.GetContentType() != "application/vnd.google-earth.kml+xml" {
		t.Errorf("KML export: %d bytes, %q", len(kml.GetContent()), kml.GetContentType())
	}

	// Who may do what.
	_, err = sc.GetSearchGrid(e.as(caller), &sarv1.GetSearchGridRequest{IncidentId: id})
	wantCode(t, "caller GetSearchGrid", err, codes.PermissionDenied)
	_, err = sc.ExportSearchGrid(e.as(caller), &sarv1.ExportSearchGridRequest{IncidentId: id, Format: sarv1.ExportFormat_EXPORT_FORMAT_KML})
	wantCode(t, "caller ExportSearchGrid", err, codes.PermissionDenied)
	_, err = sc.SetSearchPlan(e.as(officer), &sarv1.SetSearchPlanRequest{IncidentId: id})
	wantCode(t, "rescuer SetSearchPlan", err, codes.PermissionDenied)
	_, err = sc.RecordClue(e.as(officer), &sarv1.RecordClueRequest{IncidentId: id, Position: &sarv1.LatLng{Lat: ippLat, Lng: ippLng}, RadiusM: 100, Weight: 2})
	wantCode(t, "rescuer RecordClue", err, codes.PermissionDenied)
	_, err = sc.GetSearchGrid(e.as(opSouth), &sarv1.GetSearchGridRequest{IncidentId: id})
	wantCode(t, "south operator GetSearchGrid", err, codes.NotFound)
	_, err = sc.AdjustCells(e.as(opSouth), &sarv1.AdjustCellsRequest{IncidentId: id, ScaleCells: []string{ippCell}, ScaleFactor: 2})
	wantCode(t, "south operator AdjustCells", err, codes.NotFound)
	_, err = sc.SetSearchPlan(e.as(opSouth), &sarv1.SetSearchPlanRequest{IncidentId: id})
	wantCode(t, "south operator SetSearchPlan", err, codes.NotFound)
	_, err = sc.ListSegments(e.as(southOfficer), &sarv1.ListSegmentsRequest{IncidentId: id})
	wantCode(t, "unassigned rescuer ListSegments", err, codes.NotFound)

	// Bad input gets field violations.
	st := wantCode(t, "AdjustCells with nothing", func() error {
		_, err := sc.AdjustCells(e.as(opNorth), &sarv1.AdjustCellsRequest{IncidentId: id})
		return err
	}(), codes.InvalidArgument)
	if fv := fieldViolations(st); len(fv) == 0 {
		t.Errorf("AdjustCells with nothing: no field violations")
	}
	_, err = sc.AdjustCells(e.as(opNorth), &sarv1.AdjustCellsRequest{IncidentId: id, ScaleCells: []string{hexCell(t, 0, 0)}, ScaleFactor: 2})
	wantCode(t, "AdjustCells on a cell outside the grid", err, codes.InvalidArgument)
	_, err = sc.RecordClue(e.as(opNorth), &sarv1.RecordClueRequest{IncidentId: id, Position: &sarv1.LatLng{Lat: 91}, RadiusM: 100, Weight: 2})
	wantCode(t, "RecordClue off the globe", err, codes.InvalidArgument)
	_, err = sc.ExportSearchGrid(e.as(opNorth), &sarv1.ExportSearchGridRequest{IncidentId: id})
	wantCode(t, "ExportSearchGrid without a format", err, codes.InvalidArgument)

	// A re-seed from a caller's fix keeps the coverage as evidence.
	fix := must[*sarv1.SetSearchPlanResponse](t, "SetSearchPlan fix")(sc.SetSearchPlan(e.as(opNorth), &sarv1.SetSearchPlanRequest{
		IncidentId: id, Point: &sarv1.LatLng{Lat: ippLat + 0.003, Lng: ippLng}, AccuracyM: 200})).GetGrid()
	if fix.GetProfile() != "fix" || fix.GetSweepWidthsM()["foot"] != 200 || fix.GetSeedVersion() != fix.GetVersion() {
		t.Errorf("fix plan: profile %q, sweep widths %v, seed_version %d, version %d", fix.GetProfile(), fix.GetSweepWidthsM(), fix.GetSeedVersion(), fix.GetVersion())
	}
	gf := checkNormalised(t, "seeded from a fix", e.grid(opNorth, id, 0))
	if old := e.grid(opNorth, id, v); !old.GetFull() {
		t.Errorf("since a version before the re-seed: full = false, want the whole grid")
	}
	if c := gf[hexCell(t, ippLat+0.003, ippLng)]; c.GetCoverage() <= 0 || fix.GetProbabilityOfSuccess() <= 0 {
		t.Errorf("fix grid: walked cell coverage %v, POS %v; want both kept above 0", c.GetCoverage(), fix.GetProbabilityOfSuccess())
	}
}

func g3RestOfWorld(e *env, token, id string) float64 {
	return e.grid(token, id, 0).GetGrid().GetRestOfWorld()
}

// TestSearchGridOverHTTP drives the search plan through the JSON gateway as
// the command console would, with a subject the statistics do not cover.
func TestSearchGridOverHTTP(t *testing.T) {
	e := startEnv(t)
	op := e.operator("north")
	inc := e.createIncident(op)
	base := "http://" + e.app.HTTPAddr() + "/v1/incidents/" + inc.GetId()
	call := func(method, path, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+op)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	code, out := call("POST", "/search:plan", `{"subject":{"category":"SUBJECT_CATEGORY_CLIMBER"},"cut":0.5,"sweepWidthsM":{"dog":60}}`)
	g, _ := out["grid"].(map[string]any)
	if code != 200 || g["profile"] != "climber/temperate/all" || g["profileFallback"] != false || g["profileRequested"] != "climber/temperate/mountainous" ||
		g["profileReason"] == nil || len(g["profileDistancesKm"].([]any)) != 4 || g["sweepWidthsM"] == nil {
		t.Fatalf("POST search:plan = %d %v, want 200 with the climber row (one for all terrains) named", code, out)
	}
	if sw := g["sweepWidthsM"].(map[string]any); sw["foot"] != 20.0 || sw["dog"] != 60.0 {
		t.Errorf("sweep widths = %v, want foot 20 (default) and dog 60", sw)
	}
	code, out = call("GET", "/search/grid?sinceVersion=1", "")
	if cells, _ := out["cells"].([]any); code != 200 || out["full"] == true || len(cells) != 0 {
		t.Errorf("GET search/grid?sinceVersion=1 = %d %v, want no changed cells", code, out)
	}
	if sm, _ := out["grid"].(map[string]any); sm["profileRequested"] != "climber/temperate/mountainous" || sm["profileReason"] != g["profileReason"] {
		t.Errorf("GET search/grid summary = %v, want the stored profile choice and its reason", sm)
	}
	code, out = call("POST", "/search/clues", `{"position":{"lat":30.25,"lng":119.72},"radiusM":200,"weight":5,"description":"footprints"}`)
	if code != 200 || out["grid"].(map[string]any)["version"] != "2" {
		t.Errorf("POST search/clues = %d %v, want 200 at version 2", code, out)
	}
	code, out = call("GET", "/search/export?format=EXPORT_FORMAT_GEOJSON", "")
	if code != 200 || out["contentType"] != "application/geo+json" || out["content"] == "" {
		t.Errorf("GET search/export = %d (content type %v), want 200 GeoJSON", code, out["contentType"])
	}
	code, _ = call("GET", "/search/segments?targetAreaM2=1", "")
	if code != 400 {
		t.Errorf("GET search/segments with a 1 m² target = %d, want 400", code)
	}
}

// TestSearchGridAdjustWhileTracksArrive changes the plan while a rescuer's
// batches keep moving the grid's version: every change lands (renumbered,
// not refused) and the grid stays normalised, with the coverage of every
// batch kept.
func TestSearchGridAdjustWhileTracksArrive(t *testing.T) {
	e := startEnv(t)
	e.createAgency("police-north", "north", sarv1.AgencyKind_AGENCY_KIND_POLICE_STATION)
	op, officer := e.operator("north"), e.rescuer("police-north", "")
	id := e.createIncident(op, "police-north").GetId()
	sc := e.search()
	must[*sarv1.SetSearchPlanResponse](t, "SetSearchPlan")(sc.SetSearchPlan(e.as(op), &sarv1.SetSearchPlanRequest{IncidentId: id, Cut: 0.75}))
	e.join(officer, id, "phone")
	d := e.openDevice(officer, id, "phone")
	start := time.Now().Add(-time.Hour)
	const batches, per = 40, 5
	done := make(chan error, 1)
	go func() {
		for b := range batches {
			err := d.stream.Send(&sarv1.StreamFixesRequest{Batch: &sarv1.FixBatch{IncidentId: id, DeviceId: "phone",
				Fixes: line(uint64(b*per+1), per, start), BatchId: uint64(b + 1)}})
			if err == nil {
				var r *sarv1.StreamFixesResponse
				if r, err = d.stream.Recv(); err == nil && r.GetAck().GetAckedThrough() != uint64((b+1)*per) {
					err = errStop
				}
			}
			if err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	ippCell := hexCell(t, ippLat, ippLng)
	for i := range 6 {
		if i%2 == 0 {
			must[*sarv1.AdjustCellsResponse](t, "AdjustCells")(sc.AdjustCells(e.as(op), &sarv1.AdjustCellsRequest{
				IncidentId: id, ScaleCells: []string{ippCell}, ScaleFactor: 1.5}))
		} else {
			must[*sarv1.RecordClueResponse](t, "RecordClue")(sc.RecordClue(e.as(op), &sarv1.RecordClueRequest{
				IncidentId: id, Position: &sarv1.LatLng{Lat: ippLat + 0.01*float64(i), Lng: ippLng}, RadiusM: 200, Weight: 2}))
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("streaming batches: %v", err)
	}
	e.settle(id) // the coverage is credited after the acks
	g := e.grid(op, id, 0)
	cells := checkNormalised(t, "after concurrent changes", g)
	var swept float64
	for _, c := range cells {
		swept += c.GetCoverage() * c.GetAreaM2() / 20
	}
	// 200 fixes: moves to fixes 2…199 confirmed, 198 × 20 m.
	if math.Abs(swept-198*20) > 10 {
		t.Errorf("coverage credits %.1f m, want 3960 ± 10 m: every batch counted once", swept)
	}
	inc := e.grid(op, id, g.GetGrid().GetVersion()-1)
	if math.Abs(inc.GetWeightTotal()-g.GetWeightTotal()) > 1e-9*g.GetWeightTotal() {
		t.Errorf("maintained weight total %v, recomputed %v", inc.GetWeightTotal(), g.GetWeightTotal())
	}
}
