package core

import (
	"cmp"
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/geo"
	"github.com/mountain-sar/sar/internal/auth"
	"github.com/mountain-sar/sar/internal/sar"
)

// text checks a free-text field's length.
func text(fv *[]sar.FieldViolation, field, v string, max int, required bool) {
	n := utf8.RuneCountInString(v)
	switch {
	case required && strings.TrimSpace(v) == "":
		*fv = append(*fv, sar.Field(field, "REQUIRED", "%s is required", field))
	case n > max:
		*fv = append(*fv, sar.Field(field, "TOO_LONG", "at most %d characters", max))
	}
}

// CreateIncident opens an incident.
func (s *Service) CreateIncident(ctx context.Context, req *sarv1.CreateIncidentRequest) (*sarv1.Incident, error) {
	p, err := auth.Require(ctx, sarv1.Role_ROLE_OPERATOR, sarv1.Role_ROLE_ADMIN)
	if err != nil {
		return nil, err
	}
	var fv []sar.FieldViolation
	text(&fv, "title", req.GetTitle(), sar.MaxTitleLen, true)
	jur := req.GetJurisdiction()
	if p.GetRole() == sarv1.Role_ROLE_OPERATOR {
		if jur == "" {
			jur = p.GetJurisdiction()
		}
		if jur != p.GetJurisdiction() {
			return nil, sar.Errorf(sar.KindPermissionDenied, "operators open incidents in their own jurisdiction only")
		}
	}
	if !sar.ValidSlug(jur) {
		fv = append(fv, sar.Field("jurisdiction", "INVALID", "jurisdiction is required: 1-63 characters of a-z, 0-9, '-' and '_'"))
	}
	now := s.now()
	if ipp := req.GetInitialPlanningPoint(); ipp != nil {
		if ipp.GetPosition() == nil || !geo.ValidPoint(ipp.GetPosition().GetLat(), ipp.GetPosition().GetLng()) ||
			!finite(ipp.GetPosition().GetLat()) || !finite(ipp.GetPosition().GetLng()) {
			fv = append(fv, sar.Field("initial_planning_point.position", "OUT_OF_RANGE", "a latitude from -90 to 90 and a longitude from -180 to 180 are required"))
		}
		if a := ipp.GetAccuracyM(); !finite(a) || a < 0 || a > sar.MaxAccuracyM {
			fv = append(fv, sar.Field("initial_planning_point.accuracy_m", "OUT_OF_RANGE", "accuracy must be from 0 to %d metres", sar.MaxAccuracyM))
		}
		if t := ipp.GetTime(); t != nil && (t.CheckValid() != nil || t.AsTime().After(now.Add(s.cfg.FutureSkew))) {
			fv = append(fv, sar.Field("initial_planning_point.time", "IN_FUTURE", "time must be a valid time, not in the future"))
		}
		text(&fv, "initial_planning_point.description", ipp.GetDescription(), sar.MaxTextLen, false)
	}
	subj := req.GetSubject()
	if subj == nil {
		subj = &sarv1.SubjectProfile{}
	}
	subj = proto.Clone(subj).(*sarv1.SubjectProfile)
	if subj.GetNumberOfPeople() == 0 {
		subj.NumberOfPeople = 1
	}
	if n := subj.GetNumberOfPeople(); n < 1 || n > 1000 {
		fv = append(fv, sar.Field("subject.number_of_people", "OUT_OF_RANGE", "number of people must be from 1 to 1000"))
	}
	if t := subj.GetLastSeenTime(); t != nil && (t.CheckValid() != nil || t.AsTime().After(now.Add(s.cfg.FutureSkew))) {
		fv = append(fv, sar.Field("subject.last_seen_time", "IN_FUTURE", "last seen time must be a valid time, not in the future"))
	}
	if subj.AgeYears != nil && (subj.GetAgeYears() < 0 || subj.GetAgeYears() > 130) {
		fv = append(fv, sar.Field("subject.age_years", "OUT_OF_RANGE", "age must be from 0 to 130"))
	}
	validSubject(&fv, "subject", subj)
	text(&fv, "subject.description", subj.GetDescription(), sar.MaxTextLen, false)
	res := int(req.GetSearchResolution())
	if res == 0 {
		res = s.cfg.Resolution
	}
	if res < 5 || res > 12 {
		fv = append(fv, sar.Field("search_resolution", "OUT_OF_RANGE", "search resolution must be from 5 to 12 (0 for the default)"))
	}
	if len(req.GetRequestId()) > sar.MaxRequestIDLen || strings.ContainsAny(req.GetRequestId(), "{}") {
		fv = append(fv, sar.Field("request_id", "INVALID", "at most %d characters, no braces", sar.MaxRequestIDLen))
	}
	agencies, err := s.checkAgencies(ctx, &fv, "agency_ids", req.GetAgencyIds())
	if err != nil {
		return nil, err
	}
	if len(fv) > 0 {
		return nil, sar.Invalid("invalid incident", fv...)
	}
	inc := &sarv1.Incident{
		Id: sar.NewID(), Title: strings.TrimSpace(req.GetTitle()), Jurisdiction: jur,
		State: sarv1.IncidentState_INCIDENT_STATE_OPEN, InitialPlanningPoint: req.GetInitialPlanningPoint(),
		Subject: subj, SearchResolution: int32(res), AgencyIds: agencies,
		CreateTime: timestamppb.New(now), UpdateTime: timestamppb.New(now), CreatedBy: p.GetCredentialId(),
	}
	ev := s.lifecycleEvent(inc, sarv1.IncidentChange_INCIDENT_CHANGE_CREATED)
	stored, created, err := s.st.CreateIncident(ctx, inc, req.GetRequestId(), ev)
	if err != nil {
		return nil, err
	}
	if created {
		s.deliver(ctx, ev)
		s.log.Info("incident opened", "incident", inc.GetId(), "jurisdiction", jur, "by", p.GetCredentialId())
	}
	return stored, nil
}

