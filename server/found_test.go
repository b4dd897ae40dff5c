package server_test

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
)

// A rescuer reports the mother and daughter found: the incident moves to
// subject found (devices still report, the evacuation gets tasks), every
// open task but a return to base is cancelled and its segment freed,
// every team's devices get the notice with where and how, and each agency
// its copy on NATS. Closing then cancels what is left and ends the
// devices' task streams.
func TestSubjectFound(t *testing.T) {
	e := startEnv(t)
	rec := e.recordNATS()
	c := e.callout()
	sc, tc := e.search(), e.tasks()
	must[*sarv1.SetSearchPlanResponse](t, "SetSearchPlan")(sc.SetSearchPlan(e.as(c.op), &sarv1.SetSearchPlanRequest{IncidentId: c.inc, Cut: 0.5}))
	seg := e.segments(c.op, &sarv1.ListSegmentsRequest{IncidentId: c.inc}).GetSegments()[0].GetId()
	must[*sarv1.AssignSegmentResponse](t, "AssignSegment")(sc.AssignSegment(e.as(c.op), &sarv1.AssignSegmentRequest{IncidentId: c.inc, SegmentId: seg,
		Team: &sarv1.TeamRef{AgencyId: "blue-sky", TeamId: "k9"}}))
	gully := e.offer(c, sarv1.TaskKind_TASK_KIND_GO_TO_POINT, "police-north", "patrol")
	must[*sarv1.AcceptTaskResponse](t, "accept")(tc.AcceptTask(e.as(c.rescuers["police-north/patrol"]), &sarv1.AcceptTaskRequest{IncidentId: c.inc, TaskId: gully.GetId()}))
	rtb := e.offer(c, sarv1.TaskKind_TASK_KIND_RETURN_TO_BASE, "fire-north", "engine")
	e.offer(c, sarv1.TaskKind_TASK_KIND_STAND_BY, "shangcun", "elders")
	phone := e.streamTasks(c.rescuers["police-north/patrol"], c.inc, "")
	phone.backlog()

	// Who may report it.
	link := must[*sarv1.CreateShareLinkResponse](t, "CreateShareLink")(e.auth.CreateShareLink(e.as(c.op), &sarv1.CreateShareLinkRequest{IncidentId: c.inc}))
	found := &sarv1.ReportSubjectFoundRequest{IncidentId: c.inc, Position: &sarv1.LatLng{Lat: 30.251, Lng: 119.719},
		Condition: sarv1.SubjectCondition_SUBJECT_CONDITION_INJURED, Note: "both at the stream crossing, the girl has a sprained ankle"}
	_, err := e.inc.ReportSubjectFound(e.as(link.GetToken()), found)
	wantCode(t, "the caller reports found", err, codes.PermissionDenied)
	_, err = e.inc.ReportSubjectFound(e.as(e.operator("south")), found)
	wantCode(t, "another jurisdiction's operator reports found", err, codes.NotFound)
	_, err = e.inc.ReportSubjectFound(e.as(c.op), &sarv1.ReportSubjectFoundRequest{IncidentId: c.inc})
	wantCode(t, "found without a position", err, codes.InvalidArgument)

	res := must[*sarv1.ReportSubjectFoundResponse](t, "ReportSubjectFound")(e.inc.ReportSubjectFound(e.as(c.rescuers["blue-sky/k9"]), found))
	inc := res.GetIncident()
	if inc.GetState() != sarv1.IncidentState_INCIDENT_STATE_SUBJECT_FOUND || inc.GetFound().GetTeam().GetTeamId() != "k9" ||
		inc.GetFound().GetCondition() != sarv1.SubjectCondition_SUBJECT_CONDITION_INJURED || res.GetTasksCancelled() != 3 {
		t.Fatalf("after the report: %v, %d tasks cancelled; want subject found by k9, injured, 3 cancelled", inc, res.GetTasksCancelled())
	}
	for _, tk := range must[*sarv1.ListTasksResponse](t, "ListTasks")(tc.ListTasks(e.as(c.op), &sarv1.ListTasksRequest{IncidentId: c.inc})).GetTasks() {
		want := sarv1.TaskState_TASK_STATE_CANCELLED
		if tk.GetId() == rtb.GetId() {
			want = sarv1.TaskState_TASK_STATE_OFFERED
		}
		if tk.GetState() != want {
			t.Errorf("task %q after found is %v, want %v", tk.GetTitle(), tk.GetState(), want)
		}
		if want == sarv1.TaskState_TASK_STATE_CANCELLED && !strings.Contains(lastNote(tk), "subject found: both at the stream") {
			t.Errorf("cancellation note %q, want the found reason", lastNote(tk))
		}
	}
	for _, sg := range e.segments(c.op, &sarv1.ListSegmentsRequest{IncidentId: c.inc}).GetSegments() {
		if sg.GetId() == seg && sg.GetAssignedTeam().GetTeamId() != "k9" {
			t.Errorf("segment %d after found is assigned to %v, want k9 kept as the record of who searched it", sg.GetId(), sg.GetAssignedTeam())
		}
	}
	// The patrol's phone: its task cancelled, then the notice with where.
	if it := phone.next("cancelled"); it.GetTask().GetId() != gully.GetId() || it.GetTask().GetState() != sarv1.TaskState_TASK_STATE_CANCELLED {
		t.Errorf("first item after found = %v, want the patrol's task cancelled", it)
	}
	if it := phone.next("found notice"); it.GetNotice() != sarv1.TaskNoticeKind_TASK_NOTICE_KIND_SUBJECT_FOUND || it.GetIncident().GetFound().GetPosition() == nil {
		t.Errorf("second item after found = %v, want the found notice with the position", it)
	}
	eventually(t, "found notices to every agency", func() bool {
		return rec.count(func(ev *sarv1.Event) bool {
			return ev.GetTaskChanged().GetNotice() == sarv1.TaskNoticeKind_TASK_NOTICE_KIND_SUBJECT_FOUND
		}) == 4 && rec.count(func(ev *sarv1.Event) bool {
			return ev.GetIncidentChanged().GetChange() == sarv1.IncidentChange_INCIDENT_CHANGE_SUBJECT_FOUND
		}) == 1
	})

	// The search is over, the evacuation is not.
	_, err = sc.SetSearchPlan(e.as(c.op), &sarv1.SetSearchPlanRequest{IncidentId: c.inc})
	wantCode(t, "a search plan after found", err, codes.FailedPrecondition)
	_, err = tc.CreateTask(e.as(c.op), &sarv1.CreateTaskRequest{IncidentId: c.inc, Kind: sarv1.TaskKind_TASK_KIND_SEARCH_SEGMENT, SegmentId: seg,
		Team: &sarv1.TeamRef{AgencyId: "blue-sky", TeamId: "k9"}})
	wantCode(t, "a segment search after found", err, codes.FailedPrecondition)
	evac := e.offer(c, sarv1.TaskKind_TASK_KIND_GO_TO_POINT, "police-north", "patrol", func(r *sarv1.CreateTaskRequest) {
		r.Title, r.Point = "Stretcher to the stream crossing", found.Position
	})
	if it := phone.next("evacuation task"); it.GetTask().GetId() != evac.GetId() {
		t.Errorf("item = %v, want the evacuation task", it)
	}
	// A second team reports it too: nothing changes, the evacuation task
	// stays, no second notice.
	again := must[*sarv1.ReportSubjectFoundResponse](t, "repeat")(e.inc.ReportSubjectFound(e.as(c.rescuers["fire-north/engine"]), found))
	if again.GetTasksCancelled() != 0 || !again.GetIncident().GetFound().GetTime().AsTime().Equal(inc.GetFound().GetTime().AsTime()) {
		t.Errorf("repeated report = %v, want the first report kept and nothing cancelled", again)
	}
	phone.quiet("a repeated report", 500*time.Millisecond)
	e.join(c.rescuers["police-north/patrol"], c.inc, "patrol-phone")
	if ack := e.openDevice(c.rescuers["police-north/patrol"], c.inc, "patrol-phone").send(walk(1, 3, time.Now())...); len(ack.GetStored()) != 3 {
		t.Errorf("fixes after found: ack %v, want stored (the evacuation is tracked)", ack)
	}

	// Closing cancels what is left, tells everyone, ends the streams.
	must[*sarv1.CloseIncidentResponse](t, "CloseIncident")(e.inc.CloseIncident(e.as(c.op), &sarv1.CloseIncidentRequest{IncidentId: c.inc,
		Outcome: sarv1.IncidentOutcome_INCIDENT_OUTCOME_FOUND_ALIVE, Note: "both at the township hospital"}))
	if it := phone.next("evacuation cancelled"); it.GetTask().GetId() != evac.GetId() || it.GetTask().GetState() != sarv1.TaskState_TASK_STATE_CANCELLED {
		t.Errorf("item after close = %v, want the evacuation task cancelled", it)
	}
	if it := phone.next("closed notice"); it.GetNotice() != sarv1.TaskNoticeKind_TASK_NOTICE_KIND_INCIDENT_CLOSED ||
		it.GetIncident().GetOutcome() != sarv1.IncidentOutcome_INCIDENT_OUTCOME_FOUND_ALIVE {
		t.Errorf("item after close = %v, want the closed notice with the outcome", it)
	}
	select {
	case it, ok := <-phone.items:
		if ok {
			t.Errorf("task stream went on after the closed notice: %v", it)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("task stream did not end after the incident closed")
	}
	closedInc := must[*sarv1.GetIncidentResponse](t, "GetIncident")(e.inc.GetIncident(e.as(c.op), &sarv1.GetIncidentRequest{IncidentId: c.inc})).GetIncident()
	if f := closedInc.GetFound(); f.GetNote() != "" || f.GetPosition().GetLat() != 30.25 || f.GetCondition() != sarv1.SubjectCondition_SUBJECT_CONDITION_INJURED {
		t.Errorf("found report after close = %v, want the note dropped, the position rounded to 0.01° and the condition kept", f)
	}
	tk := must[*sarv1.GetTaskResponse](t, "GetTask")(tc.GetTask(e.as(c.op), &sarv1.GetTaskRequest{IncidentId: c.inc, TaskId: rtb.GetId()})).GetTask()
	if tk.GetState() != sarv1.TaskState_TASK_STATE_CANCELLED {
		t.Errorf("return to base after close = %v, want cancelled", tk.GetState())
	}
	// Tasks and the feed (which holds where the subject was found) expire
	// with the rest of the incident's location data.
	for _, k := range []string{"tasks", "tver", "feed"} {
		if ttl := e.rdb.TTL(t.Context(), "sar:{"+c.inc+"}:"+k).Val(); ttl <= 0 {
			t.Errorf("TTL of %s after close = %v, want the retention", k, ttl)
		}
	}
	// An incident closed before any task: its closing notice's feed expires too.
	quiet := e.createIncident(c.op, "blue-sky").GetId()
	must[*sarv1.CloseIncidentResponse](t, "close")(e.inc.CloseIncident(e.as(c.op), &sarv1.CloseIncidentRequest{IncidentId: quiet,
		Outcome: sarv1.IncidentOutcome_INCIDENT_OUTCOME_FALSE_ALARM}))
	if ttl := e.rdb.TTL(t.Context(), "sar:{"+quiet+"}:feed").Val(); ttl <= 0 {
		t.Errorf("TTL of a feed made by the closing notice = %v, want the retention", ttl)
	}
}
