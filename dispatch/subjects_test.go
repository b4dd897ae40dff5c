package dispatch

import (
	"testing"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
)

func TestSubject(t *testing.T) {
	inc := "01m8jr4ce97enc5xbf8y16h4vm"
	for _, tc := range []struct {
		ev      *sarv1.Event
		subject string
		durable bool
	}{
		{&sarv1.Event{IncidentId: inc, Payload: &sarv1.Event_Positions{Positions: &sarv1.PositionsEvent{
			ParticipantId: "p1", Kind: sarv1.ParticipantKind_PARTICIPANT_KIND_RESCUER, AgencyId: "fire-1", TeamId: "t2"}}},
			"sar.v1.inc." + inc + ".pos.fire-1.t2.p1", false},
		{&sarv1.Event{IncidentId: inc, Payload: &sarv1.Event_Positions{Positions: &sarv1.PositionsEvent{
			ParticipantId: "p2", Kind: sarv1.ParticipantKind_PARTICIPANT_KIND_RESCUER, AgencyId: "police"}}},
			"sar.v1.inc." + inc + ".pos.police._.p2", false},
		{&sarv1.Event{IncidentId: inc, Payload: &sarv1.Event_Positions{Positions: &sarv1.PositionsEvent{
			ParticipantId: "p3", Kind: sarv1.ParticipantKind_PARTICIPANT_KIND_CALLER, AgencyId: "ignored"}}},
			"sar.v1.inc." + inc + ".pos._caller._.p3", false},
		{&sarv1.Event{IncidentId: inc, Payload: &sarv1.Event_ParticipantJoined{ParticipantJoined: &sarv1.ParticipantJoinedEvent{
			Participant: &sarv1.Participant{Kind: sarv1.ParticipantKind_PARTICIPANT_KIND_RESCUER, AgencyId: "vol", TeamId: "a"}}}},
			"sar.v1.inc." + inc + ".evt.participant.vol.a", true},
		{&sarv1.Event{IncidentId: inc, Payload: &sarv1.Event_TaskChanged{TaskChanged: &sarv1.TaskChangedEvent{
			Task: &sarv1.Task{Team: &sarv1.TeamRef{AgencyId: "vol", TeamId: "k9"}}}}},
			"sar.v1.inc." + inc + ".evt.task.vol.k9", true},
		{&sarv1.Event{IncidentId: inc, Payload: &sarv1.Event_TaskChanged{TaskChanged: &sarv1.TaskChangedEvent{
			Task: &sarv1.Task{Team: &sarv1.TeamRef{AgencyId: "police"}}}}},
			"sar.v1.inc." + inc + ".evt.task.police._", true},
		{&sarv1.Event{IncidentId: inc, Payload: &sarv1.Event_TaskChanged{TaskChanged: &sarv1.TaskChangedEvent{
			Task: &sarv1.Task{}, NoticeAgency: "fire-1", Notice: sarv1.TaskNoticeKind_TASK_NOTICE_KIND_MESSAGE}}},
			"sar.v1.inc." + inc + ".evt.notice.fire-1", true},
		{&sarv1.Event{IncidentId: inc, Payload: &sarv1.Event_TaskChanged{TaskChanged: &sarv1.TaskChangedEvent{
			Task: &sarv1.Task{Team: &sarv1.TeamRef{AgencyId: "vol", TeamId: "k9"}}, TakenFrom: &sarv1.TeamRef{AgencyId: "police", TeamId: "p1"}}}},
			"sar.v1.inc." + inc + ".evt.task.police.p1", true},
		{&sarv1.Event{IncidentId: inc, Payload: &sarv1.Event_IncidentChanged{IncidentChanged: &sarv1.IncidentChangedEvent{}}},
			"sar.v1.inc." + inc + ".evt.incident", true},
	} {
		s, d := Subject(tc.ev)
		if s != tc.subject || d != tc.durable {
			t.Errorf("Subject(%v) = %s, %v; want %s, %v", tc.ev.GetPayload(), s, d, tc.subject, tc.durable)
		}
	}
	if got, want := IncidentSubjects(inc), "sar.v1.inc."+inc+".>"; got != want {
		t.Errorf("IncidentSubjects = %s, want %s", got, want)
	}
}
