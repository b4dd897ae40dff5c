package server

import (
	"context"
	"log/slog"
	"time"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/auth"
	"github.com/mountain-sar/sar/internal/core"
)

// The service types translate between protobuf messages and the domain;
// errors are turned into statuses by the error interceptor.

type authService struct {
	sarv1.UnimplementedAuthServiceServer
	core *core.Service
}

func (s *authService) CreateCredential(ctx context.Context, req *sarv1.CreateCredentialRequest) (*sarv1.CreateCredentialResponse, error) {
	token, p, err := s.core.CreateCredential(ctx, req)
	if err != nil {
		return nil, err
	}
	return &sarv1.CreateCredentialResponse{Token: token, Principal: p}, nil
}

func (s *authService) CreateShareLink(ctx context.Context, req *sarv1.CreateShareLinkRequest) (*sarv1.CreateShareLinkResponse, error) {
	return s.core.CreateShareLink(ctx, req)
}

func (s *authService) RevokeCredential(ctx context.Context, req *sarv1.RevokeCredentialRequest) (*sarv1.RevokeCredentialResponse, error) {
	return &sarv1.RevokeCredentialResponse{}, s.core.RevokeCredential(ctx, req.GetCredentialId())
}

func (s *authService) WhoAmI(ctx context.Context, _ *sarv1.WhoAmIRequest) (*sarv1.WhoAmIResponse, error) {
	return &sarv1.WhoAmIResponse{Principal: auth.FromContext(ctx)}, nil
}

type agencyService struct {
	sarv1.UnimplementedAgencyServiceServer
	core *core.Service
}

func (s *agencyService) CreateAgency(ctx context.Context, req *sarv1.CreateAgencyRequest) (*sarv1.CreateAgencyResponse, error) {
	a, err := s.core.CreateAgency(ctx, req.GetAgency())
	if err != nil {
		return nil, err
	}
	return &sarv1.CreateAgencyResponse{Agency: a}, nil
}

func (s *agencyService) GetAgency(ctx context.Context, req *sarv1.GetAgencyRequest) (*sarv1.GetAgencyResponse, error) {
	a, err := s.core.GetAgency(ctx, req.GetAgencyId())
	if err != nil {
		return nil, err
	}
	return &sarv1.GetAgencyResponse{Agency: a}, nil
}

func (s *agencyService) ListAgencies(ctx context.Context, req *sarv1.ListAgenciesRequest) (*sarv1.ListAgenciesResponse, error) {
	as, err := s.core.ListAgencies(ctx, req.GetJurisdiction())
	if err != nil {
		return nil, err
	}
	return &sarv1.ListAgenciesResponse{Agencies: as}, nil
}

func (s *agencyService) CreateTeam(ctx context.Context, req *sarv1.CreateTeamRequest) (*sarv1.CreateTeamResponse, error) {
	t, err := s.core.CreateTeam(ctx, req.GetTeam())
	if err != nil {
		return nil, err
	}
	return &sarv1.CreateTeamResponse{Team: t}, nil
}

func (s *agencyService) UpdateTeam(ctx context.Context, req *sarv1.UpdateTeamRequest) (*sarv1.UpdateTeamResponse, error) {
	t, err := s.core.UpdateTeam(ctx, req.GetTeam(), req.GetUpdateMask().GetPaths())
	if err != nil {
		return nil, err
	}
	return &sarv1.UpdateTeamResponse{Team: t}, nil
}

func (s *agencyService) SetTeamStatus(ctx context.Context, req *sarv1.SetTeamStatusRequest) (*sarv1.SetTeamStatusResponse, error) {
	t, err := s.core.SetTeamStatus(ctx, req)
	if err != nil {
		return nil, err
	}
	return &sarv1.SetTeamStatusResponse{Team: t}, nil
}

func (s *agencyService) FindTeams(ctx context.Context, req *sarv1.FindTeamsRequest) (*sarv1.FindTeamsResponse, error) {
	teams, err := s.core.FindTeams(ctx, req)
	if err != nil {
		return nil, err
	}
	return &sarv1.FindTeamsResponse{Teams: teams}, nil
}

func (s *agencyService) ListTeams(ctx context.Context, req *sarv1.ListTeamsRequest) (*sarv1.ListTeamsResponse, error) {
	ts, err := s.core.ListTeams(ctx, req.GetAgencyId())
	if err != nil {
		return nil, err
	}
	return &sarv1.ListTeamsResponse{Teams: ts}, nil
}

type incidentService struct {
	sarv1.UnimplementedIncidentServiceServer
	core     *core.Service
	log      *slog.Logger
	draining <-chan struct{}
	recheck  time.Duration // how often a watch stream re-checks its credential
	grace    time.Duration // how long a watch stream rides out a store outage
}

func (s *incidentService) CreateIncident(ctx context.Context, req *sarv1.CreateIncidentRequest) (*sarv1.CreateIncidentResponse, error) {
	inc, err := s.core.CreateIncident(ctx, req)
	if err != nil {
		return nil, err
	}
	return &sarv1.CreateIncidentResponse{Incident: inc}, nil
}

func (s *incidentService) GetIncident(ctx context.Context, req *sarv1.GetIncidentRequest) (*sarv1.GetIncidentResponse, error) {
	inc, err := s.core.GetIncident(ctx, req.GetIncidentId())
	if err != nil {
		return nil, err
	}
	return &sarv1.GetIncidentResponse{Incident: inc}, nil
}

func (s *incidentService) ListIncidents(ctx context.Context, req *sarv1.ListIncidentsRequest) (*sarv1.ListIncidentsResponse, error) {
	incs, next, err := s.core.ListIncidents(ctx, req)
	if err != nil {
		return nil, err
	}
	return &sarv1.ListIncidentsResponse{Incidents: incs, NextPageToken: next}, nil
}

