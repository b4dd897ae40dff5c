package core

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/auth"
	"github.com/mountain-sar/sar/internal/sar"
)

// Tasks: work given to teams. A task is offered to one team and answered
// by it (accepted with an ETA, or declined with a reason), carried out with
// progress reports and completed, or cancelled; the operator can offer it
// to another team. A message to all teams is a task of its own kind that
// needs no answer. Every change is one atomic store write (compare-and-set
// on the task's version) with its event and the entry of the incident's
// task feed that devices read; a segment's task is written together with
// the segment's assignment, so the two never disagree.

// Task limits.
const (
	MaxTaskTitleLen   = 120
	MaxTaskTextLen    = 2000
	MaxTaskNoteLen    = 500
	MaxTasksListed    = 1000
	MaxAnswerWithin   = 24 * time.Hour
	MaxETA            = 48 * time.Hour
	taskWriteTries    = 8
	systemActor       = "system"
	feedPage          = 200
	maxCoveredAreaM2  = 1e10
	maxTaskTransition = 200 // transitions kept per task (the oldest are dropped)
)

// answerWithin is the default time a team has to answer an offer.
func answerWithin(p sarv1.TaskPriority) time.Duration {
	switch p {
	case sarv1.TaskPriority_TASK_PRIORITY_URGENT:
		return 2 * time.Minute
	case sarv1.TaskPriority_TASK_PRIORITY_HIGH:
		return 3 * time.Minute
	case sarv1.TaskPriority_TASK_PRIORITY_LOW:
		return 15 * time.Minute
	}
	return 5 * time.Minute
}

// taskAnswerWithin is how long a team has to answer an offer of t.
func taskAnswerWithin(t *sarv1.Task) time.Duration {
	if d := t.GetAnswerWithin(); d != nil && d.AsDuration() > 0 {
		return d.AsDuration()
	}
	return answerWithin(t.GetPriority())
}

// finalTask reports whether a task state is final.
func finalTask(s sarv1.TaskState) bool {
	return s == sarv1.TaskState_TASK_STATE_COMPLETED || s == sarv1.TaskState_TASK_STATE_CANCELLED || s == sarv1.TaskState_TASK_STATE_POSTED
}

// awaitsOperator reports whether a task waits for the operator to give it
// to a team (declined, or unanswered): its segment is free meanwhile.
func awaitsOperator(s sarv1.TaskState) bool {
	return s == sarv1.TaskState_TASK_STATE_DECLINED || s == sarv1.TaskState_TASK_STATE_UNANSWERED
}

func teamRefOf(t *sarv1.TeamRef) string { return auth.TeamRef(t.GetAgencyId(), t.GetTeamId()) }

func stateName(s sarv1.TaskState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "TASK_STATE_"))
}

// canSeeTask reports whether p may read the task: operators and admins of
// the incident; rescuers of its team; for a message, every rescuer of the
// incident.
func canSeeTask(p *sarv1.Principal, inc *sarv1.Incident, t *sarv1.Task) bool {
	switch p.GetRole() {
	case sarv1.Role_ROLE_ADMIN, sarv1.Role_ROLE_OPERATOR:
		return auth.CanCommandIncident(p, inc)
	case sarv1.Role_ROLE_RESCUER:
		if t.GetKind() == sarv1.TaskKind_TASK_KIND_MESSAGE {
			return auth.CanSeeIncident(p, inc)
		}
		return p.GetAgencyId() == t.GetTeam().GetAgencyId() && p.GetTeamId() != "" && p.GetTeamId() == t.GetTeam().GetTeamId()
	}
	return false
}

// canAnswerTask reports whether p may answer or advance the task: its
// team's rescuers, and the incident's operators on their behalf.
func canAnswerTask(p *sarv1.Principal, inc *sarv1.Incident, t *sarv1.Task) bool {
	if t.GetKind() == sarv1.TaskKind_TASK_KIND_MESSAGE {
		return false
	}
	return canSeeTask(p, inc, t)
}

func (s *Service) validAnswerWithin(fv *[]sar.FieldViolation, field string, d *durationpb.Duration) {
	if d == nil {
		return
	}
	if err := d.CheckValid(); err != nil || d.AsDuration() < s.cfg.MinAnswerWithin || d.AsDuration() > MaxAnswerWithin {
		*fv = append(*fv, sar.Field(field, "OUT_OF_RANGE", "%s must be from %v to %v", field, s.cfg.MinAnswerWithin, MaxAnswerWithin))
	}
}

func validTaskID(fv *[]sar.FieldViolation, id string) {
	if !sar.ValidID(id) {
		*fv = append(*fv, sar.Field("task_id", "INVALID", "task_id must be a task id"))
	}
}

// transition appends a state change to a task.
func (s *Service) transition(t *sarv1.Task, p *sarv1.Principal, to sarv1.TaskState, note string) *sarv1.TaskTransition {
	now := timestamppb.New(s.now())
	tr := &sarv1.TaskTransition{From: t.GetState(), To: to, Time: now, Actor: p.GetCredentialId(), ActorName: p.GetDisplayName(),
		Team: t.GetTeam(), Note: note}
	if p == nil {
		tr.Actor, tr.ActorName = systemActor, "sard (escalation)"
	}
	t.State, t.UpdateTime = to, now
	t.Transitions = append(t.Transitions, tr)
	if n := len(t.Transitions); n > maxTaskTransition {
		t.Transitions = slices.Delete(t.Transitions, 1, n-maxTaskTransition+1) // keep the creation
	}
	return tr
}

