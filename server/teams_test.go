package server_test

import (
	"encoding/json"
	"math"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/geo"
)

// ipp is where the mother and daughter were last seen (createIncident's).
var ipp = &sarv1.LatLng{Lat: 30.2458, Lng: 119.7156}

// east returns the point d metres east of ipp.
func east(d float64) *sarv1.LatLng {
	return &sarv1.LatLng{Lat: ipp.Lat, Lng: ipp.Lng + d/(111_320*math.Cos(ipp.Lat*math.Pi/180))}
}

func (e *env) createTeam(token string, t *sarv1.Team) *sarv1.Team {
	e.t.Helper()
	return must[*sarv1.CreateTeamResponse](e.t, "CreateTeam "+t.GetId())(e.agency.CreateTeam(e.as(token), &sarv1.CreateTeamRequest{Team: t})).GetTeam()
}

func (e *env) setStatus(token, agency, team string, st sarv1.TeamStatus, at *sarv1.LatLng) *sarv1.Team {
	e.t.Helper()
	return must[*sarv1.SetTeamStatusResponse](e.t, "SetTeamStatus "+agency+"/"+team)(e.agency.SetTeamStatus(e.as(token),
		&sarv1.SetTeamStatusRequest{AgencyId: agency, TeamId: team, Status: st, Position: at})).GetTeam()
}

func (e *env) findTeams(token string, req *sarv1.FindTeamsRequest) []string {
	e.t.Helper()
	res := must[*sarv1.FindTeamsResponse](e.t, "FindTeams")(e.agency.FindTeams(e.as(token), req))
	var out []string
	for _, f := range res.GetTeams() {
		out = append(out, f.GetTeam().GetAgencyId()+"/"+f.GetTeam().GetId())
	}
	return out
}

