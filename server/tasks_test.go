package server_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/mountain-sar/sar/dispatch"
	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/app"
)

func (e *env) tasks() sarv1.TaskServiceClient { return sarv1.NewTaskServiceClient(e.conn) }

// callout is the seed story's incident with four agencies of different
// kinds assigned, a team each, and a rescuer credential per team.
type callout struct {
	op, inc  string
	rescuers map[string]string // "agency/team" -> rescuer token
}

func (e *env) callout() *callout {
	e.t.Helper()
	op := e.operator("north")
	c := &callout{op: op, rescuers: map[string]string{}}
	teams := []struct {
		agency, team string
		kind         sarv1.AgencyKind
	}{
		{"police-north", "patrol", sarv1.AgencyKind_AGENCY_KIND_POLICE_STATION},
		{"blue-sky", "k9", sarv1.AgencyKind_AGENCY_KIND_VOLUNTEER_RESCUE},
		{"fire-north", "engine", sarv1.AgencyKind_AGENCY_KIND_FIRE_BRIGADE},
		{"shangcun", "elders", sarv1.AgencyKind_AGENCY_KIND_VILLAGERS},
	}
	var agencies []string
	for _, tm := range teams {
		e.createAgency(tm.agency, "north", tm.kind)
		e.createTeam(op, &sarv1.Team{AgencyId: tm.agency, Id: tm.team, Name: tm.team})
		c.rescuers[tm.agency+"/"+tm.team] = e.rescuer(tm.agency, tm.team)
		agencies = append(agencies, tm.agency)
	}
	c.inc = e.createIncident(op, agencies...).GetId()
	return c
}

func (e *env) offer(c *callout, kind sarv1.TaskKind, agency, team string, mod ...func(*sarv1.CreateTaskRequest)) *sarv1.Task {
	e.t.Helper()
	req := &sarv1.CreateTaskRequest{IncidentId: c.inc, Kind: kind, Team: &sarv1.TeamRef{AgencyId: agency, TeamId: team},
		Instructions: "Search the gully below the north ridge trail", Point: &sarv1.LatLng{Lat: 30.25, Lng: 119.72}}
	for _, m := range mod {
		m(req)
	}
	return must[*sarv1.CreateTaskResponse](e.t, "CreateTask")(e.tasks().CreateTask(e.as(c.op), req)).GetTask()
}

// taskStream is a device's StreamTasks reader.
type taskStream struct {
	t      *testing.T
	cancel context.CancelFunc
	items  chan *sarv1.StreamTasksResponse
	err    chan error
}

func (e *env) streamTasks(token, incident, cursor string) *taskStream {
	e.t.Helper()
	ctx, cancel := context.WithCancel(e.as(token))
	st, err := e.tasks().StreamTasks(ctx, &sarv1.StreamTasksRequest{IncidentId: incident, Cursor: cursor})
	if err != nil {
		cancel()
		e.t.Fatalf("StreamTasks: %v", err)
	}
	ts := &taskStream{t: e.t, cancel: cancel, items: make(chan *sarv1.StreamTasksResponse, 100), err: make(chan error, 1)}
	go func() {
		for {
			it, err := st.Recv()
			if err != nil {
				ts.err <- err
				close(ts.items)
				return
			}
			ts.items <- it
		}
	}()
	e.t.Cleanup(cancel)
	return ts
}

// next returns the next item, failing after 10 s.
func (ts *taskStream) next(what string) *sarv1.StreamTasksResponse {
	ts.t.Helper()
	select {
	case it, ok := <-ts.items:
		if !ok {
			ts.t.Fatalf("%s: task stream ended: %v", what, <-ts.err)
		}
		return it
	case <-time.After(10 * time.Second):
		ts.t.Fatalf("%s: no task stream item within 10 s", what)
	}
	return nil
}

// backlog reads items up to the caught_up marker.
func (ts *taskStream) backlog() (items []*sarv1.StreamTasksResponse, cursor string) {
	ts.t.Helper()
	for {
		it := ts.next("backlog")
		if it.GetCaughtUp() {
			return items, it.GetCursor()
		}
		items = append(items, it)
	}
}

// quiet checks that no item arrives for a while.
func (ts *taskStream) quiet(what string, d time.Duration) {
	ts.t.Helper()
	select {
	case it := <-ts.items:
		ts.t.Errorf("%s: unexpected task stream item %v", what, it)
	case <-time.After(d):
	}
}

func describe(items []*sarv1.StreamTasksResponse) string {
	var b []string
	for _, it := range items {
		s := it.GetTask().GetTitle() + ":" + strings.TrimPrefix(it.GetTask().GetState().String(), "TASK_STATE_")
		if it.GetNotice() != sarv1.TaskNoticeKind_TASK_NOTICE_KIND_UNSPECIFIED {
			s = "notice " + s
		}
		b = append(b, s)
	}
	return strings.Join(b, ", ")
}