func (s *Service) taskEvent(incidentID string, t *sarv1.Task, tr *sarv1.TaskTransition) *sarv1.Event {
	ev := s.newEvent(incidentID)
	ev.Payload = &sarv1.Event_TaskChanged{TaskChanged: &sarv1.TaskChangedEvent{Task: t, Transition: tr}}
	return ev
}

// noticeEvents are the copies of a notice for every agency of the
// incident (one subject each, so that NATS permissions can confine
// agencies to their own).
func (s *Service) noticeEvents(inc *sarv1.Incident, t *sarv1.Task, kind sarv1.TaskNoticeKind, tr *sarv1.TaskTransition) []*sarv1.Event {
	agencies := slices.Clone(inc.GetAgencyIds())
	for _, r := range inc.GetTeamRefs() {
		a, _, _ := strings.Cut(r, "/")
		agencies = append(agencies, a)
	}
	slices.Sort(agencies)
	agencies = slices.Compact(agencies)
	out := make([]*sarv1.Event, 0, len(agencies))
	for _, a := range agencies {
		ev := s.newEvent(inc.GetId())
		ev.Payload = &sarv1.Event_TaskChanged{TaskChanged: &sarv1.TaskChangedEvent{Task: t, Transition: tr, NoticeAgency: a, Notice: kind}}
		out = append(out, ev)
	}
	return out
}

// putTask writes a task change with its events (in the store's outbox with
// the change) and delivers them. A task taken from a team also goes, as a
// copy, to that team's subject.
func (s *Service) putTask(ctx context.Context, w sar.TaskWrite) (sar.TaskWriteResult, error) {
	if from := w.FeedAlsoTeam; from != "" && w.Event.GetTaskChanged() != nil {
		a, t, _ := strings.Cut(from, "/")
		cp := s.newEvent(w.IncidentID)
		cp.Payload = &sarv1.Event_TaskChanged{TaskChanged: &sarv1.TaskChangedEvent{Task: w.Task,
			Transition: w.Event.GetTaskChanged().GetTransition(), TakenFrom: &sarv1.TeamRef{AgencyId: a, TeamId: t}}}
		w.MoreEvents = append(w.MoreEvents, cp)
	}
	res, err := s.st.PutTask(ctx, w)
	if err != nil {
		return res, err
	}
	if !res.Duplicate {
		s.deliver(ctx, append([]*sarv1.Event{w.Event}, w.MoreEvents...)...)
	}
	return res, nil
}

