package core

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/geo"
	"github.com/mountain-sar/sar/internal/sar"
)

// Escalation: an offer not answered by its deadline goes to the next
// available team, and after the second missed offer (or with no team
// left) the task becomes unanswered, an alert for the console. Deadlines
// are data (a sorted set per incident, written with the task), not
// goroutines: every replica sweeps them, and the compare-and-set on the
// task's version lets exactly one escalate each missed offer; a replica
// that dies loses nothing, the others sweep what it left.

// MaxMissedOffers is how many offers of a task may lapse before it is
// raised to the console.
const MaxMissedOffers = 2

// EscalateDue escalates every offer whose deadline has passed and returns
// how many it escalated (offers another replica escalated first, or that
// were answered meanwhile, are skipped).
func (s *Service) EscalateDue(ctx context.Context) (int, error) {
	due, err := s.st.DueTasks(ctx, s.now().UnixMilli())
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for incidentID, ids := range due {
		for _, id := range ids {
			done, err := s.escalate(ctx, incidentID, id)
			if err != nil {
				errs = append(errs, fmt.Errorf("task %s of %s: %w", id, incidentID, err))
				continue
			}
			if done {
				n++
			}
		}
	}
	return n, errors.Join(errs...)
}

// RunEscalations sweeps due offers every interval until ctx ends, backing
// off while the store fails.
func (s *Service) RunEscalations(ctx context.Context, every time.Duration) {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval, bo.MaxInterval = every, 30*every
	wait := every
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		n, err := s.EscalateDue(ctx)
		if n > 0 {
			s.met.Escalations.Add(float64(n))
		}
		if err != nil && ctx.Err() == nil {
			s.log.Warn("escalation sweep failed; retrying", "err", err)
			wait = bo.NextBackOff()
			continue
		}
		bo.Reset()
		wait = every
	}
}

// escalate escalates one lapsed offer; false when there was nothing to do
// (answered, or escalated by another replica first).
func (s *Service) escalate(ctx context.Context, incidentID, taskID string) (bool, error) {
	for attempt := 0; attempt < taskWriteTries; attempt++ {
		inc, _, err := s.st.GetIncident(ctx, incidentID)
		if err != nil {
			return false, err
		}
		t, err := s.st.Task(ctx, incidentID, taskID)
		if err != nil {
			return false, err
		}
		now := s.now()
		if t.GetState() != sarv1.TaskState_TASK_STATE_OFFERED || t.GetOfferDeadline().AsTime().After(now) {
			// Answered, moved or escalated meanwhile: a stale deadline. The
			// write of that change replaced it; nothing to do.
			return false, nil
		}
		missed := t.GetTeam()
		t.MissedOffers++
		if !slices.ContainsFunc(t.GetMissedBy(), func(r *sarv1.TeamRef) bool { return teamRefOf(r) == teamRefOf(missed) }) {
			t.MissedBy = append(t.MissedBy, missed)
		}
		waited := now.Sub(t.GetTransitions()[len(t.GetTransitions())-1].GetTime().AsTime()).Round(time.Second)
		w := sar.TaskWrite{IncidentID: incidentID, Task: t, ExpectVersion: t.GetVersion(), FeedTeam: teamRefOf(missed)}
		var next *sarv1.TeamRef
		if t.GetMissedOffers() < MaxMissedOffers {
			if next, err = s.nextTeam(ctx, inc, t); err != nil {
				return false, err
			}
		}
		var free *bool
		if next != nil {
			t.Team = next
			s.offer(&w, nil, t, taskAnswerWithin(t),
				fmt.Sprintf("escalated: %s did not answer within %v", teamRefOf(missed), waited))
			b := false
			free = &b
		} else {
			t.OfferDeadline = nil
			why := "no other team is available"
			if t.GetMissedOffers() >= MaxMissedOffers {
				why = fmt.Sprintf("%d offers went unanswered", t.GetMissedOffers())
			}
			s.transition(t, nil, sarv1.TaskState_TASK_STATE_UNANSWERED,
				fmt.Sprintf("%s did not answer within %v; %s: the console decides", teamRefOf(missed), waited, why))
			w.FeedTeam = teamRefOf(missed) // the team that let it lapse learns it is gone
			b := true
			free = &b
		}
		if t.GetKind() == sarv1.TaskKind_TASK_KIND_SEARCH_SEGMENT {
			seg, err := s.segmentForTask(ctx, inc, t, free)
			if err != nil && sar.KindOf(err) != sar.KindNotFound {
				return false, err
			}
			w.Segments = seg
		}
		w.Event = s.taskEvent(incidentID, t, t.Transitions[len(t.Transitions)-1])
		_, err = s.putTask(ctx, w)
		if errors.Is(err, sar.ErrTaskConflict) || errors.Is(err, sar.ErrSegmentsConflict) {
			continue // answered or escalated meanwhile: look again
		}
		if err != nil {
			return false, err
		}
		s.log.Warn("task offer lapsed", "incident", incidentID, "task", taskID, "missed", teamRefOf(missed),
			"now", teamRefOf(t.GetTeam()), "state", stateName(t.GetState()))
		return true, nil
	}
	return false, sar.ErrTaskConflict
}

