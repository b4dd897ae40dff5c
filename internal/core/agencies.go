package core

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/geo"
	"github.com/mountain-sar/sar/internal/auth"
	"github.com/mountain-sar/sar/internal/sar"
)

func slugField(fv *[]sar.FieldViolation, field, v string) {
	if !sar.ValidSlug(v) {
		*fv = append(*fv, sar.Field(field, "INVALID", "%s must be 1-63 characters of a-z, 0-9, '-' and '_', starting with a letter or digit", field))
	}
}

// CreateAgency registers an agency: admins for any jurisdiction, operators
// for their own (a villagers' group that turns up is added on the spot).
func (s *Service) CreateAgency(ctx context.Context, a *sarv1.Agency) (*sarv1.Agency, error) {
	p, err := auth.Require(ctx, sarv1.Role_ROLE_ADMIN, sarv1.Role_ROLE_OPERATOR)
	if err != nil {
		return nil, err
	}
	var fv []sar.FieldViolation
	if a == nil {
		a = &sarv1.Agency{}
	}
	slugField(&fv, "agency.id", a.GetId())
	slugField(&fv, "agency.jurisdiction", a.GetJurisdiction())
	text(&fv, "agency.name", a.GetName(), sar.MaxNameLen, true)
	if _, ok := sarv1.AgencyKind_name[int32(a.GetKind())]; !ok || a.GetKind() == sarv1.AgencyKind_AGENCY_KIND_UNSPECIFIED {
		fv = append(fv, sar.Field("agency.kind", "REQUIRED", "agency kind is required"))
	}
	if len(fv) > 0 {
		return nil, sar.Invalid("invalid agency", fv...)
	}
	if p.GetRole() == sarv1.Role_ROLE_OPERATOR && a.GetJurisdiction() != p.GetJurisdiction() {
		return nil, &sar.Error{Kind: sar.KindPermissionDenied, Message: "operators register agencies of their own jurisdiction only",
			Fields: []sar.FieldViolation{sar.Field("agency.jurisdiction", "NOT_YOURS", "must be %q", p.GetJurisdiction())}}
	}
	out := &sarv1.Agency{Id: a.GetId(), Name: strings.TrimSpace(a.GetName()), Kind: a.GetKind(),
		Jurisdiction: a.GetJurisdiction(), CreateTime: timestamppb.New(s.now())}
	return out, s.st.CreateAgency(ctx, out)
}

// GetAgency returns an agency the caller may see.
func (s *Service) GetAgency(ctx context.Context, id string) (*sarv1.Agency, error) {
	p, err := auth.Require(ctx, sarv1.Role_ROLE_ADMIN, sarv1.Role_ROLE_OPERATOR, sarv1.Role_ROLE_RESCUER)
	if err != nil {
		return nil, err
	}
	a, err := s.st.Agency(ctx, id)
	if err != nil {
		return nil, err
	}
	if !auth.CanSeeAgency(p, a) {
		return nil, sar.NotFound("agency")
	}
	return a, nil
}

// ListAgencies lists the agencies the caller may see.
func (s *Service) ListAgencies(ctx context.Context, jurisdiction string) ([]*sarv1.Agency, error) {
	p, err := auth.Require(ctx, sarv1.Role_ROLE_ADMIN, sarv1.Role_ROLE_OPERATOR, sarv1.Role_ROLE_RESCUER)
	if err != nil {
		return nil, err
	}
	all, err := s.st.Agencies(ctx)
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, a := range all {
		if auth.CanSeeAgency(p, a) && (jurisdiction == "" || a.GetJurisdiction() == jurisdiction) {
			out = append(out, a)
		}
	}
	return out, nil
}

// CreateTeam adds a team to an agency.
func (s *Service) CreateTeam(ctx context.Context, t *sarv1.Team) (*sarv1.Team, error) {
	p, err := auth.Require(ctx, sarv1.Role_ROLE_ADMIN, sarv1.Role_ROLE_OPERATOR)
	if err != nil {
		return nil, err
	}
	if t == nil {
		t = &sarv1.Team{}
	}
	var fv []sar.FieldViolation
	slugField(&fv, "team.id", t.GetId())
	text(&fv, "team.name", t.GetName(), sar.MaxNameLen, true)
	checkTeamFields(&fv, t, nil)
	if len(fv) > 0 {
		return nil, sar.Invalid("invalid team", fv...)
	}
	a, err := s.st.Agency(ctx, t.GetAgencyId())
	if err != nil {
		return nil, err
	}
	if !auth.CanManageAgency(p, a) {
		return nil, sar.NotFound("agency")
	}
	out := &sarv1.Team{Id: t.GetId(), AgencyId: a.GetId(), Name: strings.TrimSpace(t.GetName()), CreateTime: timestamppb.New(s.now()),
		Home: t.GetHome(), Size: t.GetSize(), SearcherTypes: t.GetSearcherTypes(), TravelSpeedMS: t.GetTravelSpeedMS()}
	return out, s.st.CreateTeam(ctx, out)
}