// CreateTask offers a task to a team, or posts a message to all teams.
func (s *Service) CreateTask(ctx context.Context, req *sarv1.CreateTaskRequest) (*sarv1.Task, error) {
	p, inc, err := s.commandedIncident(ctx, req.GetIncidentId())
	if err != nil {
		return nil, err
	}
	var fv []sar.FieldViolation
	kind := req.GetKind()
	if _, ok := sarv1.TaskKind_name[int32(kind)]; !ok || kind == sarv1.TaskKind_TASK_KIND_UNSPECIFIED {
		fv = append(fv, sar.Field("kind", "REQUIRED", "kind is required: search segment, go to point, stand by, return to base or message"))
	}
	prio := req.GetPriority()
	if _, ok := sarv1.TaskPriority_name[int32(prio)]; !ok {
		fv = append(fv, sar.Field("priority", "INVALID", "unknown priority"))
	}
	if prio == sarv1.TaskPriority_TASK_PRIORITY_UNSPECIFIED {
		prio = sarv1.TaskPriority_TASK_PRIORITY_NORMAL
	}
	text(&fv, "title", req.GetTitle(), MaxTaskTitleLen, false)
	text(&fv, "instructions", req.GetInstructions(), MaxTaskTextLen, kind == sarv1.TaskKind_TASK_KIND_MESSAGE)
	if kind == sarv1.TaskKind_TASK_KIND_MESSAGE {
		if req.GetTeam() != nil {
			fv = append(fv, sar.Field("team", "NOT_ALLOWED", "a message goes to every team: leave team empty"))
		}
	} else {
		validTeamRef(&fv, "team", req.GetTeam())
		if req.GetTeam().GetTeamId() == "" {
			fv = append(fv, sar.Field("team.team_id", "REQUIRED", "a task goes to one team: team_id is required"))
		}
	}
	switch {
	case kind == sarv1.TaskKind_TASK_KIND_SEARCH_SEGMENT && req.GetSegmentId() <= 0:
		fv = append(fv, sar.Field("segment_id", "REQUIRED", "a segment search needs segment_id (ListSegments)"))
	case kind != sarv1.TaskKind_TASK_KIND_SEARCH_SEGMENT && req.GetSegmentId() != 0:
		fv = append(fv, sar.Field("segment_id", "NOT_ALLOWED", "segment_id is for segment searches only"))
	}
	if kind == sarv1.TaskKind_TASK_KIND_GO_TO_POINT || req.GetPoint() != nil {
		validPoint(&fv, "point", req.GetPoint())
	}
	s.validAnswerWithin(&fv, "answer_within", req.GetAnswerWithin())
	if r := req.GetRequestId(); r != "" && !sar.ValidDeviceID(r) {
		fv = append(fv, sar.Field("request_id", "INVALID", "request_id must be 1-64 characters of A-Z, a-z, 0-9, '-' and '_'"))
	}
	if len(fv) > 0 {
		return nil, sar.Invalid("invalid task", fv...)
	}
	if r := req.GetRequestId(); r != "" {
		prev, err := s.st.TaskByRequest(ctx, inc.GetId(), r)
		if err != nil {
			return nil, err
		}
		if prev != nil {
			return prev, nil // a retry: the task the first request made
		}
	}
	if !active(inc) {
		return nil, errNotActive()
	}
	if kind == sarv1.TaskKind_TASK_KIND_SEARCH_SEGMENT {
		if err := searching(inc); err != nil {
			return nil, err
		}
	}
	now := s.now()
	t := &sarv1.Task{Id: sar.NewID(), IncidentId: inc.GetId(), Kind: kind, Priority: prio, Title: strings.TrimSpace(req.GetTitle()),
		Instructions: strings.TrimSpace(req.GetInstructions()), SegmentId: req.GetSegmentId(), Point: req.GetPoint(),
		CreatedBy: p.GetCredentialId(), CreatedByName: p.GetDisplayName(), CreateTime: timestamppb.New(now)}
	if t.Title == "" {
		t.Title = defaultTitle(t)
	}
	w := sar.TaskWrite{IncidentID: inc.GetId(), Task: t, RequestID: req.GetRequestId()}
	if kind == sarv1.TaskKind_TASK_KIND_MESSAGE {
		tr := s.transition(t, p, sarv1.TaskState_TASK_STATE_POSTED, "")
		evs := s.noticeEvents(inc, t, sarv1.TaskNoticeKind_TASK_NOTICE_KIND_MESSAGE, tr)
		if len(evs) == 0 {
			return nil, sar.Errorf(sar.KindFailedPrecondition, "no agency is assigned to the incident: nobody to tell")
		}
		w.Event, w.MoreEvents, w.FeedTeam, w.FeedNotice = evs[0], evs[1:], sar.FeedAll, sarv1.TaskNoticeKind_TASK_NOTICE_KIND_MESSAGE
		res, err := s.putTask(ctx, w)
		if err != nil {
			return nil, err
		}
		return res.Task, nil
	}
	team := req.GetTeam()
	if err := s.checkTaskTeam(ctx, inc, team, "invalid task"); err != nil {
		return nil, err
	}
	t.Team = &sarv1.TeamRef{AgencyId: team.GetAgencyId(), TeamId: team.GetTeamId()}
	within := incidentAnswerWithin(inc, prio)
	if req.GetAnswerWithin() != nil {
		within = req.GetAnswerWithin().AsDuration()
	}
	t.AnswerWithin = durationpb.New(within)
	for attempt := 0; attempt < taskWriteTries; attempt++ {
		tw := w
		tw.Task = proto.Clone(t).(*sarv1.Task)
		s.offer(&tw, p, tw.Task, within, "")
		if kind == sarv1.TaskKind_TASK_KIND_SEARCH_SEGMENT {
			seg, err := s.segmentForTask(ctx, inc, tw.Task, nil)
			if err != nil {
				return nil, err
			}
			tw.Segments = seg
		}
		tw.Event = s.taskEvent(inc.GetId(), tw.Task, tw.Task.Transitions[len(tw.Task.Transitions)-1])
		res, err := s.putTask(ctx, tw)
		if errors.Is(err, sar.ErrSegmentsConflict) {
			continue
		}
		if err != nil {
			return nil, err
		}
		s.log.Info("task offered", "incident", inc.GetId(), "task", res.Task.GetId(), "team", teamRefOf(res.Task.GetTeam()),
			"by", p.GetCredentialId(), "duplicate", res.Duplicate)
		return res.Task, nil
	}
	return nil, sar.ErrSegmentsConflict
}

func defaultTitle(t *sarv1.Task) string {
	switch t.GetKind() {
	case sarv1.TaskKind_TASK_KIND_SEARCH_SEGMENT:
		return fmt.Sprintf("Search segment %d", t.GetSegmentId())
	case sarv1.TaskKind_TASK_KIND_GO_TO_POINT:
		return "Go to the point"
	case sarv1.TaskKind_TASK_KIND_STAND_BY:
		return "Stand by"
	case sarv1.TaskKind_TASK_KIND_RETURN_TO_BASE:
		return "Return to base"
	}
	return "Message to all teams"
}

// offer makes t offered to its team (already set) with a deadline. When
// the task was with another team (w.FeedTeam, set from the task as read),
// that team's feed is told too.
func (s *Service) offer(w *sar.TaskWrite, p *sarv1.Principal, t *sarv1.Task, within time.Duration, note string) {
	if prev := w.FeedTeam; prev != "" && prev != teamRefOf(t.GetTeam()) {
		w.FeedAlsoTeam = prev
	}
	deadline := s.now().Add(within)
	t.OfferDeadline, t.Eta = timestamppb.New(deadline), nil
	s.transition(t, p, sarv1.TaskState_TASK_STATE_OFFERED, note)
	w.DeadlineMs, w.FeedTeam = deadline.UnixMilli(), teamRefOf(t.GetTeam())
}