// The seed story's fan-out: tasks go to four agencies of different kinds;
// each agency's NATS subject carries its own team's task and the message
// to all; each team's devices get their own tasks and the message on
// StreamTasks, then live changes; the lifecycle runs offered → accepted
// (ETA) → in progress → completed, and declined.
func TestTaskFanOutAndLifecycle(t *testing.T) {
	e := startEnv(t)
	rec := e.recordNATS()
	c := e.callout()
	patrolPhone := e.streamTasks(c.rescuers["police-north/patrol"], c.inc, "")
	if items, _ := patrolPhone.backlog(); len(items) != 0 {
		t.Errorf("backlog before any task = %s, want empty", describe(items))
	}

	gully := e.offer(c, sarv1.TaskKind_TASK_KIND_GO_TO_POINT, "police-north", "patrol", func(r *sarv1.CreateTaskRequest) { r.Title = "Gully" })
	if gully.GetState() != sarv1.TaskState_TASK_STATE_OFFERED || gully.GetOfferDeadline() == nil || gully.GetVersion() != 1 ||
		len(gully.GetTransitions()) != 1 || gully.GetCreatedBy() == "" {
		t.Errorf("created task = %v, want offered, with a deadline, version 1, one transition, its creator", gully)
	}
	if d := time.Until(gully.GetOfferDeadline().AsTime()); d < 4*time.Minute || d > 5*time.Minute+time.Second {
		t.Errorf("normal priority offer deadline in %v, want 5 min", d)
	}
	e.offer(c, sarv1.TaskKind_TASK_KIND_STAND_BY, "fire-north", "engine", func(r *sarv1.CreateTaskRequest) {
		r.Title, r.Priority, r.AnswerWithin = "Stand by", sarv1.TaskPriority_TASK_PRIORITY_URGENT, durationpb.New(time.Minute)
	})
	_, err := e.tasks().CreateTask(e.as(c.op), &sarv1.CreateTaskRequest{IncidentId: c.inc, Kind: sarv1.TaskKind_TASK_KIND_SEARCH_SEGMENT,
		SegmentId: 1, Team: &sarv1.TeamRef{AgencyId: "blue-sky", TeamId: "k9"}})
	wantCode(t, "a segment task without a search plan", err, codes.FailedPrecondition)
	msg := must[*sarv1.CreateTaskResponse](t, "message")(e.tasks().CreateTask(e.as(c.op), &sarv1.CreateTaskRequest{IncidentId: c.inc,
		Kind: sarv1.TaskKind_TASK_KIND_MESSAGE, Title: "Weather", Instructions: "Thunderstorm from 18:00: leave the ridges by 17:30"})).GetTask()
	if msg.GetState() != sarv1.TaskState_TASK_STATE_POSTED || msg.GetTeam() != nil {
		t.Errorf("message = %v, want posted to no team", msg)
	}

	// The patrol's phone hears its task and the message, live, not the
	// others' tasks.
	if it := patrolPhone.next("offer"); it.GetTask().GetId() != gully.GetId() || it.GetCursor() == "" {
		t.Errorf("first live item = %v, want the gully task with a cursor", it)
	}
	if it := patrolPhone.next("message"); it.GetTask().GetId() != msg.GetId() || it.GetNotice() != sarv1.TaskNoticeKind_TASK_NOTICE_KIND_MESSAGE {
		t.Errorf("second live item = %v, want the message as a notice", it)
	}
	// A phone of the villagers that starts now gets the message only.
	elders := e.streamTasks(c.rescuers["shangcun/elders"], c.inc, "")
	if items, _ := elders.backlog(); describe(items) != "notice Weather:POSTED" {
		t.Errorf("villagers' backlog = %s, want only the message", describe(items))
	}

	// NATS: each agency's subjects carry exactly its own.
	eventually(t, "task events on NATS", func() bool {
		return rec.count(func(ev *sarv1.Event) bool { return ev.GetTaskChanged() != nil }) >= 2+4
	})
	rec.mu.Lock()
	subjects := map[string]int{}
	for i, ev := range rec.events {
		if ev.GetTaskChanged() != nil {
			subjects[strings.TrimPrefix(rec.subj[i], "sar.v1.inc."+c.inc+".")]++
		}
	}
	rec.mu.Unlock()
	for _, want := range []string{"evt.task.police-north.patrol", "evt.task.fire-north.engine", "evt.notice.police-north",
		"evt.notice.blue-sky", "evt.notice.fire-north", "evt.notice.shangcun"} {
		if subjects[want] != 1 {
			t.Errorf("events on %s = %d, want 1 (all: %v)", want, subjects[want], subjects)
		}
	}

	// Lifecycle, answered by the team's rescuer.
	patrol := c.rescuers["police-north/patrol"]
	tc := e.tasks()
	acc := must[*sarv1.AcceptTaskResponse](t, "AcceptTask")(tc.AcceptTask(e.as(patrol), &sarv1.AcceptTaskRequest{IncidentId: c.inc,
		TaskId: gully.GetId(), Eta: durationpb.New(40 * time.Minute), Note: "two officers"})).GetTask()
	if acc.GetState() != sarv1.TaskState_TASK_STATE_ACCEPTED || acc.GetEta() == nil || acc.GetOfferDeadline() != nil || acc.GetVersion() != 2 {
		t.Errorf("accepted task = %v, want accepted, with an ETA, no deadline, version 2", acc)
	}
	if tr := acc.GetTransitions()[1]; !strings.Contains(tr.GetNote(), "ETA 40m") || tr.GetActor() == "" {
		t.Errorf("accept transition = %v, want the ETA and the actor", tr)
	}
	teamStatus := func() sarv1.TeamStatus {
		for _, tm := range must[*sarv1.ListTeamsResponse](t, "ListTeams")(e.agency.ListTeams(e.as(c.op), &sarv1.ListTeamsRequest{AgencyId: "police-north"})).GetTeams() {
			if tm.GetId() == "patrol" {
				return tm.GetStatus()
			}
		}
		return -1
	}
	if st := teamStatus(); st != sarv1.TeamStatus_TEAM_STATUS_ON_TASK {
		t.Errorf("patrol's status after accepting = %v, want on task", st)
	}
	again := must[*sarv1.AcceptTaskResponse](t, "AcceptTask again")(tc.AcceptTask(e.as(patrol), &sarv1.AcceptTaskRequest{IncidentId: c.inc, TaskId: gully.GetId()})).GetTask()
	if again.GetVersion() != 2 {
		t.Errorf("a retried accept changed the task to version %d, want it unchanged", again.GetVersion())
	}
	if it := patrolPhone.next("accepted"); it.GetTask().GetState() != sarv1.TaskState_TASK_STATE_ACCEPTED {
		t.Errorf("live item after accepting = %v", it)
	}
	prog := must[*sarv1.ReportTaskProgressResponse](t, "progress")(tc.ReportTaskProgress(e.as(patrol), &sarv1.ReportTaskProgressRequest{
		IncidentId: c.inc, TaskId: gully.GetId(), ProgressPercent: 30, Note: "upper gully clear"})).GetTask()
	if prog.GetState() != sarv1.TaskState_TASK_STATE_IN_PROGRESS || prog.GetProgressPercent() != 30 {
		t.Errorf("after a progress report = %v, want in progress at 30 %%", prog)
	}
	done := must[*sarv1.CompleteTaskResponse](t, "complete")(tc.CompleteTask(e.as(patrol), &sarv1.CompleteTaskRequest{
		IncidentId: c.inc, TaskId: gully.GetId(), CoveredAreaM2: 120_000, Findings: "a blue scarf at the stream crossing"})).GetTask()
	if done.GetState() != sarv1.TaskState_TASK_STATE_COMPLETED || done.GetFindings() == "" || len(done.GetTransitions()) != 4 {
		t.Errorf("completed task = %v, want completed with findings and 4 transitions", done)
	}
	if st := teamStatus(); st != sarv1.TeamStatus_TEAM_STATUS_AVAILABLE {
		t.Errorf("patrol's status after completing = %v, want available again", st)
	}
	for _, want := range []sarv1.TaskState{sarv1.TaskState_TASK_STATE_IN_PROGRESS, sarv1.TaskState_TASK_STATE_COMPLETED} {
		if it := patrolPhone.next(want.String()); it.GetTask().GetState() != want {
			t.Errorf("live item = %v, want %v", it.GetTask().GetState(), want)
		}
	}
	_, err = tc.AcceptTask(e.as(patrol), &sarv1.AcceptTaskRequest{IncidentId: c.inc, TaskId: gully.GetId()})
	wantCode(t, "accept a completed task", err, codes.FailedPrecondition)
	_, err = tc.CancelTask(e.as(c.op), &sarv1.CancelTaskRequest{IncidentId: c.inc, TaskId: gully.GetId(), Reason: "x"})
	wantCode(t, "cancel a completed task", err, codes.FailedPrecondition)

	// The fire brigade declines; the operator offers it to the volunteers,
	// never back to the brigade.
	fire := c.rescuers["fire-north/engine"]
	list := must[*sarv1.ListTasksResponse](t, "ListTasks")(tc.ListTasks(e.as(fire), &sarv1.ListTasksRequest{IncidentId: c.inc}))
	if len(list.GetTasks()) != 2 {
		t.Fatalf("the brigade lists %d tasks, want its own and the message", len(list.GetTasks()))
	}
	standby := list.GetTasks()[0]
	if standby.GetKind() != sarv1.TaskKind_TASK_KIND_STAND_BY {
		standby = list.GetTasks()[1]
	}
	_, err = tc.DeclineTask(e.as(fire), &sarv1.DeclineTaskRequest{IncidentId: c.inc, TaskId: standby.GetId()})
	wantCode(t, "decline without a reason", err, codes.InvalidArgument)
	dec := must[*sarv1.DeclineTaskResponse](t, "decline")(tc.DeclineTask(e.as(fire), &sarv1.DeclineTaskRequest{IncidentId: c.inc,
		TaskId: standby.GetId(), Reason: "on another call"})).GetTask()
	if dec.GetState() != sarv1.TaskState_TASK_STATE_DECLINED || len(dec.GetDeclinedBy()) != 1 {
		t.Errorf("declined task = %v", dec)
	}
	_, err = tc.ReassignTask(e.as(c.op), &sarv1.ReassignTaskRequest{IncidentId: c.inc, TaskId: standby.GetId(),
		Team: &sarv1.TeamRef{AgencyId: "fire-north", TeamId: "engine"}})
	wantCode(t, "reassign to the team that declined", err, codes.FailedPrecondition)
	re := must[*sarv1.ReassignTaskResponse](t, "reassign")(tc.ReassignTask(e.as(c.op), &sarv1.ReassignTaskRequest{IncidentId: c.inc,
		TaskId: standby.GetId(), Team: &sarv1.TeamRef{AgencyId: "blue-sky", TeamId: "k9"}})).GetTask()
	if re.GetState() != sarv1.TaskState_TASK_STATE_OFFERED || re.GetTeam().GetAgencyId() != "blue-sky" || re.GetOfferDeadline() == nil {
		t.Errorf("reassigned task = %v, want offered to blue-sky/k9 with a new deadline", re)
	}
	// The brigade no longer sees it; the volunteers do.
	_, err = tc.GetTask(e.as(fire), &sarv1.GetTaskRequest{IncidentId: c.inc, TaskId: standby.GetId()})
	wantCode(t, "the brigade reads a task now the volunteers'", err, codes.NotFound)
	must[*sarv1.GetTaskResponse](t, "volunteers read it")(tc.GetTask(e.as(c.rescuers["blue-sky/k9"]), &sarv1.GetTaskRequest{IncidentId: c.inc, TaskId: standby.GetId()}))
	patrolPhone.quiet("other teams' changes", 300*time.Millisecond)
}