// ListTeams lists an agency's teams.
func (s *Service) ListTeams(ctx context.Context, agencyID string) ([]*sarv1.Team, error) {
	if _, err := s.GetAgency(ctx, agencyID); err != nil {
		return nil, err
	}
	return s.st.Teams(ctx, agencyID)
}

// Team limits.
const (
	MaxTeamSize         = 10_000
	MaxTeamTravelSpeed  = 100.0 // m/s: a helicopter's cruise
	DefaultTravelSpeed  = 8.3   // m/s: about 30 km/h, road and track together
	DefaultFindDistance = 50_000.0
	DefaultFindLimit    = 20
	MaxFindLimit        = 200
)

// teamFields are the fields of a team that UpdateTeam may change.
var teamFields = map[string]bool{"name": true, "home": true, "size": true, "searcher_types": true, "travel_speed_m_s": true}

// checkTeamFields validates a team's descriptive fields; with only set,
// just those named in it.
func checkTeamFields(fv *[]sar.FieldViolation, t *sarv1.Team, only map[string]bool) {
	has := func(f string) bool { return only == nil || only[f] }
	if has("home") && t.GetHome() != nil && !geo.ValidPoint(t.GetHome().GetLat(), t.GetHome().GetLng()) {
		*fv = append(*fv, sar.Field("team.home", "OUT_OF_RANGE", "lat must be -90..90 and lng -180..180"))
	}
	if has("size") && (t.GetSize() < 0 || t.GetSize() > MaxTeamSize) {
		*fv = append(*fv, sar.Field("team.size", "OUT_OF_RANGE", "size must be 0 (unknown) to %d", MaxTeamSize))
	}
	if has("searcher_types") {
		validSearcherTypes(fv, "team.searcher_types", t.GetSearcherTypes())
	}
	if v := t.GetTravelSpeedMS(); has("travel_speed_m_s") && (math.IsNaN(v) || v < 0 || v > MaxTeamTravelSpeed) {
		*fv = append(*fv, sar.Field("team.travel_speed_m_s", "OUT_OF_RANGE", "travel speed must be 0 (default) to %v m/s", MaxTeamTravelSpeed))
	}
}

func validSearcherTypes(fv *[]sar.FieldViolation, field string, types []string) {
	if len(types) > MaxSearcherTypes {
		*fv = append(*fv, sar.Field(field, "TOO_MANY", "at most %d searcher types", MaxSearcherTypes))
		return
	}
	seen := map[string]bool{}
	for i, st := range types {
		if !searcherType.MatchString(st) || seen[st] {
			*fv = append(*fv, sar.Field(fmt.Sprintf("%s[%d]", field, i), "INVALID",
				"searcher types are distinct names of 1-32 characters of a-z, 0-9, '-' and '_'"))
			return
		}
		seen[st] = true
	}
}

// managedTeam returns the agency and team for a principal that may manage
// the agency; NotFound otherwise (the same as an unknown team).
func (s *Service) managedTeam(ctx context.Context, p *sarv1.Principal, agencyID, teamID string) (*sarv1.Agency, error) {
	a, err := s.st.Agency(ctx, agencyID)
	if err != nil {
		return nil, err
	}
	if !auth.CanManageAgency(p, a) {
		return nil, sar.NotFound("team")
	}
	return a, nil
}