// segmentForTask returns the incident's segmentation with the task's
// segment assigned to the task's team (or freed when team is nil and
// free is set), to be written with the task.
func (s *Service) segmentForTask(ctx context.Context, inc *sarv1.Incident, t *sarv1.Task, free *bool) (*sar.Segmentation, error) {
	g, err := s.planGrid(ctx, inc.GetId())
	if err != nil {
		return nil, err
	}
	seg, _, err := s.segmentsFor(ctx, inc, g, segmentInput{})
	if err != nil {
		return nil, err
	}
	i, err := segmentIndex(seg, int(t.GetSegmentId()))
	if err != nil {
		return nil, err
	}
	ss := seg.Segments[i]
	if free != nil && *free {
		if ss.Agency != t.GetTeam().GetAgencyId() || ss.Team != t.GetTeam().GetTeamId() {
			return nil, nil // another team holds it now: not this task's to free
		}
		ss.Agency, ss.Team, ss.AssignMs = "", "", 0
	} else {
		team := t.GetTeam()
		if other, err := s.activeSegmentTask(ctx, inc.GetId(), ss.ID, t.GetId()); err != nil {
			return nil, err
		} else if other != nil {
			return nil, sar.Errorf(sar.KindFailedPrecondition, "segment %d is %s's task %s (%s): reassign or cancel that task",
				ss.ID, teamRefOf(other.GetTeam()), other.GetId(), stateName(other.GetState()))
		}
		ss.Agency, ss.Team, ss.AssignMs = team.GetAgencyId(), team.GetTeamId(), s.now().UnixMilli()
	}
	seg.Segments[i] = ss
	return seg, nil
}

// activeSegmentTask returns the open task of a segment other than except,
// if any.
func (s *Service) activeSegmentTask(ctx context.Context, incidentID string, segmentID int, except string) (*sarv1.Task, error) {
	tasks, err := s.st.Tasks(ctx, incidentID)
	if err != nil {
		return nil, err
	}
	for _, t := range tasks {
		if t.GetKind() == sarv1.TaskKind_TASK_KIND_SEARCH_SEGMENT && int(t.GetSegmentId()) == segmentID && !finalTask(t.GetState()) &&
			!awaitsOperator(t.GetState()) && t.GetId() != except {
			return t, nil
		}
	}
	return nil, nil
}

// GetTask returns a task the caller may see.
func (s *Service) GetTask(ctx context.Context, req *sarv1.GetTaskRequest) (*sarv1.Task, error) {
	var fv []sar.FieldViolation
	validTaskID(&fv, req.GetTaskId())
	if len(fv) > 0 {
		return nil, sar.Invalid("invalid request", fv...)
	}
	p, inc, err := s.visibleIncident(ctx, req.GetIncidentId())
	if err != nil {
		return nil, err
	}
	t, err := s.st.Task(ctx, inc.GetId(), req.GetTaskId())
	if err != nil {
		return nil, err
	}
	if !canSeeTask(p, inc, t) {
		return nil, sar.NotFound("task")
	}
	return t, nil
}

// ListTasks lists an incident's tasks the caller may see, newest first.
func (s *Service) ListTasks(ctx context.Context, req *sarv1.ListTasksRequest) ([]*sarv1.Task, error) {
	var fv []sar.FieldViolation
	if req.GetTeam() != nil {
		validTeamRef(&fv, "team", req.GetTeam())
	}
	states := map[sarv1.TaskState]bool{}
	for i, st := range req.GetStates() {
		if _, ok := sarv1.TaskState_name[int32(st)]; !ok || st == sarv1.TaskState_TASK_STATE_UNSPECIFIED {
			fv = append(fv, sar.Field(fmt.Sprintf("states[%d]", i), "INVALID", "a task state other than unspecified"))
		}
		states[st] = true
	}
	if len(fv) > 0 {
		return nil, sar.Invalid("invalid request", fv...)
	}
	p, inc, err := s.visibleIncident(ctx, req.GetIncidentId())
	if err != nil {
		return nil, err
	}
	if p.GetRole() == sarv1.Role_ROLE_CALLER {
		return nil, sar.Errorf(sar.KindPermissionDenied, "callers do not read tasks")
	}
	all, err := s.st.Tasks(ctx, inc.GetId())
	if err != nil {
		return nil, err
	}
	out := make([]*sarv1.Task, 0, len(all))
	for _, t := range all {
		if !canSeeTask(p, inc, t) || (len(states) > 0 && !states[t.GetState()]) {
			continue
		}
		if r := req.GetTeam(); r != nil && t.GetKind() != sarv1.TaskKind_TASK_KIND_MESSAGE && teamRefOf(t.GetTeam()) != teamRefOf(r) {
			continue
		}
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b *sarv1.Task) int { return strings.Compare(b.GetId(), a.GetId()) }) // ULIDs: newest first
	if len(out) > MaxTasksListed {
		out = out[:MaxTasksListed]
	}
	return out, nil
}

// taskChange is one change of a task by a team member or an operator.
type taskChange struct {
	incidentID, taskID string
	expectVersion      int64
	// operatorOnly: only the incident's operators may make it.
	operatorOnly bool
	// apply changes the task read (and says which transition it made, nil
	// for none); it returns errNoChange when the task already is as asked
	// (a retried answer), which answers with the task unchanged.
	apply func(p *sarv1.Principal, inc *sarv1.Incident, t *sarv1.Task, w *sar.TaskWrite) (*sarv1.TaskTransition, error)
	// segment: what to do with a segment task's assignment: nil leaves it,
	// else free it (true) or assign it to the task's team (false).
	segment func(t *sarv1.Task) *bool
}

var errNoChange = errors.New("core: no change")

