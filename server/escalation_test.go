package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/app"
)

// fastDeadlines lets offers lapse within a test: answer times from 100 ms,
// swept every 50 ms.
func fastDeadlines(c *app.Config) {
	c.MinAnswerWithin, c.EscalationInterval = 100*time.Millisecond, 50*time.Millisecond
}

// available sets teams available at d metres east of the planning point.
func (e *env) available(c *callout, at map[string]float64) {
	e.t.Helper()
	for ref, d := range at {
		agency, team, _ := strings.Cut(ref, "/")
		e.setStatus(c.op, agency, team, sarv1.TeamStatus_TEAM_STATUS_AVAILABLE, east(d))
	}
}

func (e *env) waitTask(c *callout, id, what string, cond func(*sarv1.Task) bool) *sarv1.Task {
	e.t.Helper()
	var last *sarv1.Task
	eventually(e.t, what, func() bool {
		last = must[*sarv1.GetTaskResponse](e.t, "GetTask")(e.tasks().GetTask(e.as(c.op), &sarv1.GetTaskRequest{IncidentId: c.inc, TaskId: id})).GetTask()
		return cond(last)
	})
	return last
}

func lastNote(t *sarv1.Task) string { return t.GetTransitions()[len(t.GetTransitions())-1].GetNote() }