// UpdateTeam changes the fields of a team named in paths.
func (s *Service) UpdateTeam(ctx context.Context, t *sarv1.Team, paths []string) (*sarv1.Team, error) {
	p, err := auth.Require(ctx, sarv1.Role_ROLE_ADMIN, sarv1.Role_ROLE_OPERATOR)
	if err != nil {
		return nil, err
	}
	var fv []sar.FieldViolation
	if t == nil {
		t = &sarv1.Team{}
	}
	slugField(&fv, "team.agency_id", t.GetAgencyId())
	slugField(&fv, "team.id", t.GetId())
	only := map[string]bool{}
	for _, f := range paths {
		if !teamFields[f] {
			fv = append(fv, sar.Field("update_mask", "INVALID", "%q cannot be updated: name, home, size, searcher_types or travel_speed_m_s (status with SetTeamStatus)", f))
			continue
		}
		only[f] = true
	}
	if len(paths) == 0 {
		fv = append(fv, sar.Field("update_mask", "REQUIRED", "name the fields to change"))
	}
	if only["name"] {
		text(&fv, "team.name", t.GetName(), sar.MaxNameLen, true)
	}
	checkTeamFields(&fv, t, only)
	if len(fv) > 0 {
		return nil, sar.Invalid("invalid team update", fv...)
	}
	if _, err := s.managedTeam(ctx, p, t.GetAgencyId(), t.GetId()); err != nil {
		return nil, err
	}
	return s.st.UpdateTeam(ctx, t.GetAgencyId(), t.GetId(), func(cur *sarv1.Team) error {
		if only["name"] {
			cur.Name = strings.TrimSpace(t.GetName())
		}
		if only["home"] {
			cur.Home = t.GetHome()
		}
		if only["size"] {
			cur.Size = t.GetSize()
		}
		if only["searcher_types"] {
			cur.SearcherTypes = t.GetSearcherTypes()
		}
		if only["travel_speed_m_s"] {
			cur.TravelSpeedMS = t.GetTravelSpeedMS()
		}
		return nil
	})
}

// SetTeamStatus records whether a team can be sent, and where it is. The
// team's own members, operators of its agency's jurisdiction and admins.
func (s *Service) SetTeamStatus(ctx context.Context, req *sarv1.SetTeamStatusRequest) (*sarv1.Team, error) {
	p, err := auth.Require(ctx, sarv1.Role_ROLE_ADMIN, sarv1.Role_ROLE_OPERATOR, sarv1.Role_ROLE_RESCUER)
	if err != nil {
		return nil, err
	}
	var fv []sar.FieldViolation
	slugField(&fv, "agency_id", req.GetAgencyId())
	slugField(&fv, "team_id", req.GetTeamId())
	if _, ok := sarv1.TeamStatus_name[int32(req.GetStatus())]; !ok || req.GetStatus() == sarv1.TeamStatus_TEAM_STATUS_UNSPECIFIED {
		fv = append(fv, sar.Field("status", "REQUIRED", "status is required: available, limited, unavailable or on task"))
	}
	text(&fv, "note", req.GetNote(), sar.MaxTextLen, false)
	if req.GetPosition() != nil {
		validPoint(&fv, "position", req.GetPosition())
		if req.GetClearPosition() {
			fv = append(fv, sar.Field("clear_position", "CONFLICT", "give a position or clear it, not both"))
		}
	}
	if len(fv) > 0 {
		return nil, sar.Invalid("invalid team status", fv...)
	}
	if p.GetRole() == sarv1.Role_ROLE_RESCUER {
		if p.GetAgencyId() != req.GetAgencyId() || p.GetTeamId() != req.GetTeamId() {
			return nil, sar.NotFound("team") // not its own team: as if it did not exist
		}
	} else if _, err := s.managedTeam(ctx, p, req.GetAgencyId(), req.GetTeamId()); err != nil {
		return nil, err
	}
	now := timestamppb.New(s.now())
	return s.st.UpdateTeam(ctx, req.GetAgencyId(), req.GetTeamId(), func(t *sarv1.Team) error {
		t.Status, t.StatusNote, t.StatusTime, t.StatusBy = req.GetStatus(), strings.TrimSpace(req.GetNote()), now, p.GetCredentialId()
		switch {
		case req.GetPosition() != nil:
			t.Position = req.GetPosition()
		case req.GetClearPosition():
			t.Position = nil
		}
		return nil
	})
}