// changeTask reads a task, checks who may change it, applies the change
// and writes it by compare-and-set, retrying when another change won.
func (s *Service) changeTask(ctx context.Context, c taskChange) (*sarv1.Task, error) {
	var fv []sar.FieldViolation
	validTaskID(&fv, c.taskID)
	if len(fv) > 0 {
		return nil, sar.Invalid("invalid request", fv...)
	}
	p, inc, err := s.visibleIncident(ctx, c.incidentID)
	if err != nil {
		return nil, err
	}
	for attempt := 0; attempt < taskWriteTries; attempt++ {
		t, err := s.st.Task(ctx, inc.GetId(), c.taskID)
		if err != nil {
			return nil, err
		}
		if !canSeeTask(p, inc, t) {
			return nil, sar.NotFound("task")
		}
		if c.operatorOnly && !auth.CanCommandIncident(p, inc) {
			return nil, sar.Errorf(sar.KindPermissionDenied, "only the incident's operators may do this")
		}
		if !c.operatorOnly && !canAnswerTask(p, inc, t) {
			return nil, sar.Errorf(sar.KindPermissionDenied, "a message to all teams takes no answer")
		}
		if c.expectVersion != 0 && t.GetVersion() != c.expectVersion {
			return nil, sar.Errorf(sar.KindAborted, "task is at version %d, not %d: read it again", t.GetVersion(), c.expectVersion)
		}
		if !active(inc) {
			return nil, errNotActive()
		}
		ver := t.GetVersion()
		beforeState, beforeTeam := t.GetState(), t.GetTeam()
		w := sar.TaskWrite{IncidentID: inc.GetId(), ExpectVersion: ver, FeedTeam: teamRefOf(t.GetTeam())}
		tr, err := c.apply(p, inc, t, &w)
		if errors.Is(err, errNoChange) {
			return t, nil
		}
		if err != nil {
			return nil, err
		}
		t.UpdateTime = timestamppb.New(s.now())
		if t.GetState() == sarv1.TaskState_TASK_STATE_OFFERED && w.DeadlineMs == 0 {
			w.DeadlineMs = t.GetOfferDeadline().AsTime().UnixMilli() // still waiting for the answer
		}
		if c.segment != nil && t.GetKind() == sarv1.TaskKind_TASK_KIND_SEARCH_SEGMENT {
			if free := c.segment(t); free != nil && !(*free && awaitsOperator(beforeState)) { // a declined task holds no segment
				seg, err := s.segmentForTask(ctx, inc, t, free)
				if err != nil && !(*free && sar.KindOf(err) == sar.KindNotFound) { // a segment gone from the cut: nothing to free
					return nil, err
				}
				w.Segments = seg
			}
		}
		w.Task, w.Event = t, s.taskEvent(inc.GetId(), t, tr)
		res, err := s.putTask(ctx, w)
		if errors.Is(err, sar.ErrTaskConflict) || errors.Is(err, sar.ErrSegmentsConflict) {
			continue
		}
		if err != nil {
			return nil, err
		}
		s.log.Info("task changed", "incident", inc.GetId(), "task", t.GetId(), "state", stateName(t.GetState()),
			"team", teamRefOf(t.GetTeam()), "by", p.GetCredentialId())
		s.afterTaskChange(ctx, beforeState, beforeTeam, res.Task)
		return res.Task, nil
	}
	return nil, sar.ErrTaskConflict
}

func illegal(t *sarv1.Task, what string) error {
	return sar.Errorf(sar.KindFailedPrecondition, "a task that is %s cannot be %s", stateName(t.GetState()), what)
}

var (
	freeSegment   = func(*sarv1.Task) *bool { b := true; return &b }
	assignSegment = func(*sarv1.Task) *bool { b := false; return &b }
)

// AcceptTask answers an offer with yes and an ETA.
func (s *Service) AcceptTask(ctx context.Context, req *sarv1.AcceptTaskRequest) (*sarv1.Task, error) {
	var fv []sar.FieldViolation
	if d := req.GetEta(); d != nil && (d.CheckValid() != nil || d.AsDuration() < 0 || d.AsDuration() > MaxETA) {
		fv = append(fv, sar.Field("eta", "OUT_OF_RANGE", "eta must be from 0 to %v", MaxETA))
	}
	text(&fv, "note", req.GetNote(), MaxTaskNoteLen, false)
	if len(fv) > 0 {
		return nil, sar.Invalid("invalid answer", fv...)
	}
	return s.changeTask(ctx, taskChange{incidentID: req.GetIncidentId(), taskID: req.GetTaskId(), expectVersion: req.GetExpectVersion(),
		apply: func(p *sarv1.Principal, inc *sarv1.Incident, t *sarv1.Task, w *sar.TaskWrite) (*sarv1.TaskTransition, error) {
			switch t.GetState() {
			case sarv1.TaskState_TASK_STATE_ACCEPTED, sarv1.TaskState_TASK_STATE_IN_PROGRESS:
				return nil, errNoChange // a retried yes
			case sarv1.TaskState_TASK_STATE_OFFERED:
			default:
				return nil, illegal(t, "accepted")
			}
			note := strings.TrimSpace(req.GetNote())
			if req.GetEta() != nil {
				t.Eta = timestamppb.New(s.now().Add(req.GetEta().AsDuration()))
				note = strings.TrimSpace(fmt.Sprintf("ETA %v. %s", req.GetEta().AsDuration().Round(time.Minute), note))
			}
			t.OfferDeadline = nil
			return s.transition(t, p, sarv1.TaskState_TASK_STATE_ACCEPTED, note), nil
		}})
}