func (s *incidentService) CloseIncident(ctx context.Context, req *sarv1.CloseIncidentRequest) (*sarv1.CloseIncidentResponse, error) {
	inc, err := s.core.CloseIncident(ctx, req)
	if err != nil {
		return nil, err
	}
	return &sarv1.CloseIncidentResponse{Incident: inc}, nil
}

func (s *incidentService) ReportSubjectFound(ctx context.Context, req *sarv1.ReportSubjectFoundRequest) (*sarv1.ReportSubjectFoundResponse, error) {
	inc, n, err := s.core.ReportSubjectFound(ctx, req)
	if err != nil {
		return nil, err
	}
	return &sarv1.ReportSubjectFoundResponse{Incident: inc, TasksCancelled: int32(n)}, nil
}

func (s *incidentService) AssignAgencies(ctx context.Context, req *sarv1.AssignAgenciesRequest) (*sarv1.AssignAgenciesResponse, error) {
	inc, err := s.core.AssignAgencies(ctx, req)
	if err != nil {
		return nil, err
	}
	return &sarv1.AssignAgenciesResponse{Incident: inc}, nil
}

func (s *incidentService) JoinIncident(ctx context.Context, req *sarv1.JoinIncidentRequest) (*sarv1.JoinIncidentResponse, error) {
	return s.core.JoinIncidentFrom(ctx, req, deviceKind(ctx))
}

func (s *incidentService) ListParticipants(ctx context.Context, req *sarv1.ListParticipantsRequest) (*sarv1.ListParticipantsResponse, error) {
	ps, err := s.core.ListParticipants(ctx, req.GetIncidentId())
	if err != nil {
		return nil, err
	}
	return &sarv1.ListParticipantsResponse{Participants: ps}, nil
}

type locationService struct {
	sarv1.UnimplementedLocationServiceServer
	core     *core.Service
	log      *slog.Logger
	drainCtx context.Context // ends when the server begins to shut down
	grace    time.Duration   // how long a device stream rides out a store outage
}

func (s *locationService) ReportFixes(ctx context.Context, req *sarv1.ReportFixesRequest) (*sarv1.ReportFixesResponse, error) {
	ack, err := s.core.Ingest(ctx, auth.FromContext(ctx), req.GetBatch())
	if err != nil {
		return nil, err
	}
	return &sarv1.ReportFixesResponse{Ack: ack}, nil
}

func (s *locationService) GetTrack(ctx context.Context, req *sarv1.GetTrackRequest) (*sarv1.GetTrackResponse, error) {
	fixes, err := s.core.Track(ctx, req)
	if err != nil {
		return nil, err
	}
	return &sarv1.GetTrackResponse{Fixes: fixes}, nil
}

func (s *locationService) ListCellVisits(ctx context.Context, req *sarv1.ListCellVisitsRequest) (*sarv1.ListCellVisitsResponse, error) {
	cells, err := s.core.CellVisits(ctx, req.GetIncidentId())
	if err != nil {
		return nil, err
	}
	return &sarv1.ListCellVisitsResponse{Cells: cells}, nil
}

type searchService struct {
	sarv1.UnimplementedSearchServiceServer
	core *core.Service
}

func (s *searchService) SetSearchPlan(ctx context.Context, req *sarv1.SetSearchPlanRequest) (*sarv1.SetSearchPlanResponse, error) {
	g, err := s.core.SetSearchPlan(ctx, req)
	if err != nil {
		return nil, err
	}
	return &sarv1.SetSearchPlanResponse{Grid: g}, nil
}

func (s *searchService) UpdateSearchSettings(ctx context.Context, req *sarv1.UpdateSearchSettingsRequest) (*sarv1.UpdateSearchSettingsResponse, error) {
	g, err := s.core.UpdateSearchSettings(ctx, req)
	if err != nil {
		return nil, err
	}
	return &sarv1.UpdateSearchSettingsResponse{Grid: g}, nil
}

func (s *searchService) GetSearchGrid(ctx context.Context, req *sarv1.GetSearchGridRequest) (*sarv1.GetSearchGridResponse, error) {
	return s.core.GetSearchGrid(ctx, req)
}

func (s *searchService) AdjustCells(ctx context.Context, req *sarv1.AdjustCellsRequest) (*sarv1.AdjustCellsResponse, error) {
	g, err := s.core.AdjustCells(ctx, req)
	if err != nil {
		return nil, err
	}
	return &sarv1.AdjustCellsResponse{Grid: g}, nil
}

func (s *searchService) RecordClue(ctx context.Context, req *sarv1.RecordClueRequest) (*sarv1.RecordClueResponse, error) {
	g, err := s.core.RecordClue(ctx, req)
	if err != nil {
		return nil, err
	}
	return &sarv1.RecordClueResponse{Grid: g}, nil
}

func (s *searchService) ListSegments(ctx context.Context, req *sarv1.ListSegmentsRequest) (*sarv1.ListSegmentsResponse, error) {
	return s.core.ListSegments(ctx, req)
}

func (s *searchService) SuggestNextTask(ctx context.Context, req *sarv1.SuggestNextTaskRequest) (*sarv1.SuggestNextTaskResponse, error) {
	return s.core.SuggestNextTask(ctx, req)
}

func (s *searchService) AssignSegment(ctx context.Context, req *sarv1.AssignSegmentRequest) (*sarv1.AssignSegmentResponse, error) {
	return s.core.AssignSegment(ctx, req)
}

func (s *searchService) ExportSearchGrid(ctx context.Context, req *sarv1.ExportSearchGridRequest) (*sarv1.ExportSearchGridResponse, error) {
	return s.core.ExportSearchGrid(ctx, req)
}