// FindTeams answers "which teams can go near this place, of these kinds?"
// from the index of team positions, soonest there first.
func (s *Service) FindTeams(ctx context.Context, req *sarv1.FindTeamsRequest) ([]*sarv1.FoundTeam, error) {
	p, err := auth.Require(ctx, sarv1.Role_ROLE_ADMIN, sarv1.Role_ROLE_OPERATOR)
	if err != nil {
		return nil, err
	}
	var fv []sar.FieldViolation
	validPoint(&fv, "near", req.GetNear())
	validSearcherTypes(&fv, "searcher_types", req.GetSearcherTypes())
	dist := req.GetMaxDistanceM()
	if dist == 0 {
		dist = DefaultFindDistance
	}
	if math.IsNaN(dist) || dist < 0 || dist > geo.MaxNearRadiusM {
		fv = append(fv, sar.Field("max_distance_m", "OUT_OF_RANGE", "max_distance_m must be 0 (50 km) to %v m", geo.MaxNearRadiusM))
	}
	limit := int(req.GetLimit())
	if limit == 0 {
		limit = DefaultFindLimit
	}
	if limit < 0 || limit > MaxFindLimit {
		fv = append(fv, sar.Field("limit", "OUT_OF_RANGE", "limit must be 0 (%d) to %d", DefaultFindLimit, MaxFindLimit))
	}
	statuses := map[sarv1.TeamStatus]bool{}
	for i, st := range req.GetStatuses() {
		if _, ok := sarv1.TeamStatus_name[int32(st)]; !ok || st == sarv1.TeamStatus_TEAM_STATUS_UNSPECIFIED {
			fv = append(fv, sar.Field(fmt.Sprintf("statuses[%d]", i), "INVALID", "a team status other than unspecified"))
		}
		statuses[st] = true
	}
	if len(statuses) == 0 {
		statuses[sarv1.TeamStatus_TEAM_STATUS_AVAILABLE], statuses[sarv1.TeamStatus_TEAM_STATUS_LIMITED] = true, true
	}
	jur := req.GetJurisdiction()
	if jur != "" {
		slugField(&fv, "jurisdiction", jur)
	}
	if len(fv) > 0 {
		return nil, sar.Invalid("invalid team search", fv...)
	}
	if p.GetRole() == sarv1.Role_ROLE_OPERATOR {
		if jur != "" && jur != p.GetJurisdiction() {
			return nil, &sar.Error{Kind: sar.KindPermissionDenied, Message: "operators search their own jurisdiction only",
				Fields: []sar.FieldViolation{sar.Field("jurisdiction", "NOT_YOURS", "must be empty or %q", p.GetJurisdiction())}}
		}
		jur = p.GetJurisdiction()
	}
	near := req.GetNear()
	cells, err := geo.CellsNear(near.GetLat(), near.GetLng(), dist)
	if err != nil {
		return nil, sar.Wrap(sar.KindInvalid, err, "near: cannot be placed")
	}
	teams, err := s.st.TeamsIn(ctx, cells)
	if err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for _, t := range req.GetSearcherTypes() {
		want[t] = true
	}
	agencies := map[string]*sarv1.Agency{}
	var out []*sarv1.FoundTeam
	for _, t := range teams {
		if !statuses[t.GetStatus()] || !fields(t, want) {
			continue
		}
		a, ok := agencies[t.GetAgencyId()]
		if !ok {
			if a, err = s.st.Agency(ctx, t.GetAgencyId()); err != nil && sar.KindOf(err) != sar.KindNotFound {
				return nil, err
			}
			agencies[t.GetAgencyId()] = a
		}
		if a == nil || (jur != "" && a.GetJurisdiction() != jur) {
			continue
		}
		at := t.GetPosition()
		if at == nil {
			at = t.GetHome()
		}
		d := geo.DistanceM(near.GetLat(), near.GetLng(), at.GetLat(), at.GetLng())
		if d > dist {
			continue
		}
		speed := t.GetTravelSpeedMS()
		if speed == 0 {
			speed = DefaultTravelSpeed
		}
		out = append(out, &sarv1.FoundTeam{Team: t, AgencyKind: a.GetKind(), DistanceM: d,
			Travel: durationpb.New(time.Duration(geo.TravelSeconds(d, speed) * float64(time.Second)))})
	}
	slices.SortFunc(out, func(x, y *sarv1.FoundTeam) int {
		if c := cmp.Compare(x.GetTravel().AsDuration(), y.GetTravel().AsDuration()); c != 0 {
			return c
		}
		return strings.Compare(teamKey(x.GetTeam()), teamKey(y.GetTeam()))
	})
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func teamKey(t *sarv1.Team) string { return t.GetAgencyId() + "/" + t.GetId() }

// fields reports whether a team fields one of the wanted searcher types
// (any when none is wanted); a team that names none fields searchers on
// foot.
func fields(t *sarv1.Team, want map[string]bool) bool {
	if len(want) == 0 {
		return true
	}
	types := t.GetSearcherTypes()
	if len(types) == 0 {
		types = []string{SearcherFoot}
	}
	for _, st := range types {
		if want[st] {
			return true
		}
	}
	return false
}