// A phone offline for hours comes back with its cursor and gets exactly
// the items it missed, once, in order, then live ones.
func TestTaskStreamResumesFromCursor(t *testing.T) {
	e := startEnv(t)
	c := e.callout()
	k9 := c.rescuers["blue-sky/k9"]
	first := e.offer(c, sarv1.TaskKind_TASK_KIND_GO_TO_POINT, "blue-sky", "k9", func(r *sarv1.CreateTaskRequest) { r.Title = "A" })
	phone := e.streamTasks(k9, c.inc, "")
	items, cursor := phone.backlog()
	if describe(items) != "A:OFFERED" {
		t.Fatalf("backlog = %s, want A offered", describe(items))
	}
	phone.cancel() // into the valley: no signal

	tc := e.tasks()
	must[*sarv1.AcceptTaskResponse](t, "accept A by phone call")(tc.AcceptTask(e.as(c.op), &sarv1.AcceptTaskRequest{IncidentId: c.inc, TaskId: first.GetId()}))
	e.offer(c, sarv1.TaskKind_TASK_KIND_STAND_BY, "blue-sky", "k9", func(r *sarv1.CreateTaskRequest) { r.Title = "B" })
	e.offer(c, sarv1.TaskKind_TASK_KIND_STAND_BY, "police-north", "patrol", func(r *sarv1.CreateTaskRequest) { r.Title = "not ours" })
	must[*sarv1.CreateTaskResponse](t, "message")(tc.CreateTask(e.as(c.op), &sarv1.CreateTaskRequest{IncidentId: c.inc,
		Kind: sarv1.TaskKind_TASK_KIND_MESSAGE, Title: "M", Instructions: "Radio check at 16:00"}))

	back := e.streamTasks(k9, c.inc, cursor)
	missed, cursor2 := back.backlog()
	if got := describe(missed); got != "A:ACCEPTED, B:OFFERED, notice M:POSTED" {
		t.Errorf("missed items = %s, want A accepted, B offered, the message, in order", got)
	}
	for i := 1; i < len(missed); i++ {
		if missed[i].GetCursor() <= missed[i-1].GetCursor() && len(missed[i].GetCursor()) == len(missed[i-1].GetCursor()) {
			t.Errorf("cursors out of order: %s then %s", missed[i-1].GetCursor(), missed[i].GetCursor())
		}
	}
	// Live after the backlog; and the same cursor again gives nothing new.
	e.offer(c, sarv1.TaskKind_TASK_KIND_RETURN_TO_BASE, "blue-sky", "k9", func(r *sarv1.CreateTaskRequest) { r.Title = "C" })
	if it := back.next("live"); it.GetTask().GetTitle() != "C" {
		t.Errorf("live item = %v, want C", it)
	}
	again := e.streamTasks(k9, c.inc, cursor2)
	if items, _ := again.backlog(); describe(items) != "C:OFFERED" {
		t.Errorf("backlog after the caught-up cursor = %s, want only C", describe(items))
	}
	_, err := tc.CreateTask(e.as(c.op), &sarv1.CreateTaskRequest{IncidentId: c.inc, Kind: sarv1.TaskKind_TASK_KIND_STAND_BY,
		Team: &sarv1.TeamRef{AgencyId: "blue-sky", TeamId: "k9"}, RequestId: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	if it := back.next("live D"); it.GetTask().GetKind() != sarv1.TaskKind_TASK_KIND_STAND_BY {
		t.Errorf("live item = %v", it)
	}
	// A retried creation (same request id) makes nothing new.
	dup, err := tc.CreateTask(e.as(c.op), &sarv1.CreateTaskRequest{IncidentId: c.inc, Kind: sarv1.TaskKind_TASK_KIND_STAND_BY,
		Team: &sarv1.TeamRef{AgencyId: "blue-sky", TeamId: "k9"}, RequestId: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	back.quiet("a retried creation", 500*time.Millisecond)
	list := must[*sarv1.ListTasksResponse](t, "ListTasks")(tc.ListTasks(e.as(c.op), &sarv1.ListTasksRequest{IncidentId: c.inc,
		Team: &sarv1.TeamRef{AgencyId: "blue-sky", TeamId: "k9"}, States: []sarv1.TaskState{sarv1.TaskState_TASK_STATE_OFFERED}}))
	n := 0
	for _, tk := range list.GetTasks() {
		if tk.GetId() == dup.GetTask().GetId() {
			n++
		}
	}
	if n != 1 || len(list.GetTasks()) != 3 {
		t.Errorf("offered tasks of k9 = %d (the retried one %d times), want B, C, D once each", len(list.GetTasks()), n)
	}
	// Operators and teamless rescuers have no task stream; a bad cursor is refused.
	bad, _ := e.tasks().StreamTasks(e.as(c.op), &sarv1.StreamTasksRequest{IncidentId: c.inc})
	if _, err := bad.Recv(); status.Code(err) != codes.PermissionDenied {
		t.Errorf("operator StreamTasks = %v, want PERMISSION_DENIED", err)
	}
	bad, _ = e.tasks().StreamTasks(e.as(k9), &sarv1.StreamTasksRequest{IncidentId: c.inc, Cursor: "x-1"})
	if _, err := bad.Recv(); status.Code(err) != codes.InvalidArgument {
		t.Errorf("StreamTasks with a bad cursor = %v, want INVALID_ARGUMENT", err)
	}
	// A cursor this feed never gave (another incident's, a skewed clock):
	// the device must resync rather than wait for ids to catch up.
	bad, _ = e.tasks().StreamTasks(e.as(k9), &sarv1.StreamTasksRequest{IncidentId: c.inc, Cursor: "99999999999999-0"})
	if _, err := bad.Recv(); status.Code(err) != codes.OutOfRange {
		t.Errorf("StreamTasks with a cursor past the end = %v, want OUT_OF_RANGE", err)
	}
}

// Concurrent answers are decided by compare-and-set: of many accepts of
// one version, exactly one changes the task.
func TestTaskConcurrentAnswers(t *testing.T) {
	e := startEnv(t)
	c := e.callout()
	task := e.offer(c, sarv1.TaskKind_TASK_KIND_GO_TO_POINT, "blue-sky", "k9")
	const n = 8
	var wg sync.WaitGroup
	codesSeen := make(chan codes.Code, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if i%2 == 0 {
				_, err = e.tasks().AcceptTask(e.as(c.rescuers["blue-sky/k9"]), &sarv1.AcceptTaskRequest{IncidentId: c.inc, TaskId: task.GetId(), ExpectVersion: 1})
			} else {
				_, err = e.tasks().DeclineTask(e.as(c.rescuers["blue-sky/k9"]), &sarv1.DeclineTaskRequest{IncidentId: c.inc, TaskId: task.GetId(),
					Reason: fmt.Sprintf("no %d", i), ExpectVersion: 1})
			}
			codesSeen <- status.Code(err)
		}()
	}
	wg.Wait()
	close(codesSeen)
	ok := 0
	for c := range codesSeen {
		switch c {
		case codes.OK:
			ok++
		case codes.Aborted:
		default:
			t.Errorf("concurrent answer got %v, want OK or ABORTED", c)
		}
	}
	got := must[*sarv1.GetTaskResponse](t, "GetTask")(e.tasks().GetTask(e.as(c.op), &sarv1.GetTaskRequest{IncidentId: c.inc, TaskId: task.GetId()})).GetTask()
	if ok != 1 || got.GetVersion() != 2 || len(got.GetTransitions()) != 2 {
		t.Errorf("%d answers succeeded, task at version %d with %d transitions; want exactly one answer applied", ok, got.GetVersion(), len(got.GetTransitions()))
	}
}

// A segment's assignment and its task move together: assigning offers a
// task, reassigning moves it, freeing cancels it, declining frees the
// segment; a segment that has an open task cannot get a second one.
func TestSegmentTasksFollowAssignments(t *testing.T) {
	e := startEnv(t)
	c := e.callout()
	sc, tc := e.search(), e.tasks()
	must[*sarv1.SetSearchPlanResponse](t, "SetSearchPlan")(sc.SetSearchPlan(e.as(c.op), &sarv1.SetSearchPlanRequest{IncidentId: c.inc, Cut: 0.5}))
	segs := e.segments(c.op, &sarv1.ListSegmentsRequest{IncidentId: c.inc})
	if len(segs.GetSegments()) < 2 {
		t.Fatalf("%d segments, want at least 2", len(segs.GetSegments()))
	}
	id := segs.GetSegments()[0].GetId()
	segTasks := func() []*sarv1.Task {
		var out []*sarv1.Task
		for _, tk := range must[*sarv1.ListTasksResponse](t, "ListTasks")(tc.ListTasks(e.as(c.op), &sarv1.ListTasksRequest{IncidentId: c.inc})).GetTasks() {
			if tk.GetSegmentId() == id {
				out = append(out, tk)
			}
		}
		return out
	}
	assign := func(agency, team string, reassign bool) {
		t.Helper()
		var ref *sarv1.TeamRef
		if agency != "" {
			ref = &sarv1.TeamRef{AgencyId: agency, TeamId: team}
		}
		must[*sarv1.AssignSegmentResponse](t, "AssignSegment")(sc.AssignSegment(e.as(c.op), &sarv1.AssignSegmentRequest{IncidentId: c.inc,
			SegmentId: id, Team: ref, Reassign: reassign}))
	}
	assign("blue-sky", "k9", false)
	ts := segTasks()
	if len(ts) != 1 || ts[0].GetState() != sarv1.TaskState_TASK_STATE_OFFERED || ts[0].GetTeam().GetTeamId() != "k9" ||
		ts[0].GetKind() != sarv1.TaskKind_TASK_KIND_SEARCH_SEGMENT {
		t.Fatalf("tasks of segment %d after assigning = %v, want one offered to k9", id, ts)
	}
	taskID := ts[0].GetId()
	_, err := tc.CreateTask(e.as(c.op), &sarv1.CreateTaskRequest{IncidentId: c.inc, Kind: sarv1.TaskKind_TASK_KIND_SEARCH_SEGMENT,
		SegmentId: id, Team: &sarv1.TeamRef{AgencyId: "police-north", TeamId: "patrol"}})
	wantCode(t, "a second task for a segment with an open one", err, codes.FailedPrecondition)

	assign("police-north", "patrol", true)
	if ts := segTasks(); len(ts) != 1 || ts[0].GetId() != taskID || ts[0].GetTeam().GetAgencyId() != "police-north" || ts[0].GetState() != sarv1.TaskState_TASK_STATE_OFFERED {
		t.Errorf("after reassigning the segment: %v, want the same task offered to the patrol", ts)
	}
	// The patrol declines: the segment is free again.
	must[*sarv1.DeclineTaskResponse](t, "decline")(tc.DeclineTask(e.as(c.rescuers["police-north/patrol"]), &sarv1.DeclineTaskRequest{IncidentId: c.inc, TaskId: taskID, Reason: "no"}))
	for _, sg := range e.segments(c.op, &sarv1.ListSegmentsRequest{IncidentId: c.inc}).GetSegments() {
		if sg.GetId() == id && sg.GetAssignedTeam() != nil {
			t.Errorf("segment %d after its task was declined is assigned to %v, want free", id, sg.GetAssignedTeam())
		}
	}
	// Assigning it again re-offers the declined task to the new team.
	assign("fire-north", "engine", false)
	if ts := segTasks(); len(ts) != 1 || ts[0].GetId() != taskID || ts[0].GetTeam().GetAgencyId() != "fire-north" {
		t.Errorf("after assigning the declined segment: %v, want the same task offered to the engine", ts)
	}
	// Freeing cancels it.
	assign("", "", false)
	if ts := segTasks(); len(ts) != 1 || ts[0].GetState() != sarv1.TaskState_TASK_STATE_CANCELLED {
		t.Errorf("after freeing the segment: %v, want its task cancelled", ts)
	}
	// A task created for a segment assigns it; cancelling it frees it.
	tk := e.offer(c, sarv1.TaskKind_TASK_KIND_SEARCH_SEGMENT, "shangcun", "elders", func(r *sarv1.CreateTaskRequest) { r.SegmentId = id; r.Point = nil })
	assigned := func() string {
		for _, sg := range e.segments(c.op, &sarv1.ListSegmentsRequest{IncidentId: c.inc}).GetSegments() {
			if sg.GetId() == id {
				return sg.GetAssignedTeam().GetAgencyId()
			}
		}
		return "?"
	}
	if a := assigned(); a != "shangcun" {
		t.Errorf("segment after a task was created for it is assigned to %q, want shangcun", a)
	}
	must[*sarv1.CancelTaskResponse](t, "cancel")(tc.CancelTask(e.as(c.op), &sarv1.CancelTaskRequest{IncidentId: c.inc, TaskId: tk.GetId(), Reason: "found elsewhere"}))
	if a := assigned(); a != "" {
		t.Errorf("segment after its task was cancelled is assigned to %q, want free", a)
	}
	// A retried creation of a segment task (same request id) answers with
	// the task made the first time, not "the segment has a task".
	req := &sarv1.CreateTaskRequest{IncidentId: c.inc, Kind: sarv1.TaskKind_TASK_KIND_SEARCH_SEGMENT, SegmentId: id,
		Team: &sarv1.TeamRef{AgencyId: "blue-sky", TeamId: "k9"}, RequestId: "seg-retry"}
	first := must[*sarv1.CreateTaskResponse](t, "create")(tc.CreateTask(e.as(c.op), req)).GetTask()
	if again := must[*sarv1.CreateTaskResponse](t, "retry")(tc.CreateTask(e.as(c.op), req)).GetTask(); again.GetId() != first.GetId() {
		t.Errorf("retried creation made %s, want the first task %s", again.GetId(), first.GetId())
	}
	// k9 declines; the patrol gets the segment with a new task; cancelling
	// the stale declined task leaves the patrol's segment alone.
	must[*sarv1.DeclineTaskResponse](t, "decline")(tc.DeclineTask(e.as(c.rescuers["blue-sky/k9"]), &sarv1.DeclineTaskRequest{IncidentId: c.inc, TaskId: first.GetId(), Reason: "no"}))
	must[*sarv1.CreateTaskResponse](t, "create for the patrol")(tc.CreateTask(e.as(c.op), &sarv1.CreateTaskRequest{IncidentId: c.inc,
		Kind: sarv1.TaskKind_TASK_KIND_SEARCH_SEGMENT, SegmentId: id, Team: &sarv1.TeamRef{AgencyId: "police-north", TeamId: "patrol"}}))
	must[*sarv1.CancelTaskResponse](t, "cancel the declined")(tc.CancelTask(e.as(c.op), &sarv1.CancelTaskRequest{IncidentId: c.inc, TaskId: first.GetId(), Reason: "tidy up"}))
	if a := assigned(); a != "police-north" {
		t.Errorf("segment after cancelling a stale declined task is assigned to %q, want still the patrol", a)
	}
	// SuggestNextTask(assign) offers the task too.
	sug := must[*sarv1.SuggestNextTaskResponse](t, "SuggestNextTask")(sc.SuggestNextTask(e.as(c.op), &sarv1.SuggestNextTaskRequest{IncidentId: c.inc,
		Team: &sarv1.TeamRef{AgencyId: "blue-sky", TeamId: "k9"}, Position: &sarv1.LatLng{Lat: 30.2458, Lng: 119.7156}, Assign: true}))
	found := false
	for _, tk := range must[*sarv1.ListTasksResponse](t, "ListTasks")(tc.ListTasks(e.as(c.rescuers["blue-sky/k9"]), &sarv1.ListTasksRequest{IncidentId: c.inc})).GetTasks() {
		if tk.GetSegmentId() == sug.GetSegment().GetId() && tk.GetState() == sarv1.TaskState_TASK_STATE_OFFERED {
			found = true
		}
	}
	if !found {
		t.Errorf("no offered task for the suggested segment %d", sug.GetSegment().GetId())
	}
}

// Authorization of every task RPC: another agency's rescuer, another
// jurisdiction's operator and a caller see nothing; rescuers cannot
// create or cancel.
func TestTaskAuthorization(t *testing.T) {
	e := startEnv(t)
	c := e.callout()
	task := e.offer(c, sarv1.TaskKind_TASK_KIND_GO_TO_POINT, "blue-sky", "k9")
	tc := e.tasks()
	south := e.operator("south")
	link := must[*sarv1.CreateShareLinkResponse](t, "CreateShareLink")(e.auth.CreateShareLink(e.as(c.op), &sarv1.CreateShareLinkRequest{IncidentId: c.inc}))
	other := e.createIncident(c.op, "blue-sky").GetId()
	ref := &sarv1.GetTaskRequest{IncidentId: c.inc, TaskId: task.GetId()}
	for _, tc2 := range []struct {
		who   string
		token string
		want  codes.Code
	}{
		{"another team's rescuer", c.rescuers["police-north/patrol"], codes.NotFound},
		{"another jurisdiction's operator", south, codes.NotFound},
		{"the caller", link.GetToken(), codes.NotFound},
	} {
		_, err := tc.GetTask(e.as(tc2.token), ref)
		wantCode(t, "GetTask by "+tc2.who, err, tc2.want)
		_, err = tc.AcceptTask(e.as(tc2.token), &sarv1.AcceptTaskRequest{IncidentId: c.inc, TaskId: task.GetId()})
		wantCode(t, "AcceptTask by "+tc2.who, err, tc2.want)
		_, err = tc.CancelTask(e.as(tc2.token), &sarv1.CancelTaskRequest{IncidentId: c.inc, TaskId: task.GetId(), Reason: "x"})
		wantCode(t, "CancelTask by "+tc2.who, err, tc2.want)
		_, err = tc.DeclineTask(e.as(tc2.token), &sarv1.DeclineTaskRequest{IncidentId: c.inc, TaskId: task.GetId(), Reason: "x"})
		wantCode(t, "DeclineTask by "+tc2.who, err, tc2.want)
		_, err = tc.ReportTaskProgress(e.as(tc2.token), &sarv1.ReportTaskProgressRequest{IncidentId: c.inc, TaskId: task.GetId(), ProgressPercent: 5})
		wantCode(t, "ReportTaskProgress by "+tc2.who, err, tc2.want)
		_, err = tc.CompleteTask(e.as(tc2.token), &sarv1.CompleteTaskRequest{IncidentId: c.inc, TaskId: task.GetId()})
		wantCode(t, "CompleteTask by "+tc2.who, err, tc2.want)
		_, err = tc.ReassignTask(e.as(tc2.token), &sarv1.ReassignTaskRequest{IncidentId: c.inc, TaskId: task.GetId(), Team: &sarv1.TeamRef{AgencyId: "police-north", TeamId: "patrol"}})
		if code := status.Code(err); code != tc2.want && code != codes.PermissionDenied {
			t.Errorf("ReassignTask by %s = %v, want %v or PERMISSION_DENIED", tc2.who, err, tc2.want)
		}
		if res, err := tc.ListTasks(e.as(tc2.token), &sarv1.ListTasksRequest{IncidentId: c.inc}); err == nil {
			for _, tk := range res.GetTasks() {
				if tk.GetId() == task.GetId() {
					t.Errorf("ListTasks by %s shows another team's task", tc2.who)
				}
			}
		}
		_, err = tc.SetDispatchSettings(e.as(tc2.token), &sarv1.SetDispatchSettingsRequest{IncidentId: c.inc, Settings: &sarv1.DispatchSettings{}})
		if code := status.Code(err); code != codes.NotFound && code != codes.PermissionDenied {
			t.Errorf("SetDispatchSettings by %s = %v, want NOT_FOUND or PERMISSION_DENIED", tc2.who, err)
		}
	}
	// The task is untouched by all of that.
	if got := must[*sarv1.GetTaskResponse](t, "GetTask")(tc.GetTask(e.as(c.op), ref)).GetTask(); got.GetVersion() != 1 {
		t.Errorf("task after the refused calls is at version %d, want 1", got.GetVersion())
	}
	_, err := tc.GetTask(e.as(c.op), &sarv1.GetTaskRequest{IncidentId: other, TaskId: task.GetId()})
	wantCode(t, "a task through another incident", err, codes.NotFound)
	k9 := c.rescuers["blue-sky/k9"]
	_, err = tc.CreateTask(e.as(k9), &sarv1.CreateTaskRequest{IncidentId: c.inc, Kind: sarv1.TaskKind_TASK_KIND_STAND_BY,
		Team: &sarv1.TeamRef{AgencyId: "blue-sky", TeamId: "k9"}})
	wantCode(t, "rescuer CreateTask", err, codes.PermissionDenied)
	_, err = tc.CancelTask(e.as(k9), &sarv1.CancelTaskRequest{IncidentId: c.inc, TaskId: task.GetId(), Reason: "x"})
	wantCode(t, "rescuer CancelTask", err, codes.PermissionDenied)
	_, err = tc.ReassignTask(e.as(k9), &sarv1.ReassignTaskRequest{IncidentId: c.inc, TaskId: task.GetId(), Team: &sarv1.TeamRef{AgencyId: "blue-sky", TeamId: "k9"}})
	wantCode(t, "rescuer ReassignTask", err, codes.PermissionDenied)
	st, _ := tc.StreamTasks(e.as(c.rescuers["police-north/patrol"]), &sarv1.StreamTasksRequest{IncidentId: other})
	if _, err := st.Recv(); status.Code(err) != codes.NotFound {
		t.Errorf("StreamTasks of an incident the team is not in = %v, want NOT_FOUND", err)
	}
	// Bad input: field violations.
	for _, bad := range []struct {
		req   *sarv1.CreateTaskRequest
		field string
	}{
		{&sarv1.CreateTaskRequest{IncidentId: c.inc, Team: &sarv1.TeamRef{AgencyId: "blue-sky", TeamId: "k9"}}, "kind"},
		{&sarv1.CreateTaskRequest{IncidentId: c.inc, Kind: sarv1.TaskKind_TASK_KIND_GO_TO_POINT, Team: &sarv1.TeamRef{AgencyId: "blue-sky", TeamId: "k9"}}, "point"},
		{&sarv1.CreateTaskRequest{IncidentId: c.inc, Kind: sarv1.TaskKind_TASK_KIND_SEARCH_SEGMENT, Team: &sarv1.TeamRef{AgencyId: "blue-sky", TeamId: "k9"}}, "segment_id"},
		{&sarv1.CreateTaskRequest{IncidentId: c.inc, Kind: sarv1.TaskKind_TASK_KIND_MESSAGE}, "instructions"},
		{&sarv1.CreateTaskRequest{IncidentId: c.inc, Kind: sarv1.TaskKind_TASK_KIND_STAND_BY, Team: &sarv1.TeamRef{AgencyId: "blue-sky", TeamId: "k9"},
			AnswerWithin: durationpb.New(time.Second)}, "answer_within"},
		{&sarv1.CreateTaskRequest{IncidentId: c.inc, Kind: sarv1.TaskKind_TASK_KIND_STAND_BY, Team: &sarv1.TeamRef{AgencyId: "blue-sky", TeamId: "k9"},
			Priority: 42}, "priority"},
		{&sarv1.CreateTaskRequest{IncidentId: c.inc, Kind: sarv1.TaskKind_TASK_KIND_STAND_BY, Team: &sarv1.TeamRef{AgencyId: "nobody", TeamId: "k9"}}, "team"},
		{&sarv1.CreateTaskRequest{IncidentId: c.inc, Kind: sarv1.TaskKind_TASK_KIND_STAND_BY, Team: &sarv1.TeamRef{AgencyId: "blue-sky"}}, "team.team_id"},
	} {
		_, err := tc.CreateTask(e.as(c.op), bad.req)
		st := status.Convert(err)
		if st.Code() != codes.InvalidArgument && st.Code() != codes.FailedPrecondition {
			t.Errorf("CreateTask(%v) = %v, want INVALID_ARGUMENT", bad.req, err)
			continue
		}
		if fv := fieldViolations(st); len(fv) == 0 || !strings.HasPrefix(fv[0], bad.field) {
			t.Errorf("CreateTask(%v): field violations %v, want %s", bad.req, fv, bad.field)
		}
	}
}

// A server that dies after a task is stored but before its event reached
// NATS loses nothing: the event waits in the incident's outbox, and another
// replica's relay publishes it, once.
func TestTaskEventSurvivesAServerDeath(t *testing.T) {
	e := startEnv(t)
	c := e.callout()
	cfg := e.app.Config()
	e.nats.Shutdown() // the publish cannot happen
	task := e.offer(c, sarv1.TaskKind_TASK_KIND_STAND_BY, "blue-sky", "k9")
	if n, _ := e.rdb.HLen(t.Context(), "sar:{"+c.inc+"}:outbox").Result(); n == 0 {
		t.Fatalf("outbox after the task write with NATS down is empty")
	}
	if err := e.app.Close(); err != nil { // the server is gone before NATS returns
		t.Fatalf("closing the server: %v", err)
	}
	e.nats.Start()
	b, err := app.Start(context.Background(), cfg, testLogger(t))
	if err != nil {
		t.Fatalf("another replica: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	nc, err := nats.Connect(e.nats.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	subject := "sar.v1.inc." + c.inc + ".evt.task.blue-sky.k9"
	count := func() int {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		oc, err := js.OrderedConsumer(ctx, dispatch.StreamName, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
		if err != nil {
			return 0
		}
		msgs, err := oc.Fetch(100, jetstream.FetchMaxWait(500*time.Millisecond))
		if err != nil {
			return 0
		}
		n := 0
		for m := range msgs.Messages() {
			ev := &sarv1.Event{}
			if proto.Unmarshal(m.Data(), ev) == nil && ev.GetTaskChanged().GetTask().GetId() == task.GetId() {
				n++
			}
		}
		return n
	}
	eventually(t, "the task event published by the other replica", func() bool { return count() >= 1 })
	eventually(t, "the outbox to drain", func() bool {
		n, _ := e.rdb.HLen(context.Background(), "sar:{"+c.inc+"}:outbox").Result()
		return n == 0
	})
	if n := count(); n != 1 {
		t.Errorf("task events in the stream = %d, want exactly 1", n)
	}
}

// NATS goes down mid-dispatch: the task is still created (Redis is the
// record), the team's phone still gets it (its stream reads the feed
// without the doorbell), and once NATS is back the agency's durable
// consumer gets the task event exactly once (the outbox relay).
func TestDispatchThroughNATSOutage(t *testing.T) {
	e := startEnv(t)
	c := e.callout()
	nc, err := nats.Connect(e.nats.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cons, err := js.CreateOrUpdateConsumer(ctx, dispatch.StreamName, jetstream.ConsumerConfig{Durable: "blue-sky-tasks",
		FilterSubject: "sar.v1.inc.*.evt.task.blue-sky.>", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatalf("agency consumer: %v", err)
	}
	phone := e.streamTasks(c.rescuers["blue-sky/k9"], c.inc, "")
	phone.backlog()

	start := time.Now()
	e.nats.Shutdown()
	task := e.offer(c, sarv1.TaskKind_TASK_KIND_STAND_BY, "blue-sky", "k9", func(r *sarv1.CreateTaskRequest) { r.Title = "during the outage" })
	t.Logf("created after %v", time.Since(start))
	if it := phone.next("task during the NATS outage"); it.GetTask().GetId() != task.GetId() {
		t.Errorf("phone got %v during the outage, want the task", it)
	}
	t.Logf("phone got it after %v", time.Since(start))
	e.nats.Start()

	t.Logf("NATS back after %v", time.Since(start))
	ids := map[string]bool{}
	eventually(t, "the task event at the agency's durable consumer", func() bool {
		msgs, err := cons.Fetch(10, jetstream.FetchMaxWait(500*time.Millisecond))
		if err != nil {
			return false
		}
		for m := range msgs.Messages() {
			ev := &sarv1.Event{}
			if proto.Unmarshal(m.Data(), ev) == nil && ev.GetTaskChanged().GetTask().GetId() == task.GetId() {
				ids[ev.GetId()] = true
			}
			_ = m.Ack()
		}
		return len(ids) > 0
	})
	t.Logf("delivered after %v", time.Since(start))
	// Exactly one copy in the stream, whatever the relay's retries (a
	// consumer may still see a redelivery: it drops repeats by event id).
	eventually(t, "the outbox to drain", func() bool {
		n, _ := e.rdb.HLen(context.Background(), "sar:{"+c.inc+"}:outbox").Result()
		return n == 0
	})
	oc, err := js.OrderedConsumer(ctx, dispatch.StreamName, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"sar.v1.inc." + c.inc + ".evt.task.blue-sky.k9"}})
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := oc.Fetch(100, jetstream.FetchMaxWait(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for range msgs.Messages() {
		n++
	}
	if n != 1 || len(ids) != 1 {
		t.Errorf("task events in the stream = %d, distinct at the consumer = %d; want exactly 1", n, len(ids))
	}
}