// An offer nobody answers goes to the next available team of the
// incident's agencies, in the incident's order, never to one that declined
// or is unavailable; after the second missed offer it is raised to the
// console as unanswered, on the incident's events.
func TestEscalation(t *testing.T) {
	e := startEnv(t, fastDeadlines)
	rec := e.recordNATS()
	c := e.callout() // agencies in order: police-north, blue-sky, fire-north, shangcun
	e.available(c, map[string]float64{"police-north/patrol": 3000, "blue-sky/k9": 9000, "fire-north/engine": 1000, "shangcun/elders": 500})
	within := durationpb.New(300 * time.Millisecond)
	patrolPhone := e.streamTasks(c.rescuers["police-north/patrol"], c.inc, "")
	patrolPhone.backlog()
	task := e.offer(c, sarv1.TaskKind_TASK_KIND_GO_TO_POINT, "police-north", "patrol", func(r *sarv1.CreateTaskRequest) {
		r.AnswerWithin, r.Point = within, ipp
	})
	// First miss: to the nearest available team, the villagers.
	esc := e.waitTask(c, task.GetId(), "first escalation", func(t *sarv1.Task) bool { return t.GetMissedOffers() == 1 })
	if esc.GetState() != sarv1.TaskState_TASK_STATE_OFFERED || esc.GetTeam().GetAgencyId() != "shangcun" || len(esc.GetMissedBy()) != 1 ||
		esc.GetTransitions()[len(esc.GetTransitions())-1].GetActor() != "system" || !strings.Contains(lastNote(esc), "police-north/patrol did not answer") {
		t.Errorf("after the first missed offer: %v, want offered to shangcun/elders by the system, patrol missed", esc)
	}
	// The patrol's phone learns the task went elsewhere.
	if it := patrolPhone.next("offer"); it.GetTask().GetTeam().GetAgencyId() != "police-north" {
		t.Errorf("patrol's first item = %v, want its offer", it.GetTask())
	}
	if it := patrolPhone.next("gone"); it.GetTask().GetId() != task.GetId() || it.GetTask().GetTeam().GetAgencyId() != "shangcun" {
		t.Errorf("patrol's second item = %v, want the task, now the villagers'", it.GetTask())
	}
	// The police's own subject says the task left it.
	eventually(t, "the taken-from copy on the patrol's subject", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		for i, ev := range rec.events {
			if ev.GetTaskChanged().GetTakenFrom().GetTeamId() == "patrol" && strings.HasSuffix(rec.subj[i], ".evt.task.police-north.patrol") &&
				ev.GetTaskChanged().GetTask().GetTeam().GetAgencyId() == "shangcun" {
				return true
			}
		}
		return false
	})
	// Second miss: raised to the console.
	un := e.waitTask(c, task.GetId(), "unanswered", func(t *sarv1.Task) bool { return t.GetState() == sarv1.TaskState_TASK_STATE_UNANSWERED })
	if un.GetMissedOffers() != 2 || len(un.GetMissedBy()) != 2 || un.GetOfferDeadline() != nil || len(un.GetTransitions()) != 3 {
		t.Errorf("unanswered task = %v, want 2 missed offers, no deadline, 3 transitions", un)
	}
	eventually(t, "the unanswered alert on the incident's events", func() bool {
		return rec.count(func(ev *sarv1.Event) bool {
			return ev.GetTaskChanged().GetTask().GetState() == sarv1.TaskState_TASK_STATE_UNANSWERED
		}) == 1
	})
	time.Sleep(400 * time.Millisecond) // more sweeps: nothing more happens
	if again := must[*sarv1.GetTaskResponse](t, "GetTask")(e.tasks().GetTask(e.as(c.op), &sarv1.GetTaskRequest{IncidentId: c.inc, TaskId: task.GetId()})).GetTask(); again.GetVersion() != un.GetVersion() {
		t.Errorf("unanswered task moved on to version %d, want it left to the console", again.GetVersion())
	}
	// The console reassigns it; the team answers in time; nothing lapses.
	re := must[*sarv1.ReassignTaskResponse](t, "reassign")(e.tasks().ReassignTask(e.as(c.op), &sarv1.ReassignTaskRequest{IncidentId: c.inc, TaskId: task.GetId(),
		Team: &sarv1.TeamRef{AgencyId: "shangcun", TeamId: "elders"}, AnswerWithin: durationpb.New(time.Minute)})).GetTask()
	must[*sarv1.AcceptTaskResponse](t, "accept")(e.tasks().AcceptTask(e.as(c.rescuers["shangcun/elders"]), &sarv1.AcceptTaskRequest{IncidentId: c.inc, TaskId: re.GetId()}))
	// A team on task is not offered more work: the elders finish first.
	busy := e.offer(c, sarv1.TaskKind_TASK_KIND_STAND_BY, "police-north", "patrol", func(r *sarv1.CreateTaskRequest) { r.AnswerWithin = within })
	if esc := e.waitTask(c, busy.GetId(), "escalation while the elders are on task", func(t *sarv1.Task) bool { return t.GetMissedOffers() == 1 }); esc.GetTeam().GetAgencyId() == "shangcun" {
		t.Errorf("offer escalated to the elders while they are on task")
	}
	must[*sarv1.CompleteTaskResponse](t, "complete")(e.tasks().CompleteTask(e.as(c.rescuers["shangcun/elders"]), &sarv1.CompleteTaskRequest{IncidentId: c.inc, TaskId: re.GetId()}))
	must[*sarv1.CancelTaskResponse](t, "cancel")(e.tasks().CancelTask(e.as(c.op), &sarv1.CancelTaskRequest{IncidentId: c.inc, TaskId: busy.GetId(), Reason: "test"}))

	// A declined team, an unavailable one and one on task are skipped.
	e.setStatus(c.op, "blue-sky", "k9", sarv1.TeamStatus_TEAM_STATUS_UNAVAILABLE, nil)
	second := e.offer(c, sarv1.TaskKind_TASK_KIND_STAND_BY, "fire-north", "engine", func(r *sarv1.CreateTaskRequest) { r.AnswerWithin = within })
	must[*sarv1.DeclineTaskResponse](t, "decline")(e.tasks().DeclineTask(e.as(c.rescuers["fire-north/engine"]), &sarv1.DeclineTaskRequest{IncidentId: c.inc, TaskId: second.GetId(), Reason: "engine in repair"}))
	must[*sarv1.ReassignTaskResponse](t, "reassign")(e.tasks().ReassignTask(e.as(c.op), &sarv1.ReassignTaskRequest{IncidentId: c.inc, TaskId: second.GetId(),
		Team: &sarv1.TeamRef{AgencyId: "police-north", TeamId: "patrol"}, AnswerWithin: within}))
	esc2 := e.waitTask(c, second.GetId(), "escalation past the declined and the unavailable", func(t *sarv1.Task) bool { return t.GetMissedOffers() == 1 })
	if got := esc2.GetTeam().GetAgencyId() + "/" + esc2.GetTeam().GetTeamId(); got != "shangcun/elders" {
		t.Errorf("escalated to %s, want shangcun/elders (k9 unavailable, the engine declined)", got)
	}
}