// DeclineTask answers an offer (or backs out of an accepted task) with no
// and a reason. A segment's assignment is freed for another team.
func (s *Service) DeclineTask(ctx context.Context, req *sarv1.DeclineTaskRequest) (*sarv1.Task, error) {
	var fv []sar.FieldViolation
	text(&fv, "reason", req.GetReason(), MaxTaskNoteLen, true)
	if len(fv) > 0 {
		return nil, sar.Invalid("invalid answer", fv...)
	}
	return s.changeTask(ctx, taskChange{incidentID: req.GetIncidentId(), taskID: req.GetTaskId(), expectVersion: req.GetExpectVersion(),
		segment: freeSegment,
		apply: func(p *sarv1.Principal, inc *sarv1.Incident, t *sarv1.Task, w *sar.TaskWrite) (*sarv1.TaskTransition, error) {
			switch t.GetState() {
			case sarv1.TaskState_TASK_STATE_DECLINED:
				return nil, errNoChange
			case sarv1.TaskState_TASK_STATE_OFFERED, sarv1.TaskState_TASK_STATE_ACCEPTED:
			default:
				return nil, illegal(t, "declined")
			}
			t.OfferDeadline, t.Eta = nil, nil
			if !slices.ContainsFunc(t.GetDeclinedBy(), func(r *sarv1.TeamRef) bool { return teamRefOf(r) == teamRefOf(t.GetTeam()) }) {
				t.DeclinedBy = append(t.DeclinedBy, t.GetTeam())
			}
			return s.transition(t, p, sarv1.TaskState_TASK_STATE_DECLINED, strings.TrimSpace(req.GetReason())), nil
		}})
}

// ReportTaskProgress moves an accepted task to in progress, or updates the
// progress of one in progress.
func (s *Service) ReportTaskProgress(ctx context.Context, req *sarv1.ReportTaskProgressRequest) (*sarv1.Task, error) {
	var fv []sar.FieldViolation
	if v := req.GetProgressPercent(); v < 0 || v > 100 {
		fv = append(fv, sar.Field("progress_percent", "OUT_OF_RANGE", "progress_percent must be 0 to 100"))
	}
	text(&fv, "note", req.GetNote(), MaxTaskNoteLen, false)
	if len(fv) > 0 {
		return nil, sar.Invalid("invalid progress", fv...)
	}
	return s.changeTask(ctx, taskChange{incidentID: req.GetIncidentId(), taskID: req.GetTaskId(),
		apply: func(p *sarv1.Principal, inc *sarv1.Incident, t *sarv1.Task, w *sar.TaskWrite) (*sarv1.TaskTransition, error) {
			note := strings.TrimSpace(req.GetNote())
			switch t.GetState() {
			case sarv1.TaskState_TASK_STATE_IN_PROGRESS:
				if t.GetProgressPercent() == req.GetProgressPercent() && t.GetProgressNote() == note {
					return nil, errNoChange
				}
				t.ProgressPercent, t.ProgressNote = req.GetProgressPercent(), note
				return nil, nil
			case sarv1.TaskState_TASK_STATE_ACCEPTED:
				t.ProgressPercent, t.ProgressNote = req.GetProgressPercent(), note
				return s.transition(t, p, sarv1.TaskState_TASK_STATE_IN_PROGRESS, note), nil
			case sarv1.TaskState_TASK_STATE_OFFERED:
				return nil, sar.Errorf(sar.KindFailedPrecondition, "accept the task before reporting progress")
			}
			return nil, illegal(t, "reported on")
		}})
}

// CompleteTask ends a task the team carried out.
func (s *Service) CompleteTask(ctx context.Context, req *sarv1.CompleteTaskRequest) (*sarv1.Task, error) {
	var fv []sar.FieldViolation
	if v := req.GetCoveredAreaM2(); !(v >= 0 && v <= maxCoveredAreaM2) {
		fv = append(fv, sar.Field("covered_area_m2", "OUT_OF_RANGE", "covered_area_m2 must be 0 to %g", maxCoveredAreaM2))
	}
	text(&fv, "findings", req.GetFindings(), MaxTaskTextLen, false)
	if len(fv) > 0 {
		return nil, sar.Invalid("invalid completion", fv...)
	}
	return s.changeTask(ctx, taskChange{incidentID: req.GetIncidentId(), taskID: req.GetTaskId(),
		apply: func(p *sarv1.Principal, inc *sarv1.Incident, t *sarv1.Task, w *sar.TaskWrite) (*sarv1.TaskTransition, error) {
			switch t.GetState() {
			case sarv1.TaskState_TASK_STATE_COMPLETED:
				return nil, errNoChange
			case sarv1.TaskState_TASK_STATE_ACCEPTED, sarv1.TaskState_TASK_STATE_IN_PROGRESS:
			default:
				return nil, illegal(t, "completed")
			}
			t.CoveredAreaM2, t.Findings, t.ProgressPercent = req.GetCoveredAreaM2(), strings.TrimSpace(req.GetFindings()), 100
			return s.transition(t, p, sarv1.TaskState_TASK_STATE_COMPLETED, t.Findings), nil
		}})
}

// CancelTask ends a task that is no longer needed; a segment's assignment
// is freed.
func (s *Service) CancelTask(ctx context.Context, req *sarv1.CancelTaskRequest) (*sarv1.Task, error) {
	var fv []sar.FieldViolation
	text(&fv, "reason", req.GetReason(), MaxTaskNoteLen, true)
	if len(fv) > 0 {
		return nil, sar.Invalid("invalid cancellation", fv...)
	}
	return s.changeTask(ctx, taskChange{incidentID: req.GetIncidentId(), taskID: req.GetTaskId(), operatorOnly: true,
		segment: freeSegment,
		apply: func(p *sarv1.Principal, inc *sarv1.Incident, t *sarv1.Task, w *sar.TaskWrite) (*sarv1.TaskTransition, error) {
			switch {
			case t.GetState() == sarv1.TaskState_TASK_STATE_CANCELLED:
				return nil, errNoChange
			case finalTask(t.GetState()):
				return nil, illegal(t, "cancelled")
			}
			t.OfferDeadline = nil
			return s.transition(t, p, sarv1.TaskState_TASK_STATE_CANCELLED, strings.TrimSpace(req.GetReason())), nil
		}})
}

