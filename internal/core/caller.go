package core

import (
	"context"
	"math"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/geo"
	"github.com/mountain-sar/sar/internal/auth"
	"github.com/mountain-sar/sar/internal/sar"
)

// The caller's status: what the lost person's page shows. It is narrow on
// purpose: whether the search runs, whether teams are on the way and how
// far the nearest rescuer is (rounded to 100 m, and only from positions
// fresher than 30 minutes), found, closed; never who, where or what else.

// CallerStatus limits.
const (
	callerDistanceStep = 100.0
	callerFreshFix     = 30 * time.Minute
)

// CallerStatus computes the caller's status of an incident; the caller
// (share link) of the incident and its operators.
func (s *Service) CallerStatus(ctx context.Context, incidentID string) (*sarv1.CallerStatus, error) {
	p, inc, err := s.visibleIncident(ctx, incidentID)
	if err != nil {
		return nil, err
	}
	callerPart := p.GetParticipantId()
	switch p.GetRole() {
	case sarv1.Role_ROLE_CALLER:
	case sarv1.Role_ROLE_ADMIN, sarv1.Role_ROLE_OPERATOR:
		if !auth.CanCommandIncident(p, inc) {
			return nil, sar.NotFound("incident")
		}
		callerPart = "" // the incident's caller, whichever
	default:
		return nil, sar.Errorf(sar.KindPermissionDenied, "the caller status is for the lost person's page")
	}
	return s.callerStatus(ctx, inc, callerPart)
}

func (s *Service) callerStatus(ctx context.Context, inc *sarv1.Incident, callerPart string) (*sarv1.CallerStatus, error) {
	now := s.now()
	st := &sarv1.CallerStatus{UpdateTime: timestamppb.New(now)}
	switch inc.GetState() {
	case sarv1.IncidentState_INCIDENT_STATE_CLOSED:
		st.Phase = sarv1.CallerPhase_CALLER_PHASE_CLOSED
		return st, nil
	case sarv1.IncidentState_INCIDENT_STATE_SUBJECT_FOUND:
		st.Phase = sarv1.CallerPhase_CALLER_PHASE_FOUND
	default:
		st.Phase = sarv1.CallerPhase_CALLER_PHASE_SEARCHING
	}
	tasks, err := s.st.Tasks(ctx, inc.GetId())
	if err != nil {
		return nil, err
	}
	busy := map[string]bool{}
	for _, t := range tasks {
		if t.GetState() == sarv1.TaskState_TASK_STATE_ACCEPTED || t.GetState() == sarv1.TaskState_TASK_STATE_IN_PROGRESS {
			busy[teamRefOf(t.GetTeam())] = true
		}
	}
	st.TeamsOnTheWay = int32(len(busy))
	if st.Phase == sarv1.CallerPhase_CALLER_PHASE_SEARCHING && len(busy) > 0 {
		st.Phase = sarv1.CallerPhase_CALLER_PHASE_RESCUERS_ON_THE_WAY
	}
	parts, err := s.st.Participants(ctx, inc.GetId())
	if err != nil {
		return nil, err
	}
	var caller *sarv1.LocationFix
	for _, pt := range parts {
		if pt.GetKind() != sarv1.ParticipantKind_PARTICIPANT_KIND_CALLER || (callerPart != "" && pt.GetId() != callerPart) {
			continue
		}
		if f := pt.GetLastFix(); f != nil && (caller == nil || f.GetTime().AsTime().After(caller.GetTime().AsTime())) {
			caller = f
		}
	}
	if caller == nil {
		return st, nil
	}
	st.CallerLastFixTime = caller.GetTime()
	if now.Sub(caller.GetTime().AsTime()) > callerFreshFix {
		return st, nil
	}
	nearest := math.Inf(1)
	for _, pt := range parts {
		f := pt.GetLastFix()
		if pt.GetKind() != sarv1.ParticipantKind_PARTICIPANT_KIND_RESCUER || f == nil || now.Sub(f.GetTime().AsTime()) > callerFreshFix {
			continue
		}
		nearest = min(nearest, geo.DistanceM(caller.GetLat(), caller.GetLng(), f.GetLat(), f.GetLng()))
	}
	if !math.IsInf(nearest, 1) {
		d := math.Max(callerDistanceStep, math.Round(nearest/callerDistanceStep)*callerDistanceStep)
		st.NearestRescuerM = &d
	}
	return st, nil
}