// The seed story's callout: a township operator registers the villagers'
// group that turned up, the teams say whether they can go, and "who can
// go near the last-seen point, of these kinds?" is answered nearest (in
// travel time) first, within the operator's jurisdiction only.
func TestTeamsForACallout(t *testing.T) {
	e := startEnv(t)
	op := e.operator("north")
	e.createAgency("police-north", "north", sarv1.AgencyKind_AGENCY_KIND_POLICE_STATION)
	e.createAgency("blue-sky", "north", sarv1.AgencyKind_AGENCY_KIND_VOLUNTEER_RESCUE)
	e.createAgency("fire-north", "north", sarv1.AgencyKind_AGENCY_KIND_FIRE_BRIGADE)
	e.createAgency("police-south", "south", sarv1.AgencyKind_AGENCY_KIND_POLICE_STATION)

	// An operator registers an agency of its own jurisdiction on the spot,
	// not of another; a rescuer not at all.
	must[*sarv1.CreateAgencyResponse](t, "operator CreateAgency")(e.agency.CreateAgency(e.as(op), &sarv1.CreateAgencyRequest{
		Agency: &sarv1.Agency{Id: "shangcun", Name: "Shangcun villagers", Kind: sarv1.AgencyKind_AGENCY_KIND_VILLAGERS, Jurisdiction: "north"}}))
	_, err := e.agency.CreateAgency(e.as(op), &sarv1.CreateAgencyRequest{
		Agency: &sarv1.Agency{Id: "xiacun", Name: "Xiacun", Kind: sarv1.AgencyKind_AGENCY_KIND_VILLAGERS, Jurisdiction: "south"}})
	wantCode(t, "operator CreateAgency in another jurisdiction", err, codes.PermissionDenied)
	_, err = e.agency.CreateAgency(e.as(e.rescuer("blue-sky", "")), &sarv1.CreateAgencyRequest{
		Agency: &sarv1.Agency{Id: "rogue", Name: "Rogue", Kind: sarv1.AgencyKind_AGENCY_KIND_OTHER, Jurisdiction: "north"}})
	wantCode(t, "rescuer CreateAgency", err, codes.PermissionDenied)

	e.createTeam(op, &sarv1.Team{AgencyId: "police-north", Id: "patrol", Name: "Patrol car 1", Home: east(3000), Size: 2, TravelSpeedMS: 12})
	e.createTeam(op, &sarv1.Team{AgencyId: "blue-sky", Id: "k9", Name: "Dog team", Home: east(12_000), Size: 3, SearcherTypes: []string{"foot", "dog"}})
	e.createTeam(op, &sarv1.Team{AgencyId: "fire-north", Id: "engine", Name: "Engine 2", Home: east(8000), Size: 5})
	e.createTeam(op, &sarv1.Team{AgencyId: "shangcun", Id: "elders", Name: "Village elders", Home: east(1000), Size: 6, TravelSpeedMS: 1.2})
	e.createTeam(e.admin, &sarv1.Team{AgencyId: "police-south", Id: "patrol", Name: "South patrol", Home: east(2000)})
	e.createTeam(op, &sarv1.Team{AgencyId: "fire-north", Id: "far", Name: "Far engine", Home: east(80_000)})

	// Nobody reported yet: nobody is offered.
	if got := e.findTeams(op, &sarv1.FindTeamsRequest{Near: ipp}); len(got) != 0 {
		t.Errorf("FindTeams before any status = %v, want none", got)
	}
	// Members set their own team's status; not another team's.
	k9 := e.rescuer("blue-sky", "k9")
	if tm := e.setStatus(k9, "blue-sky", "k9", sarv1.TeamStatus_TEAM_STATUS_AVAILABLE, nil); tm.GetStatus() != sarv1.TeamStatus_TEAM_STATUS_AVAILABLE || tm.GetStatusBy() == "" {
		t.Errorf("SetTeamStatus by a member = %v, want available with who set it", tm)
	}
	_, err = e.agency.SetTeamStatus(e.as(k9), &sarv1.SetTeamStatusRequest{AgencyId: "police-north", TeamId: "patrol", Status: sarv1.TeamStatus_TEAM_STATUS_UNAVAILABLE})
	wantCode(t, "member of another team sets a status", err, codes.NotFound)
	_, err = e.agency.SetTeamStatus(e.as(e.operator("south")), &sarv1.SetTeamStatusRequest{AgencyId: "police-north", TeamId: "patrol", Status: sarv1.TeamStatus_TEAM_STATUS_UNAVAILABLE})
	wantCode(t, "operator of another jurisdiction sets a status", err, codes.NotFound)
	e.setStatus(op, "police-north", "patrol", sarv1.TeamStatus_TEAM_STATUS_AVAILABLE, nil)
	e.setStatus(op, "fire-north", "engine", sarv1.TeamStatus_TEAM_STATUS_UNAVAILABLE, nil)
	e.setStatus(op, "shangcun", "elders", sarv1.TeamStatus_TEAM_STATUS_LIMITED, nil)
	e.setStatus(op, "fire-north", "far", sarv1.TeamStatus_TEAM_STATUS_AVAILABLE, nil)
	e.setStatus(e.admin, "police-south", "patrol", sarv1.TeamStatus_TEAM_STATUS_AVAILABLE, nil)

	// Travel: patrol 1.3·3000/12 = 325 s, elders 1.3·1000/1.2 = 1083 s,
	// k9 1.3·12000/8.3 = 1880 s; the engine is unavailable, the far engine
	// beyond 50 km, the south patrol in another jurisdiction.
	got := e.findTeams(op, &sarv1.FindTeamsRequest{Near: ipp})
	if want := "police-north/patrol shangcun/elders blue-sky/k9"; strings.Join(got, " ") != want {
		t.Errorf("FindTeams near the IPP = %v, want %s", got, want)
	}
	res := must[*sarv1.FindTeamsResponse](t, "FindTeams")(e.agency.FindTeams(e.as(op), &sarv1.FindTeamsRequest{Near: ipp, Limit: 1}))
	if len(res.GetTeams()) != 1 {
		t.Fatalf("FindTeams(limit 1) = %d teams", len(res.GetTeams()))
	}
	first := res.GetTeams()[0]
	if math.Abs(first.GetDistanceM()-3000) > 5 || math.Abs(first.GetTravel().AsDuration().Seconds()-geo.TravelSeconds(first.GetDistanceM(), 12)) > 0.01 ||
		first.GetAgencyKind() != sarv1.AgencyKind_AGENCY_KIND_POLICE_STATION {
		t.Errorf("first team = %.0f m, %v, %v; want 3000 m at 12 m/s, a police station", first.GetDistanceM(), first.GetTravel().AsDuration(), first.GetAgencyKind())
	}
	if got := e.findTeams(op, &sarv1.FindTeamsRequest{Near: ipp, SearcherTypes: []string{"dog", "drone"}}); strings.Join(got, " ") != "blue-sky/k9" {
		t.Errorf("FindTeams(dog or drone) = %v, want the dog team only", got)
	}
	if got := e.findTeams(op, &sarv1.FindTeamsRequest{Near: ipp, SearcherTypes: []string{"foot"}}); len(got) != 3 {
		t.Errorf("FindTeams(foot) = %v, want all three (no types means foot)", got)
	}
	if got := e.findTeams(op, &sarv1.FindTeamsRequest{Near: ipp, Statuses: []sarv1.TeamStatus{sarv1.TeamStatus_TEAM_STATUS_UNAVAILABLE}}); strings.Join(got, " ") != "fire-north/engine" {
		t.Errorf("FindTeams(unavailable) = %v, want the engine", got)
	}
	if got := e.findTeams(op, &sarv1.FindTeamsRequest{Near: ipp, MaxDistanceM: 100_000}); len(got) != 4 || got[3] != "fire-north/far" {
		t.Errorf("FindTeams(100 km) = %v, want the far engine last", got)
	}
	// The south patrol: 1.3·2000/8.3 (the default speed) = 313 s, first.
	if got := e.findTeams(e.admin, &sarv1.FindTeamsRequest{Near: ipp}); strings.Join(got, " ") != "police-south/patrol police-north/patrol shangcun/elders blue-sky/k9" {
		t.Errorf("admin FindTeams = %v, want the south patrol too, first", got)
	}
	_, err = e.agency.FindTeams(e.as(op), &sarv1.FindTeamsRequest{Near: ipp, Jurisdiction: "south"})
	wantCode(t, "operator FindTeams in another jurisdiction", err, codes.PermissionDenied)
	_, err = e.agency.FindTeams(e.as(k9), &sarv1.FindTeamsRequest{Near: ipp})
	wantCode(t, "rescuer FindTeams", err, codes.PermissionDenied)

	// The patrol drives off to another valley: it is found there, no
	// longer here, and the index forgets its old cell.
	oldCell, _ := geo.IndexCell(east(3000).Lat, east(3000).Lng)
	away := &sarv1.LatLng{Lat: ipp.Lat + 1, Lng: ipp.Lng}
	moved := e.setStatus(op, "police-north", "patrol", sarv1.TeamStatus_TEAM_STATUS_AVAILABLE, away)
	if moved.GetPosition() == nil || moved.GetHome() == nil {
		t.Errorf("team after a status with a position = %v, want the position and the home kept", moved)
	}
	if got := e.findTeams(op, &sarv1.FindTeamsRequest{Near: ipp}); strings.Join(got, " ") != "shangcun/elders blue-sky/k9" {
		t.Errorf("FindTeams near the IPP after the patrol left = %v", got)
	}
	if got := e.findTeams(op, &sarv1.FindTeamsRequest{Near: away, MaxDistanceM: 1000}); strings.Join(got, " ") != "police-north/patrol" {
		t.Errorf("FindTeams where the patrol went = %v, want the patrol", got)
	}
	// A status without a position keeps where the team is; clearing it
	// brings the team back to its home.
	e.setStatus(op, "police-north", "patrol", sarv1.TeamStatus_TEAM_STATUS_LIMITED, nil)
	if got := e.findTeams(op, &sarv1.FindTeamsRequest{Near: away, MaxDistanceM: 1000}); strings.Join(got, " ") != "police-north/patrol" {
		t.Errorf("FindTeams where the patrol went, after a status without a position = %v, want the patrol still there", got)
	}
	must[*sarv1.SetTeamStatusResponse](t, "clear")(e.agency.SetTeamStatus(e.as(op), &sarv1.SetTeamStatusRequest{AgencyId: "police-north", TeamId: "patrol",
		Status: sarv1.TeamStatus_TEAM_STATUS_AVAILABLE, ClearPosition: true}))
	if got := e.findTeams(op, &sarv1.FindTeamsRequest{Near: ipp}); len(got) == 0 || got[0] != "police-north/patrol" {
		t.Errorf("FindTeams near the IPP after the patrol went home = %v, want it first again", got)
	}
	e.setStatus(op, "police-north", "patrol", sarv1.TeamStatus_TEAM_STATUS_AVAILABLE, away)
	refs := e.rdb.SMembers(t.Context(), "sar:idx:teamcell:"+geo.CellString(oldCell)).Val()
	for _, r := range refs {
		if r == "police-north/patrol" {
			t.Errorf("index cell %s still lists the patrol after it moved: %v", geo.CellString(oldCell), refs)
		}
	}

	// UpdateTeam changes what the mask names, and nothing else.
	up := must[*sarv1.UpdateTeamResponse](t, "UpdateTeam")(e.agency.UpdateTeam(e.as(op), &sarv1.UpdateTeamRequest{
		Team:       &sarv1.Team{AgencyId: "blue-sky", Id: "k9", Name: "ignored", Size: 4, SearcherTypes: []string{"dog", "drone"}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"size", "searcher_types"}}})).GetTeam()
	if up.GetName() != "Dog team" || up.GetSize() != 4 || len(up.GetSearcherTypes()) != 2 || up.GetStatus() != sarv1.TeamStatus_TEAM_STATUS_AVAILABLE {
		t.Errorf("UpdateTeam(size, searcher_types) = %v, want the name and status kept", up)
	}
}