// ReassignTask offers a task to another team.
func (s *Service) ReassignTask(ctx context.Context, req *sarv1.ReassignTaskRequest) (*sarv1.Task, error) {
	var fv []sar.FieldViolation
	validTeamRef(&fv, "team", req.GetTeam())
	if req.GetTeam().GetTeamId() == "" {
		fv = append(fv, sar.Field("team.team_id", "REQUIRED", "a task goes to one team: team_id is required"))
	}
	s.validAnswerWithin(&fv, "answer_within", req.GetAnswerWithin())
	text(&fv, "note", req.GetNote(), MaxTaskNoteLen, false)
	if len(fv) > 0 {
		return nil, sar.Invalid("invalid reassignment", fv...)
	}
	to := &sarv1.TeamRef{AgencyId: req.GetTeam().GetAgencyId(), TeamId: req.GetTeam().GetTeamId()}
	return s.changeTask(ctx, taskChange{incidentID: req.GetIncidentId(), taskID: req.GetTaskId(), operatorOnly: true,
		segment: assignSegment,
		apply: func(p *sarv1.Principal, inc *sarv1.Incident, t *sarv1.Task, w *sar.TaskWrite) (*sarv1.TaskTransition, error) {
			switch t.GetState() {
			case sarv1.TaskState_TASK_STATE_OFFERED, sarv1.TaskState_TASK_STATE_DECLINED, sarv1.TaskState_TASK_STATE_ACCEPTED,
				sarv1.TaskState_TASK_STATE_UNANSWERED:
			default:
				return nil, illegal(t, "reassigned")
			}
			if teamRefOf(t.GetTeam()) == teamRefOf(to) && (t.GetState() == sarv1.TaskState_TASK_STATE_OFFERED || t.GetState() == sarv1.TaskState_TASK_STATE_ACCEPTED) {
				return nil, errNoChange
			}
			if slices.ContainsFunc(t.GetDeclinedBy(), func(r *sarv1.TeamRef) bool { return teamRefOf(r) == teamRefOf(to) }) {
				return nil, &sar.Error{Kind: sar.KindFailedPrecondition, Message: "that team declined this task",
					Fields: []sar.FieldViolation{sar.Field("team", "DECLINED", "%s declined the task", teamRefOf(to))}}
			}
			if err := s.checkTaskTeam(ctx, inc, to, "invalid reassignment"); err != nil {
				return nil, err
			}
			t.Team = to
			within := taskAnswerWithin(t)
			if req.GetAnswerWithin() != nil {
				within = req.GetAnswerWithin().AsDuration()
				t.AnswerWithin = req.GetAnswerWithin()
			}
			s.offer(w, p, t, within, strings.TrimSpace(req.GetNote()))
			return t.Transitions[len(t.Transitions)-1], nil
		}})
}

// TaskFeed returns the entries of an incident's task feed after a cursor
// that concern the principal (a rescuer with a team): its team's tasks and
// the notices to all teams; and whether the incident is closed. It
// returns the cursor to continue from (the last entry read, also when it
// was not for this team).
func (s *Service) TaskFeed(ctx context.Context, incidentID, cursor string) (entries []sar.FeedEntry, next string, closed bool, err error) {
	// Read at every doorbell of every team device: the incident comes from
	// the few-seconds cache the ingest path uses (an unassignment or a
	// close is seen that much later; the feed itself is always read).
	p, err := auth.Require(ctx, sarv1.Role_ROLE_RESCUER, sarv1.Role_ROLE_OPERATOR, sarv1.Role_ROLE_ADMIN, sarv1.Role_ROLE_CALLER)
	if err != nil {
		return nil, "", false, err
	}
	if !sar.ValidID(incidentID) {
		return nil, "", false, sar.Invalid("invalid incident id", sar.Field("incident_id", "INVALID", "incident_id must be an incident id"))
	}
	inc, err := s.incident(ctx, incidentID)
	if err != nil {
		return nil, "", false, err
	}
	if !auth.CanSeeIncident(p, inc) {
		return nil, "", false, sar.NotFound("incident")
	}
	if p.GetRole() != sarv1.Role_ROLE_RESCUER || p.GetTeamId() == "" {
		return nil, "", false, sar.Errorf(sar.KindPermissionDenied, "the task feed is for team members' devices (operators use ListTasks and WatchIncident)")
	}
	mine := auth.TeamRef(p.GetAgencyId(), p.GetTeamId())
	next = cursor
	for {
		page, err := s.st.TaskFeed(ctx, inc.GetId(), next, feedPage)
		if err != nil {
			return nil, "", false, err
		}
		for _, e := range page {
			next = e.ID
			if e.Team == mine || e.Team == sar.FeedAll {
				entries = append(entries, e)
			}
		}
		if len(page) < feedPage {
			break
		}
	}
	return entries, next, inc.GetState() == sarv1.IncidentState_INCIDENT_STATE_CLOSED, nil
}