// nextTeam returns the team a lapsed offer goes to: an available (or
// limited) team of the incident that has not declined or missed it and
// is not already busy with it, of the first agency in the incident's
// order that has one, nearest by travel to the task's point (or the
// incident's planning point); nil if there is none.
func (s *Service) nextTeam(ctx context.Context, inc *sarv1.Incident, t *sarv1.Task) (*sarv1.TeamRef, error) {
	excluded := map[string]bool{teamRefOf(t.GetTeam()): true}
	for _, r := range append(slices.Clone(t.GetDeclinedBy()), t.GetMissedBy()...) {
		excluded[teamRefOf(r)] = true
	}
	// Agencies named in the incident's escalation order come first, in
	// that order; all others rank alike (nearest first).
	order := inc.GetDispatch().GetEscalationOrder()
	rank := map[string]int{}
	for i, a := range order {
		if _, ok := rank[a]; !ok {
			rank[a] = i
		}
	}
	rankOf := func(a string) int {
		if r, ok := rank[a]; ok {
			return r
		}
		return len(order)
	}
	var teams []*sarv1.Team
	for _, a := range inc.GetAgencyIds() {
		ts, err := s.st.Teams(ctx, a)
		if err != nil {
			return nil, err
		}
		teams = append(teams, ts...)
	}
	for _, ref := range inc.GetTeamRefs() {
		a, id, _ := strings.Cut(ref, "/")
		if slices.Contains(inc.GetAgencyIds(), a) {
			continue // the whole agency is in already
		}
		tm, err := s.st.Team(ctx, a, id)
		if sar.KindOf(err) == sar.KindNotFound {
			continue
		}
		if err != nil {
			return nil, err
		}
		teams = append(teams, tm)
	}
	at := t.GetPoint()
	if at == nil {
		at = inc.GetInitialPlanningPoint().GetPosition()
	}
	type cand struct {
		ref    *sarv1.TeamRef
		rank   int
		travel float64
	}
	var cands []cand
	for _, tm := range teams {
		ref := &sarv1.TeamRef{AgencyId: tm.GetAgencyId(), TeamId: tm.GetId()}
		st := tm.GetStatus()
		if excluded[teamRefOf(ref)] || (st != sarv1.TeamStatus_TEAM_STATUS_AVAILABLE && st != sarv1.TeamStatus_TEAM_STATUS_LIMITED) {
			continue
		}
		travel := math.Inf(1)
		if pos := cmp.Or(tm.GetPosition(), tm.GetHome()); pos != nil && at != nil {
			travel = geo.TravelSeconds(geo.DistanceM(at.GetLat(), at.GetLng(), pos.GetLat(), pos.GetLng()),
				cmp.Or(tm.GetTravelSpeedMS(), DefaultTravelSpeed))
		}
		cands = append(cands, cand{ref, rankOf(tm.GetAgencyId()), travel})
	}
	if len(cands) == 0 {
		return nil, nil
	}
	best := slices.MinFunc(cands, func(a, b cand) int {
		return cmp.Or(cmp.Compare(a.rank, b.rank), cmp.Compare(a.travel, b.travel), strings.Compare(teamRefOf(a.ref), teamRefOf(b.ref)))
	})
	return best.ref, nil
}

// incidentAnswerWithin is how long a team has to answer an offer of a
// priority in an incident: its dispatch settings, else the default.
func incidentAnswerWithin(inc *sarv1.Incident, p sarv1.TaskPriority) time.Duration {
	d := inc.GetDispatch()
	set := d.GetAnswerWithinNormal()
	switch p {
	case sarv1.TaskPriority_TASK_PRIORITY_URGENT:
		set = d.GetAnswerWithinUrgent()
	case sarv1.TaskPriority_TASK_PRIORITY_HIGH:
		set = d.GetAnswerWithinHigh()
	case sarv1.TaskPriority_TASK_PRIORITY_LOW:
		set = d.GetAnswerWithinLow()
	}
	if set.AsDuration() > 0 {
		return set.AsDuration()
	}
	return answerWithin(p)
}

// SetDispatchSettings sets an incident's escalation order and answer
// times.
func (s *Service) SetDispatchSettings(ctx context.Context, req *sarv1.SetDispatchSettingsRequest) (*sarv1.Incident, error) {
	_, inc, err := s.commandedIncident(ctx, req.GetIncidentId())
	if err != nil {
		return nil, err
	}
	set := req.GetSettings()
	var fv []sar.FieldViolation
	seen := map[string]bool{}
	for i, a := range set.GetEscalationOrder() {
		if !sar.ValidSlug(a) || seen[a] {
			fv = append(fv, sar.Field(fmt.Sprintf("settings.escalation_order[%d]", i), "INVALID", "agency ids, each once"))
		}
		seen[a] = true
	}
	if len(set.GetEscalationOrder()) > MaxSearcherTypes*4 {
		fv = append(fv, sar.Field("settings.escalation_order", "TOO_MANY", "at most %d agencies", MaxSearcherTypes*4))
	}
	s.validAnswerWithin(&fv, "settings.answer_within_urgent", set.GetAnswerWithinUrgent())
	s.validAnswerWithin(&fv, "settings.answer_within_high", set.GetAnswerWithinHigh())
	s.validAnswerWithin(&fv, "settings.answer_within_normal", set.GetAnswerWithinNormal())
	s.validAnswerWithin(&fv, "settings.answer_within_low", set.GetAnswerWithinLow())
	if len(fv) > 0 {
		return nil, sar.Invalid("invalid dispatch settings", fv...)
	}
	for i, a := range set.GetEscalationOrder() {
		if !slices.Contains(inc.GetAgencyIds(), a) && !slices.ContainsFunc(inc.GetTeamRefs(), func(r string) bool { return strings.HasPrefix(r, a+"/") }) {
			return nil, sar.Invalid("invalid dispatch settings", sar.Field(fmt.Sprintf("settings.escalation_order[%d]", i), "NOT_ASSIGNED",
				"agency %q does not take part in the incident", a))
		}
	}
	return s.changeActiveIncident(ctx, inc.GetId(), sarv1.IncidentChange_INCIDENT_CHANGE_DISPATCH_SETTINGS,
		func(inc *sarv1.Incident) { inc.Dispatch = set })
}