func TestTeamsBadInput(t *testing.T) {
	e := startEnv(t)
	op := e.operator("north")
	e.createAgency("blue-sky", "north", sarv1.AgencyKind_AGENCY_KIND_VOLUNTEER_RESCUE)
	e.createTeam(op, &sarv1.Team{AgencyId: "blue-sky", Id: "k9", Name: "Dog team"})
	for _, tc := range []struct {
		name  string
		call  func() error
		field string
	}{
		{"team home off the Earth", func() error {
			_, err := e.agency.CreateTeam(e.as(op), &sarv1.CreateTeamRequest{Team: &sarv1.Team{AgencyId: "blue-sky", Id: "t2", Name: "x", Home: &sarv1.LatLng{Lat: 91}}})
			return err
		}, "team.home"},
		{"negative size", func() error {
			_, err := e.agency.CreateTeam(e.as(op), &sarv1.CreateTeamRequest{Team: &sarv1.Team{AgencyId: "blue-sky", Id: "t2", Name: "x", Size: -1}})
			return err
		}, "team.size"},
		{"bad searcher type", func() error {
			_, err := e.agency.CreateTeam(e.as(op), &sarv1.CreateTeamRequest{Team: &sarv1.Team{AgencyId: "blue-sky", Id: "t2", Name: "x", SearcherTypes: []string{"Dog!"}}})
			return err
		}, "team.searcher_types[0]"},
		{"status in an update mask", func() error {
			_, err := e.agency.UpdateTeam(e.as(op), &sarv1.UpdateTeamRequest{Team: &sarv1.Team{AgencyId: "blue-sky", Id: "k9"},
				UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"status"}}})
			return err
		}, "update_mask"},
		{"no update mask", func() error {
			_, err := e.agency.UpdateTeam(e.as(op), &sarv1.UpdateTeamRequest{Team: &sarv1.Team{AgencyId: "blue-sky", Id: "k9", Size: 3}})
			return err
		}, "update_mask"},
		{"status unspecified", func() error {
			_, err := e.agency.SetTeamStatus(e.as(op), &sarv1.SetTeamStatusRequest{AgencyId: "blue-sky", TeamId: "k9"})
			return err
		}, "status"},
		{"unknown status number", func() error {
			_, err := e.agency.SetTeamStatus(e.as(op), &sarv1.SetTeamStatusRequest{AgencyId: "blue-sky", TeamId: "k9", Status: 99})
			return err
		}, "status"},
		{"find without a place", func() error {
			_, err := e.agency.FindTeams(e.as(op), &sarv1.FindTeamsRequest{})
			return err
		}, "near"},
		{"find too far", func() error {
			_, err := e.agency.FindTeams(e.as(op), &sarv1.FindTeamsRequest{Near: ipp, MaxDistanceM: 301_000})
			return err
		}, "max_distance_m"},
		{"find too many", func() error {
			_, err := e.agency.FindTeams(e.as(op), &sarv1.FindTeamsRequest{Near: ipp, Limit: 1000})
			return err
		}, "limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := wantCode(t, tc.name, tc.call(), codes.InvalidArgument)
			if fv := fieldViolations(st); len(fv) == 0 || fv[0] != tc.field {
				t.Errorf("%s: field violations %v, want %s", tc.name, fv, tc.field)
			}
		})
	}
	_, err := e.agency.SetTeamStatus(e.as(op), &sarv1.SetTeamStatusRequest{AgencyId: "blue-sky", TeamId: "nope", Status: sarv1.TeamStatus_TEAM_STATUS_AVAILABLE})
	wantCode(t, "status of an unknown team", err, codes.NotFound)

	// The JSON door: a team search is a POST with the same answer.
	req, _ := http.NewRequest("POST", "http://"+e.app.HTTPAddr()+"/v1/teams:find", strings.NewReader(`{"near":{"lat":30.2458,"lng":119.7156},"statuses":["TEAM_STATUS_UNSPECIFIED"]}`))
	req.Header.Set("Authorization", "Bearer "+op)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("POST /v1/teams:find with an unspecified status = %d %v, want 400", resp.StatusCode, out)
	}
}