// CheckTaskCursor authorizes a task feed reader (a rescuer with a team of
// the incident) and checks its cursor: one the feed gave, not past its
// end, and not before entries the feed no longer keeps (OUT_OF_RANGE: the
// device lists its tasks and starts again from an empty cursor).
func (s *Service) CheckTaskCursor(ctx context.Context, incidentID, cursor string) error {
	p, inc, err := s.visibleIncident(ctx, incidentID)
	if err != nil {
		return err
	}
	if p.GetRole() != sarv1.Role_ROLE_RESCUER || p.GetTeamId() == "" {
		return sar.Errorf(sar.KindPermissionDenied, "the task feed is for team members' devices (operators use ListTasks and WatchIncident)")
	}
	if cursor == "" {
		return nil
	}
	c, ok := sar.ParseFeedCursor(cursor)
	if !ok {
		return sar.Invalid("invalid cursor", sar.Field("cursor", "INVALID", "cursor must be one the feed gave"))
	}
	_, last, trimmed, err := s.st.FeedBounds(ctx, inc.GetId())
	if err != nil {
		return err
	}
	resync := "list the team's tasks (ListTasks) and start again from an empty cursor"
	if l, ok := sar.ParseFeedCursor(last); !ok || l.Less(c) {
		return &sar.Error{Kind: sar.KindOutOfRange, Message: "cursor is past the end of this incident's task feed: " + resync,
			Fields: []sar.FieldViolation{sar.Field("cursor", "PAST_END", "not a cursor of this incident's feed")}}
	}
	if tr, ok := sar.ParseFeedCursor(trimmed); ok && c.Less(tr) {
		return &sar.Error{Kind: sar.KindOutOfRange, Message: "the feed no longer holds what followed this cursor: " + resync,
			Fields: []sar.FieldViolation{sar.Field("cursor", "TRIMMED", "items after it were dropped")}}
	}
	return nil
}

// WatchTasks follows an incident's task changes and notices: the doorbell
// of the task and caller streams, which read the store themselves. A
// rescuer with a team hears only its team's tasks and its agency's
// notices (a task taken from the team comes on its subject too); others
// hear all.
func (s *Service) WatchTasks(ctx context.Context, incidentID string) (events <-chan sar.BusEvent, dropped func() int, stop func(), err error) {
	agency, team := "", ""
	if p := auth.FromContext(ctx); p.GetRole() == sarv1.Role_ROLE_RESCUER && p.GetTeamId() != "" {
		agency, team = p.GetAgencyId(), p.GetTeamId()
	}
	return s.bus.WatchTasks(ctx, incidentID, agency, team)
}

// Teams on task: a team that accepts a task is marked on task (so that it
// is not offered more work), and marked available again when that task
// ends, unless someone set another status meanwhile. The team record lives
// outside the incident, so this is a second write after the task's: best
// effort, logged when it fails, and never undone by hand-set statuses.

// onTaskNote is the status note that names the task a team is on.
func onTaskNote(t *sarv1.Task) string { return "on task " + t.GetIncidentId() + "/" + t.GetId() }

// teamOnTask marks the task's team on task.
func (s *Service) teamOnTask(ctx context.Context, t *sarv1.Task) {
	ref := t.GetTeam()
	if ref.GetTeamId() == "" {
		return
	}
	_, err := s.st.UpdateTeam(ctx, ref.GetAgencyId(), ref.GetTeamId(), func(tm *sarv1.Team) error {
		if tm.GetStatus() == sarv1.TeamStatus_TEAM_STATUS_UNAVAILABLE {
			return errNoChange // the team said it cannot go: keep what it said
		}
		tm.Status, tm.StatusNote, tm.StatusTime, tm.StatusBy = sarv1.TeamStatus_TEAM_STATUS_ON_TASK, onTaskNote(t), timestamppb.New(s.now()), systemActor
		return nil
	})
	if err != nil && !errors.Is(err, errNoChange) {
		s.log.Warn("team not marked on task", "team", teamRefOf(ref), "task", t.GetId(), "err", err)
	}
}

// teamOffTask marks a team available again when the task it was put on
// task for ended (or left it), if its status is still that one.
func (s *Service) teamOffTask(ctx context.Context, ref *sarv1.TeamRef, t *sarv1.Task) {
	if ref.GetTeamId() == "" {
		return
	}
	_, err := s.st.UpdateTeam(ctx, ref.GetAgencyId(), ref.GetTeamId(), func(tm *sarv1.Team) error {
		if tm.GetStatus() != sarv1.TeamStatus_TEAM_STATUS_ON_TASK || tm.GetStatusNote() != onTaskNote(t) {
			return errNoChange
		}
		tm.Status, tm.StatusNote, tm.StatusTime, tm.StatusBy = sarv1.TeamStatus_TEAM_STATUS_AVAILABLE, "", timestamppb.New(s.now()), systemActor
		return nil
	})
	if err != nil && !errors.Is(err, errNoChange) && sar.KindOf(err) != sar.KindNotFound {
		s.log.Warn("team not marked available after its task", "team", teamRefOf(ref), "task", t.GetId(), "err", err)
	}
}

// afterTaskChange keeps the team statuses in step with a task change from
// before to after.
func (s *Service) afterTaskChange(ctx context.Context, before sarv1.TaskState, beforeTeam *sarv1.TeamRef, after *sarv1.Task) {
	working := func(st sarv1.TaskState) bool {
		return st == sarv1.TaskState_TASK_STATE_ACCEPTED || st == sarv1.TaskState_TASK_STATE_IN_PROGRESS
	}
	switch {
	case !working(before) && working(after.GetState()):
		s.teamOnTask(ctx, after)
	case working(before) && (!working(after.GetState()) || teamRefOf(beforeTeam) != teamRefOf(after.GetTeam())):
		s.teamOffTask(ctx, beforeTeam, after)
	}
}
