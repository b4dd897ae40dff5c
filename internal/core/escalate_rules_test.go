package core

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/sar"
)

// Unit tests of the escalation rules on fakes: which team a lapsed offer
// goes to, and when it goes to the console instead.

func escalationStore(inc *sarv1.Incident, teams map[string][]*sarv1.Team, task *sarv1.Task, writes *[]sar.TaskWrite) *fakeStore {
	return &fakeStore{
		GetIncidentFn: func(context.Context, string) (*sarv1.Incident, int64, error) { return inc, 1, nil },
		TaskFn: func(context.Context, string, string) (*sarv1.Task, error) {
			return task, nil
		},
		TeamsFn: func(_ context.Context, agency string) ([]*sarv1.Team, error) { return teams[agency], nil },
		PutTaskFn: func(_ context.Context, w sar.TaskWrite) (sar.TaskWriteResult, error) {
			*writes = append(*writes, w)
			return sar.TaskWriteResult{Version: w.ExpectVersion + 1, Task: w.Task}, nil
		},
	}
}

func team(agency, id string, st sarv1.TeamStatus, eastM float64) *sarv1.Team {
	return &sarv1.Team{AgencyId: agency, Id: id, Status: st,
		Home: &sarv1.LatLng{Lat: 30, Lng: 120 + eastM/96_000}} // about 96 km per degree of longitude at 30°
}

func lapsedTask(now time.Time, agency, id string) *sarv1.Task {
	return &sarv1.Task{Id: "01m8task", IncidentId: "01m8inc", Kind: sarv1.TaskKind_TASK_KIND_STAND_BY, Version: 3,
		Team: &sarv1.TeamRef{AgencyId: agency, TeamId: id}, State: sarv1.TaskState_TASK_STATE_OFFERED,
		Point: &sarv1.LatLng{Lat: 30, Lng: 120}, AnswerWithin: durationpb.New(time.Minute),
		OfferDeadline: timestamppb.New(now.Add(-time.Second)),
		Transitions:   []*sarv1.TaskTransition{{To: sarv1.TaskState_TASK_STATE_OFFERED, Time: timestamppb.New(now.Add(-time.Minute))}}}
}

func TestEscalationPicksTheNextTeam(t *testing.T) {
	avail, limited := sarv1.TeamStatus_TEAM_STATUS_AVAILABLE, sarv1.TeamStatus_TEAM_STATUS_LIMITED
	teams := map[string][]*sarv1.Team{
		"police": {team("police", "p1", avail, 3000), team("police", "p2", sarv1.TeamStatus_TEAM_STATUS_ON_TASK, 100)},
		"vol":    {team("vol", "v1", limited, 8000), team("vol", "v2", sarv1.TeamStatus_TEAM_STATUS_UNAVAILABLE, 50)},
		"fire":   {team("fire", "f1", avail, 1000), team("fire", "f2", sarv1.TeamStatus_TEAM_STATUS_UNSPECIFIED, 10)},
	}
	for _, tc := range []struct {
		name     string
		order    []string
		declined []*sarv1.TeamRef
		missed   int32
		want     string // "agency/team", or "" for the console
	}{
		{"nearest available, not on task, unavailable or unreported", nil, nil, 0, "fire/f1"},
		{"the incident's escalation order first", []string{"vol"}, nil, 0, "vol/v1"},
		{"never one that declined", nil, []*sarv1.TeamRef{{AgencyId: "fire", TeamId: "f1"}}, 0, "police/p1"},
		{"the second miss goes to the console", nil, nil, 1, ""},
		{"no team left goes to the console", nil, []*sarv1.TeamRef{{AgencyId: "fire", TeamId: "f1"}, {AgencyId: "vol", TeamId: "v1"}}, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inc := &sarv1.Incident{Id: "01m8inc", State: sarv1.IncidentState_INCIDENT_STATE_OPEN, AgencyIds: []string{"fire", "police", "vol"},
				Dispatch: &sarv1.DispatchSettings{EscalationOrder: tc.order}}
			var writes []sar.TaskWrite
			s := newRuleService(t, nil, &fakeBus{})
			task := lapsedTask(ruleNow, "police", "p1")
			task.DeclinedBy, task.MissedOffers = tc.declined, tc.missed
			if tc.name == "never one that declined" {
				task.Team = &sarv1.TeamRef{AgencyId: "vol", TeamId: "v1"} // the lapsed one is vol/v1 this time
			}
			s.st = escalationStore(inc, teams, task, &writes)
			done, err := s.escalate(context.Background(), "01m8inc", task.GetId())
			if err != nil || !done || len(writes) != 1 {
				t.Fatalf("escalate = %v, %v with %d writes; want one write", done, err, len(writes))
			}
			w := writes[0]
			got := w.Task
			if tc.want == "" {
				if got.GetState() != sarv1.TaskState_TASK_STATE_UNANSWERED || w.DeadlineMs != 0 {
					t.Errorf("task = %v (deadline %d), want unanswered without a deadline", got.GetState(), w.DeadlineMs)
				}
				return
			}
			if ref := got.GetTeam().GetAgencyId() + "/" + got.GetTeam().GetTeamId(); ref != tc.want || got.GetState() != sarv1.TaskState_TASK_STATE_OFFERED {
				t.Errorf("escalated to %s (%v), want %s offered", ref, got.GetState(), tc.want)
			}
			if want := ruleNow.Add(time.Minute).UnixMilli(); w.DeadlineMs != want {
				t.Errorf("new deadline %d, want %d (the task's own answer time)", w.DeadlineMs, want)
			}
			if w.ExpectVersion != 3 || w.FeedAlsoTeam == "" {
				t.Errorf("write expects version %d, tells the old team %q; want 3 and the team it was taken from", w.ExpectVersion, w.FeedAlsoTeam)
			}
		})
	}
}

func TestEscalationLeavesAnsweredOffersAlone(t *testing.T) {
	var writes []sar.TaskWrite
	s := newRuleService(t, nil, &fakeBus{})
	for _, mod := range []func(*sarv1.Task){
		func(t *sarv1.Task) { t.State = sarv1.TaskState_TASK_STATE_ACCEPTED },
		func(t *sarv1.Task) { t.OfferDeadline = timestamppb.New(ruleNow.Add(time.Minute)) }, // re-offered meanwhile
	} {
		task := lapsedTask(ruleNow, "police", "p1")
		mod(task)
		s.st = escalationStore(&sarv1.Incident{Id: "01m8inc"}, nil, task, &writes)
		if done, err := s.escalate(context.Background(), "01m8inc", task.GetId()); done || err != nil {
			t.Errorf("escalate of %v = %v, %v; want nothing done", task.GetState(), done, err)
		}
	}
	if len(writes) != 0 {
		t.Errorf("%d writes for offers that did not lapse, want none", len(writes))
	}
}
