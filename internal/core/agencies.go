package core

import (
	"context"
	"strings"

	"google.golang.org/protobuf/types/known/timestamppb"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/auth"
	"github.com/mountain-sar/sar/internal/sar"
)

func slugField(fv *[]sar.FieldViolation, field, v string) {
	if !sar.ValidSlug(v) {
		*fv = append(*fv, sar.Field(field, "INVALID", "%s must be 1-63 characters of a-z, 0-9, '-' and '_', starting with a letter or digit", field))
	}
}

// CreateAgency registers an agency (admins).
func (s *Service) CreateAgency(ctx context.Context, a *sarv1.Agency) (*sarv1.Agency, error) {
	if _, err := auth.Require(ctx, sarv1.Role_ROLE_ADMIN); err != nil {
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
	out := &sarv1.Team{Id: t.GetId(), AgencyId: a.GetId(), Name: strings.TrimSpace(t.GetName()), CreateTime: timestamppb.New(s.now())}
	return out, s.st.CreateTeam(ctx, out)
}

// ListTeams lists an agency's teams.
func (s *Service) ListTeams(ctx context.Context, agencyID string) ([]*sarv1.Team, error) {
	if _, err := s.GetAgency(ctx, agencyID); err != nil {
		return nil, err
	}
	return s.st.Teams(ctx, agencyID)
}
