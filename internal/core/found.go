package core

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/protobuf/types/known/timestamppb"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/auth"
	"github.com/mountain-sar/sar/internal/sar"
)

// The end of a search: the subject found (the incident stays live for the
// evacuation) and the incident closed. Each is an incident update, then
// the cancellation of the tasks it ends, then a notice to every team on
// the task feed (with a copy of its event per agency). The three are
// separate writes: a repeat of the request (a client retries when it got
// no answer) completes whatever an interrupted one left undone.

// active reports whether an incident still takes reports and tasks
// (open, or subject found during the evacuation).
func active(inc *sarv1.Incident) bool {
	s := inc.GetState()
	return s == sarv1.IncidentState_INCIDENT_STATE_OPEN || s == sarv1.IncidentState_INCIDENT_STATE_SUBJECT_FOUND
}

// errNotActive is the error for a closed incident.
func errNotActive() error {
	return &sar.Error{Kind: sar.KindFailedPrecondition, Message: "incident is closed", Reason: sar.IncidentClosed}
}

// searching returns nil while the search runs; an error once the subject
// was found or the incident closed.
func searching(inc *sarv1.Incident) error {
	switch inc.GetState() {
	case sarv1.IncidentState_INCIDENT_STATE_OPEN:
		return nil
	case sarv1.IncidentState_INCIDENT_STATE_SUBJECT_FOUND:
		return sar.Errorf(sar.KindFailedPrecondition, "the subject was found: the search is over")
	}
	return errNotActive()
}

// ReportSubjectFound records that the subject was found.
func (s *Service) ReportSubjectFound(ctx context.Context, req *sarv1.ReportSubjectFoundRequest) (*sarv1.Incident, int, error) {
	var fv []sar.FieldViolation
	validPoint(&fv, "position", req.GetPosition())
	if _, ok := sarv1.SubjectCondition_name[int32(req.GetCondition())]; !ok {
		fv = append(fv, sar.Field("condition", "INVALID", "unknown condition"))
	}
	text(&fv, "note", req.GetNote(), MaxTaskTextLen, false)
	if len(fv) > 0 {
		return nil, 0, sar.Invalid("invalid report", fv...)
	}
	p, inc, err := s.visibleIncident(ctx, req.GetIncidentId())
	if err != nil {
		return nil, 0, err
	}
	switch p.GetRole() {
	case sarv1.Role_ROLE_ADMIN, sarv1.Role_ROLE_OPERATOR:
		if !auth.CanCommandIncident(p, inc) {
			return nil, 0, sar.NotFound("incident")
		}
	case sarv1.Role_ROLE_RESCUER: // visible: its agency or team takes part
	default:
		return nil, 0, sar.Errorf(sar.KindPermissionDenied, "rescuers of the incident's teams and its operators report the subject found")
	}
	var ev *sarv1.Event
	out, err := s.st.UpdateIncident(ctx, inc.GetId(), func(inc *sarv1.Incident) (*sarv1.Event, error) {
		switch inc.GetState() {
		case sarv1.IncidentState_INCIDENT_STATE_SUBJECT_FOUND:
			ev = nil
			return nil, errNoChange // a repeat: complete what it started
		case sarv1.IncidentState_INCIDENT_STATE_OPEN:
		default:
			return nil, errNotActive()
		}
		now := timestamppb.New(s.now())
		f := &sarv1.SubjectFound{Time: now, Position: req.GetPosition(), Condition: req.GetCondition(), Note: strings.TrimSpace(req.GetNote()),
			ReportedBy: p.GetCredentialId(), ReportedByName: p.GetDisplayName()}
		if p.GetRole() == sarv1.Role_ROLE_RESCUER {
			f.Team = &sarv1.TeamRef{AgencyId: p.GetAgencyId(), TeamId: p.GetTeamId()}
		}
		inc.State, inc.Found, inc.UpdateTime = sarv1.IncidentState_INCIDENT_STATE_SUBJECT_FOUND, f, now
		ev = s.lifecycleEvent(inc, sarv1.IncidentChange_INCIDENT_CHANGE_SUBJECT_FOUND)
		return ev, nil
	})
	if errors.Is(err, errNoChange) {
		if out, _, err = s.st.GetIncident(ctx, inc.GetId()); err != nil {
			return nil, 0, err
		}
	} else if err != nil {
		return nil, 0, err
	}
	s.incs.del(inc.GetId())
	if ev != nil {
		s.deliver(ctx, ev)
		s.log.Warn("subject found", "incident", inc.GetId(), "condition", req.GetCondition().String(), "by", p.GetCredentialId())
	}
	reason := "subject found"
	if note := out.GetFound().GetNote(); note != "" {
		reason += ": " + note
	}
	foundAt := out.GetFound().GetTime().AsTime()
	n, err := s.endTasks(ctx, p, out, reason, func(t *sarv1.Task) bool {
		// Returns to base go on; tasks made after the report are the
		// evacuation's (a repeated report must not end them).
		return t.GetKind() == sarv1.TaskKind_TASK_KIND_RETURN_TO_BASE || !t.GetCreateTime().AsTime().Before(foundAt)
	})
	if err != nil {
		return nil, n, err
	}
	if err := s.noticeOnce(ctx, out, sarv1.TaskNoticeKind_TASK_NOTICE_KIND_SUBJECT_FOUND); err != nil {
		return nil, n, err
	}
	return out, n, nil
}