// Deadlines are data: with two replicas sweeping, each lapsed offer is
// escalated exactly once; when the replica that made the offers is gone,
// the other escalates them all.
func TestEscalationAcrossReplicas(t *testing.T) {
	e := startEnv(t, fastDeadlines)
	c := e.callout()
	e.available(c, map[string]float64{"police-north/patrol": 3000, "blue-sky/k9": 9000})
	cfg := e.app.Config()
	b, err := app.Start(context.Background(), cfg, testLogger(t))
	if err != nil {
		t.Fatalf("second replica: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	within := durationpb.New(200 * time.Millisecond)
	var ids []string
	for range 10 {
		ids = append(ids, e.offer(c, sarv1.TaskKind_TASK_KIND_STAND_BY, "police-north", "patrol", func(r *sarv1.CreateTaskRequest) { r.AnswerWithin = within }).GetId())
	}
	check := func(phase string) {
		t.Helper()
		for _, id := range ids {
			tk := e.waitTask(c, id, phase+": unanswered", func(t *sarv1.Task) bool { return t.GetState() == sarv1.TaskState_TASK_STATE_UNANSWERED })
			if tk.GetVersion() != 3 || len(tk.GetTransitions()) != 3 || tk.GetMissedOffers() != 2 {
				t.Errorf("%s: task %s at version %d with %d transitions and %d missed offers, want each lapse escalated once (3, 3, 2)",
					phase, id, tk.GetVersion(), len(tk.GetTransitions()), tk.GetMissedOffers())
			}
		}
	}
	check("two replicas sweeping")

	// The replica that makes the next offers stops at once; the other
	// escalates them.
	ids = ids[:0]
	for range 10 {
		ids = append(ids, e.offer(c, sarv1.TaskKind_TASK_KIND_STAND_BY, "police-north", "patrol", func(r *sarv1.CreateTaskRequest) { r.AnswerWithin = within }).GetId())
	}
	if err := e.app.Close(); err != nil {
		t.Fatalf("closing the first replica: %v", err)
	}
	e.app = b
	e.connect()
	check("the offering replica gone")
}

// An incident's dispatch settings set the answer time of each priority and
// the order of agencies a lapsed offer goes to.
func TestDispatchSettings(t *testing.T) {
	e := startEnv(t, fastDeadlines)
	c := e.callout()
	e.available(c, map[string]float64{"police-north/patrol": 3000, "blue-sky/k9": 900, "fire-north/engine": 9000, "shangcun/elders": 500})
	_, err := e.tasks().SetDispatchSettings(e.as(c.op), &sarv1.SetDispatchSettingsRequest{IncidentId: c.inc,
		Settings: &sarv1.DispatchSettings{EscalationOrder: []string{"fire-north", "nobody"}}})
	wantCode(t, "an escalation order naming an agency not in the incident", err, codes.InvalidArgument)
	_, err = e.tasks().SetDispatchSettings(e.as(c.rescuers["blue-sky/k9"]), &sarv1.SetDispatchSettingsRequest{IncidentId: c.inc,
		Settings: &sarv1.DispatchSettings{}})
	wantCode(t, "a rescuer sets dispatch settings", err, codes.PermissionDenied)
	inc := must[*sarv1.SetDispatchSettingsResponse](t, "SetDispatchSettings")(e.tasks().SetDispatchSettings(e.as(c.op), &sarv1.SetDispatchSettingsRequest{IncidentId: c.inc,
		Settings: &sarv1.DispatchSettings{EscalationOrder: []string{"fire-north"}, AnswerWithinNormal: durationpb.New(300 * time.Millisecond)}})).GetIncident()
	if len(inc.GetDispatch().GetEscalationOrder()) != 1 {
		t.Errorf("incident after SetDispatchSettings = %v", inc.GetDispatch())
	}
	task := e.offer(c, sarv1.TaskKind_TASK_KIND_GO_TO_POINT, "police-north", "patrol", func(r *sarv1.CreateTaskRequest) { r.Point = ipp })
	if got := task.GetAnswerWithin().AsDuration(); got != 300*time.Millisecond {
		t.Errorf("a normal offer's answer time = %v, want the incident's 300ms", got)
	}
	// The brigade is first in the incident's order, though the volunteers
	// and the villagers are nearer.
	esc := e.waitTask(c, task.GetId(), "escalation", func(t *sarv1.Task) bool { return t.GetMissedOffers() == 1 })
	if esc.GetTeam().GetAgencyId() != "fire-north" {
		t.Errorf("escalated to %v, want fire-north first in the incident's order", esc.GetTeam())
	}
}