// checkAgencies validates agency ids: they must exist, and may belong to
// any jurisdiction (neighbours help each other). It returns them sorted
// without duplicates.
func (s *Service) checkAgencies(ctx context.Context, fv *[]sar.FieldViolation, field string, ids []string) ([]string, error) {
	out := slices.Clone(ids)
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) > 100 {
		*fv = append(*fv, sar.Field(field, "TOO_MANY", "at most 100 agencies"))
		return nil, nil
	}
	for i, id := range out {
		if _, err := s.st.Agency(ctx, id); err != nil {
			if sar.KindOf(err) != sar.KindNotFound {
				return nil, err
			}
			*fv = append(*fv, sar.Field(field, "NOT_FOUND", "agency %d (%q) does not exist", i, id))
		}
	}
	return out, nil
}

func (s *Service) lifecycleEvent(inc *sarv1.Incident, change sarv1.IncidentChange) *sarv1.Event {
	ev := s.newEvent(inc.GetId())
	ev.Payload = &sarv1.Event_IncidentChanged{IncidentChanged: &sarv1.IncidentChangedEvent{Change: change, Incident: inc}}
	return ev
}

// visibleIncident returns the incident if the caller may see it, else the
// same NotFound as for an incident that does not exist.
func (s *Service) visibleIncident(ctx context.Context, id string) (*sarv1.Principal, *sarv1.Incident, error) {
	p, err := auth.Require(ctx, sarv1.Role_ROLE_ADMIN, sarv1.Role_ROLE_OPERATOR, sarv1.Role_ROLE_RESCUER, sarv1.Role_ROLE_CALLER)
	if err != nil {
		return nil, nil, err
	}
	if !sar.ValidID(id) {
		return nil, nil, sar.Invalid("invalid incident id", sar.Field("incident_id", "INVALID", "incident_id must be an incident id"))
	}
	inc, _, err := s.st.GetIncident(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	if !auth.CanSeeIncident(p, inc) {
		return nil, nil, sar.NotFound("incident")
	}
	return p, inc, nil
}

// commandedIncident is visibleIncident for changes and watching: only its
// commanders; others get NotFound or PermissionDenied without details.
func (s *Service) commandedIncident(ctx context.Context, id string) (*sarv1.Principal, *sarv1.Incident, error) {
	p, inc, err := s.visibleIncident(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	if !auth.CanCommandIncident(p, inc) {
		return nil, nil, sar.Errorf(sar.KindPermissionDenied, "only the incident's operators may do this")
	}
	return p, inc, nil
}

// GetIncident returns an incident the caller may see. Callers (share
// links) get only the fields that concern them.
func (s *Service) GetIncident(ctx context.Context, id string) (*sarv1.Incident, error) {
	p, inc, err := s.visibleIncident(ctx, id)
	if err != nil {
		return nil, err
	}
	if p.GetRole() == sarv1.Role_ROLE_CALLER {
		return &sarv1.Incident{Id: inc.GetId(), State: inc.GetState(), SearchResolution: inc.GetSearchResolution(),
			CreateTime: inc.GetCreateTime(), CloseTime: inc.GetCloseTime()}, nil
	}
	return inc, nil
}

// ListIncidents lists what the caller may see, newest first.
func (s *Service) ListIncidents(ctx context.Context, req *sarv1.ListIncidentsRequest) ([]*sarv1.Incident, string, error) {
	p, err := auth.Require(ctx, sarv1.Role_ROLE_ADMIN, sarv1.Role_ROLE_OPERATOR, sarv1.Role_ROLE_RESCUER)
	if err != nil {
		return nil, "", err
	}
	size := int(req.GetPageSize())
	if size == 0 {
		size = 50
	}
	if size < 0 || size > 500 {
		return nil, "", sar.Invalid("invalid page size", sar.Field("page_size", "OUT_OF_RANGE", "page size must be from 1 to 500"))
	}
	if t := req.GetPageToken(); t != "" && !sar.ValidID(t) {
		return nil, "", sar.Invalid("invalid page token", sar.Field("page_token", "INVALID", "not a page token of this API"))
	}
	var ix sar.IncidentIndex
	switch p.GetRole() {
	case sarv1.Role_ROLE_ADMIN:
		ix.All, ix.Jurisdiction = req.GetJurisdiction() == "", req.GetJurisdiction()
	case sarv1.Role_ROLE_OPERATOR:
		if j := req.GetJurisdiction(); j != "" && j != p.GetJurisdiction() {
			return nil, "", nil // nothing of another jurisdiction is visible
		}
		ix.Jurisdiction = p.GetJurisdiction()
	case sarv1.Role_ROLE_RESCUER:
		ix.Agency = p.GetAgencyId()
		if p.GetTeamId() != "" {
			ix.TeamRef = auth.TeamRef(p.GetAgencyId(), p.GetTeamId())
		}
	}
	incs, next, err := s.st.ListIncidents(ctx, ix, req.GetPageToken(), size)
	if err != nil {
		return nil, "", err
	}
	out := incs[:0]
	for _, inc := range incs {
		if !auth.CanSeeIncident(p, inc) {
			continue
		}
		if st := req.GetState(); st != sarv1.IncidentState_INCIDENT_STATE_UNSPECIFIED && inc.GetState() != st {
			continue
		}
		out = append(out, inc)
	}
	return out, next, nil
}

// CloseIncident closes an open incident.
func (s *Service) CloseIncident(ctx context.Context, req *sarv1.CloseIncidentRequest) (*sarv1.Incident, error) {
	p, inc, err := s.commandedIncident(ctx, req.GetIncidentId())
	if err != nil {
		return nil, err
	}
	var fv []sar.FieldViolation
	if _, ok := sarv1.IncidentOutcome_name[int32(req.GetOutcome())]; !ok || req.GetOutcome() == sarv1.IncidentOutcome_INCIDENT_OUTCOME_UNSPECIFIED {
		fv = append(fv, sar.Field("outcome", "REQUIRED", "outcome is required"))
	}
	text(&fv, "note", req.GetNote(), sar.MaxTextLen, false)
	if len(fv) > 0 {
		return nil, sar.Invalid("invalid close", fv...)
	}
	var ev *sarv1.Event
	out, err := s.st.UpdateIncident(ctx, inc.GetId(), func(inc *sarv1.Incident) (*sarv1.Event, error) {
		if inc.GetState() == sarv1.IncidentState_INCIDENT_STATE_CLOSED {
			return nil, sar.Errorf(sar.KindFailedPrecondition, "incident is closed already")
		}
		now := timestamppb.New(s.now())
		inc.State, inc.Outcome, inc.CloseNote, inc.CloseTime, inc.UpdateTime =
			sarv1.IncidentState_INCIDENT_STATE_CLOSED, req.GetOutcome(), req.GetNote(), now, now
		if f := inc.GetFound(); f != nil {
			// The record stays; where exactly and the note do not.
			f.Note = ""
			if ll := f.GetPosition(); ll != nil {
				f.Position = &sarv1.LatLng{Lat: math.Round(ll.GetLat()*100) / 100, Lng: math.Round(ll.GetLng()*100) / 100}
			}
		}
		ev = s.lifecycleEvent(inc, sarv1.IncidentChange_INCIDENT_CHANGE_CLOSED)
		return ev, nil
	})
	if err != nil {
		if sar.KindOf(err) == sar.KindFailedPrecondition {
			// Closed already: complete what an interrupted close left open.
			if cur, _, gerr := s.st.GetIncident(ctx, inc.GetId()); gerr == nil && cur.GetState() == sarv1.IncidentState_INCIDENT_STATE_CLOSED {
				if _, err := s.endTasks(ctx, p, cur, "incident closed", nil); err != nil {
					s.log.Warn("completing a close: tasks left open", "incident", inc.GetId(), "err", err)
				} else if err := s.noticeOnce(ctx, cur, sarv1.TaskNoticeKind_TASK_NOTICE_KIND_INCIDENT_CLOSED); err != nil {
					s.log.Warn("completing a close: notice not written", "incident", inc.GetId(), "err", err)
				}
			}
		}
		return nil, err
	}
	s.incs.del(inc.GetId())
	s.deliver(ctx, ev)
	s.log.Info("incident closed", "incident", inc.GetId(), "outcome", req.GetOutcome().String(), "by", p.GetCredentialId())
	reason := "incident closed"
	if note := strings.TrimSpace(req.GetNote()); note != "" {
		reason += ": " + note
	}
	if _, err := s.endTasks(ctx, p, out, reason, nil); err != nil {
		return nil, err
	}
	if err := s.noticeOnce(ctx, out, sarv1.TaskNoticeKind_TASK_NOTICE_KIND_INCIDENT_CLOSED); err != nil {
		return nil, err
	}
	return out, nil
}

// AssignAgencies lets agencies or teams take part in an incident.
func (s *Service) AssignAgencies(ctx context.Context, req *sarv1.AssignAgenciesRequest) (*sarv1.Incident, error) {
	_, inc, err := s.commandedIncident(ctx, req.GetIncidentId())
	if err != nil {
		return nil, err
	}
	var fv []sar.FieldViolation
	agencies, err := s.checkAgencies(ctx, &fv, "agency_ids", req.GetAgencyIds())
	if err != nil {
		return nil, err
	}
	teams := slices.Clone(req.GetTeamRefs())
	slices.Sort(teams)
	teams = slices.Compact(teams)
	for i, ref := range teams {
		a, t, ok := strings.Cut(ref, "/")
		if !ok || !sar.ValidSlug(a) || !sar.ValidSlug(t) {
			fv = append(fv, sar.Field("team_refs", "INVALID", "team ref %d must be \"agency_id/team_id\"", i))
			continue
		}
		exists, err := s.st.TeamExists(ctx, a, t)
		if err != nil {
			return nil, err
		}
		if !exists {
			fv = append(fv, sar.Field("team_refs", "NOT_FOUND", "team %d (%q) does not exist", i, ref))
		}
	}
	if len(agencies)+len(teams) == 0 {
		fv = append(fv, sar.Field("agency_ids", "REQUIRED", "name at least one agency or team"))
	}
	if len(fv) > 0 {
		return nil, sar.Invalid("invalid assignment", fv...)
	}
	return s.changeActiveIncident(ctx, inc.GetId(), sarv1.IncidentChange_INCIDENT_CHANGE_AGENCIES_ASSIGNED, func(inc *sarv1.Incident) {
		inc.AgencyIds = union(inc.GetAgencyIds(), agencies)
		inc.TeamRefs = union(inc.GetTeamRefs(), teams)
	})
}

// changeActiveIncident applies change to an incident that is still active
// (compare-and-set), announces it with a lifecycle event of kind, and
// drops the cached copy.
func (s *Service) changeActiveIncident(ctx context.Context, id string, kind sarv1.IncidentChange, change func(*sarv1.Incident)) (*sarv1.Incident, error) {
	var ev *sarv1.Event
	out, err := s.st.UpdateIncident(ctx, id, func(inc *sarv1.Incident) (*sarv1.Event, error) {
		if !active(inc) {
			return nil, errNotActive()
		}
		change(inc)
		inc.UpdateTime = timestamppb.New(s.now())
		ev = s.lifecycleEvent(inc, kind)
		return ev, nil
	})
	if err != nil {
		return nil, err
	}
	s.incs.del(id)
	s.deliver(ctx, ev)
	return out, nil
}

func union(a, b []string) []string {
	out := append(slices.Clone(a), b...)
	slices.Sort(out)
	return slices.Compact(out)
}

// JoinIncident binds the caller's device to its participant.
func (s *Service) JoinIncident(ctx context.Context, req *sarv1.JoinIncidentRequest) (*sarv1.JoinIncidentResponse, error) {
	return s.JoinIncidentFrom(ctx, req, "")
}

// JoinIncidentFrom is JoinIncident with the kind of device the request
// came from (DeviceKind of its user agent): a caller's first join from a
// device is the share link being opened on it.
func (s *Service) JoinIncidentFrom(ctx context.Context, req *sarv1.JoinIncidentRequest, deviceKind string) (*sarv1.JoinIncidentResponse, error) {
	p, inc, err := s.visibleIncident(ctx, req.GetIncidentId())
	if err != nil {
		return nil, err
	}
	var fv []sar.FieldViolation
	if !sar.ValidDeviceID(req.GetDeviceId()) {
		fv = append(fv, sar.Field("device_id", "INVALID", "device_id must be 1-64 characters of A-Z, a-z, 0-9, '-' and '_'"))
	}
	text(&fv, "display_name", req.GetDisplayName(), sar.MaxNameLen, false)
	st := req.GetSearcherType()
	switch {
	case st != "" && p.GetRole() != sarv1.Role_ROLE_RESCUER:
		fv = append(fv, sar.Field("searcher_type", "RESCUERS_ONLY", "only rescuers have a searcher type"))
	case st != "" && !searcherType.MatchString(st):
		fv = append(fv, sar.Field("searcher_type", "INVALID", "searcher_type must be 1-32 characters of a-z, 0-9, '-' and '_'"))
	}
	if len(fv) > 0 {
		return nil, sar.Invalid("invalid join", fv...)
	}
	args := sar.JoinArgs{IncidentID: inc.GetId(), DeviceID: req.GetDeviceId(), CredentialID: p.GetCredentialId(), SearcherType: st}
	switch p.GetRole() {
	case sarv1.Role_ROLE_CALLER:
		args.CallerPartID = p.GetParticipantId()
		cur, err := s.st.Participant(ctx, inc.GetId(), p.GetParticipantId())
		if err != nil {
			return nil, err
		}
		opened := proto.Clone(cur).(*sarv1.Participant)
		opened.SearcherType, opened.DeviceIds, opened.LastFix = "", nil, nil
		opened.LinkState, opened.DeviceKind = sarv1.CallerLinkState_CALLER_LINK_STATE_OPENED, cmp.Or(deviceKind, "other")
		if opened.LinkOpenTime == nil {
			opened.LinkOpenTime = timestamppb.New(s.now())
		}
		args.Opened = opened
		args.Event = s.newEvent(inc.GetId())
		args.Event.Payload = &sarv1.Event_ParticipantJoined{ParticipantJoined: &sarv1.ParticipantJoinedEvent{
			Participant: withDevice(opened, req.GetDeviceId()), Change: sarv1.ParticipantChange_PARTICIPANT_CHANGE_LINK_OPENED}}
	case sarv1.Role_ROLE_RESCUER:
		name := strings.TrimSpace(req.GetDisplayName())
		if name == "" {
			name = p.GetDisplayName()
		}
		args.New = &sarv1.Participant{Id: sar.NewID(), IncidentId: inc.GetId(), Kind: sarv1.ParticipantKind_PARTICIPANT_KIND_RESCUER,
			DisplayName: name, AgencyId: p.GetAgencyId(), TeamId: p.GetTeamId(), JoinTime: timestamppb.New(s.now()),
			SearcherType: cmp.Or(st, SearcherFoot)}
		args.NewSearcherType = args.New.GetSearcherType()
		args.Event = s.newEvent(inc.GetId())
		args.Event.Payload = &sarv1.Event_ParticipantJoined{ParticipantJoined: &sarv1.ParticipantJoinedEvent{
			Participant: withDevice(args.New, req.GetDeviceId()), Change: sarv1.ParticipantChange_PARTICIPANT_CHANGE_JOINED}}
	default:
		return nil, sar.Errorf(sar.KindPermissionDenied, "only rescuer and caller devices join incidents")
	}
	res, err := s.st.Join(ctx, args)
	if errors.Is(err, sar.ErrDeviceTaken) && p.GetRole() == sarv1.Role_ROLE_RESCUER {
		if from := s.rebindable(ctx, p, inc.GetId(), req.GetDeviceId()); from != "" {
			args.RebindFrom = from
			res, err = s.st.Join(ctx, args)
		}
	}
	if err != nil {
		return nil, err
	}
	if res.Created {
		s.deliver(ctx, args.Event)
		if args.Opened != nil {
			s.log.Info("share link opened", "incident", inc.GetId(), "participant", args.CallerPartID, "device_kind", args.Opened.GetDeviceKind())
		}
	}
	return &sarv1.JoinIncidentResponse{Participant: withDevice(res.Participant, req.GetDeviceId()), AckedThrough: res.AckedThrough,
		ServerTime: timestamppb.New(s.now())}, nil
}

// rebindable returns the participant a rescuer may take a device from: one
// of the same agency whose credential has been revoked or has expired (a
// phone whose credential was re-issued mid-incident). A device of a
// participant whose credential still works is never taken.
func (s *Service) rebindable(ctx context.Context, p *sarv1.Principal, incidentID, deviceID string) string {
	pid, cred, err := s.st.DeviceBinding(ctx, incidentID, deviceID)
	if err != nil || pid == "" || cred == "" {
		return ""
	}
	if _, _, err := s.st.Credential(ctx, cred); sar.KindOf(err) != sar.KindNotFound {
		return "" // still valid, or unknown because Redis failed
	}
	old, err := s.st.Participant(ctx, incidentID, pid)
	if err != nil || old.GetAgencyId() != p.GetAgencyId() {
		return ""
	}
	s.log.Info("device moved to a re-issued credential", "incident", incidentID, "device", deviceID, "from", pid, "credential", p.GetCredentialId())
	return pid
}

func withDevice(p *sarv1.Participant, device string) *sarv1.Participant {
	c := proto.Clone(p).(*sarv1.Participant)
	c.DeviceIds = []string{device}
	return c
}

// ListParticipants lists an incident's participants with positions.
func (s *Service) ListParticipants(ctx context.Context, id string) ([]*sarv1.Participant, error) {
	p, inc, err := s.visibleIncident(ctx, id)
	if err != nil {
		return nil, err
	}
	parts, err := s.st.Participants(ctx, inc.GetId())
	if err != nil {
		return nil, err
	}
	out := parts[:0]
	for _, pt := range parts {
		if auth.CanReadPositions(p, inc, pt.GetId()) {
			out = append(out, pt)
		}
	}
	return out, nil
}

// Snapshot returns the state a watcher starts from.
func (s *Service) Snapshot(ctx context.Context, inc *sarv1.Incident) (*sarv1.IncidentSnapshot, error) {
	parts, err := s.st.Participants(ctx, inc.GetId())
	if err != nil {
		return nil, err
	}
	return &sarv1.IncidentSnapshot{Incident: inc, Participants: parts}, nil
}

// RecheckWatch checks again that a watch stream's credential is valid and
// still commands the incident (revocation, expiry, reassignment).
func (s *Service) RecheckWatch(ctx context.Context, c Presented, incidentID string) error {
	p, err := s.Reauthenticate(ctx, c)
	if err != nil {
		return err
	}
	inc, _, err := s.st.GetIncident(ctx, incidentID)
	if err != nil {
		return err
	}
	if !auth.CanCommandIncident(p, inc) {
		return sar.Errorf(sar.KindPermissionDenied, "the credential no longer commands this incident")
	}
	return nil
}

// StartWatch authorizes a watcher of an incident.
func (s *Service) StartWatch(ctx context.Context, id string) (*sarv1.Incident, error) {
	_, inc, err := s.commandedIncident(ctx, id)
	return inc, err
}

// Track returns a participant's breadcrumbs.
func (s *Service) Track(ctx context.Context, req *sarv1.GetTrackRequest) ([]*sarv1.LocationFix, error) {
	p, inc, err := s.visibleIncident(ctx, req.GetIncidentId())
	if err != nil {
		return nil, err
	}
	if !sar.ValidID(req.GetParticipantId()) || !auth.CanReadPositions(p, inc, req.GetParticipantId()) {
		return nil, sar.NotFound("participant")
	}
	limit := int(req.GetLimit())
	if limit < 0 || limit > s.cfg.TrackMax {
		return nil, sar.Invalid("invalid limit", sar.Field("limit", "OUT_OF_RANGE", "limit must be from 0 to %d", s.cfg.TrackMax))
	}
	if limit == 0 {
		limit = s.cfg.TrackMax
	}
	var since int64
	if t := req.GetStartTime(); t != nil {
		since = t.AsTime().UnixMilli()
	}
	if _, err := s.st.Participant(ctx, inc.GetId(), req.GetParticipantId()); err != nil {
		return nil, err
	}
	return s.st.Track(ctx, inc.GetId(), req.GetParticipantId(), since, limit)
}

// CellVisits returns per-cell visit counts.
func (s *Service) CellVisits(ctx context.Context, id string) ([]*sarv1.CellVisit, error) {
	p, inc, err := s.visibleIncident(ctx, id)
	if err != nil {
		return nil, err
	}
	if p.GetRole() == sarv1.Role_ROLE_CALLER {
		return nil, sar.Errorf(sar.KindPermissionDenied, "a caller credential may not do this")
	}
	cells, err := s.st.CellVisits(ctx, inc.GetId())
	if err != nil {
		return nil, err
	}
	out := make([]*sarv1.CellVisit, len(cells))
	for i, c := range cells {
		out[i] = &sarv1.CellVisit{Cell: c.Cell, Fixes: c.Fixes, LastTime: timestamppb.New(timeMs(c.LastTimeMs))}
	}
	return out, nil
}