// endTasks cancels an incident's tasks that are not final (but those
// keep wants), with reason. It returns how many it cancelled.
func (s *Service) endTasks(ctx context.Context, p *sarv1.Principal, inc *sarv1.Incident, reason string, keep func(*sarv1.Task) bool) (int, error) {
	tasks, err := s.st.Tasks(ctx, inc.GetId())
	if err != nil {
		return 0, err
	}
	n := 0
	for _, t := range tasks {
		if finalTask(t.GetState()) || (keep != nil && keep(t)) {
			continue
		}
		done, err := s.cancelForEnd(ctx, p, inc, t.GetId(), reason, keep)
		if err != nil {
			return n, fmt.Errorf("cancelling task %s: %w", t.GetId(), err)
		}
		if done {
			n++
		}
	}
	return n, nil
}

func (s *Service) cancelForEnd(ctx context.Context, p *sarv1.Principal, inc *sarv1.Incident, taskID, reason string, keep func(*sarv1.Task) bool) (bool, error) {
	for attempt := 0; attempt < taskWriteTries; attempt++ {
		t, err := s.st.Task(ctx, inc.GetId(), taskID)
		if err != nil {
			return false, err
		}
		if finalTask(t.GetState()) || (keep != nil && keep(t)) {
			return false, nil
		}
		beforeState := t.GetState()
		w := sar.TaskWrite{IncidentID: inc.GetId(), Task: t, ExpectVersion: t.GetVersion(), FeedTeam: teamRefOf(t.GetTeam()),
			AllowClosed: true}
		t.OfferDeadline = nil
		tr := s.transition(t, p, sarv1.TaskState_TASK_STATE_CANCELLED, reason)
		// The segments keep their last assignment: with the search over,
		// they are the record of who was sent where.
		w.Event = s.taskEvent(inc.GetId(), t, tr)
		_, err = s.putTask(ctx, w)
		if errors.Is(err, sar.ErrTaskConflict) || errors.Is(err, sar.ErrSegmentsConflict) {
			continue
		}
		if err == nil {
			s.afterTaskChange(ctx, beforeState, t.GetTeam(), t)
		}
		return err == nil, err
	}
	return false, sar.ErrTaskConflict
}

// noticeOnce writes a notice unless it was written already (by an earlier
// run of the same request).
func (s *Service) noticeOnce(ctx context.Context, inc *sarv1.Incident, kind sarv1.TaskNoticeKind) error {
	sent, err := s.st.NoticeSent(ctx, inc.GetId(), kind)
	if err != nil || sent {
		return err
	}
	return s.notice(ctx, inc, kind)
}

// notice tells every team (the task feed, and each agency on NATS).
func (s *Service) notice(ctx context.Context, inc *sarv1.Incident, kind sarv1.TaskNoticeKind) error {
	var evs []*sarv1.Event
	for _, ev := range s.noticeEvents(inc, nil, kind, nil) {
		ev.GetTaskChanged().Incident = inc
		evs = append(evs, ev)
	}
	if _, err := s.st.PutNotice(ctx, kind, inc, evs...); err != nil {
		return err
	}
	s.deliver(ctx, evs...)
	return nil
}
