package server_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/geo"
)

// natsRecorder collects every event published under sar.v1.inc.>.
type natsRecorder struct {
	mu     sync.Mutex
	events []*sarv1.Event
	subj   []string
}

func (e *env) recordNATS() *natsRecorder {
	e.t.Helper()
	nc, err := nats.Connect(e.nats.URL())
	if err != nil {
		e.t.Fatalf("nats.Connect: %v", err)
	}
	e.t.Cleanup(nc.Close)
	r := &natsRecorder{}
	if _, err := nc.Subscribe("sar.v1.inc.>", func(m *nats.Msg) {
		ev := &sarv1.Event{}
		if err := proto.Unmarshal(m.Data, ev); err != nil {
			e.t.Errorf("event on %s does not decode: %v", m.Subject, err)
			return
		}
		if m.Header.Get("Nats-Msg-Id") != ev.GetId() {
			e.t.Errorf("event %s published with Nats-Msg-Id %q", ev.GetId(), m.Header.Get("Nats-Msg-Id"))
		}
		r.mu.Lock()
		r.events, r.subj = append(r.events, ev), append(r.subj, m.Subject)
		r.mu.Unlock()
	}); err != nil {
		e.t.Fatalf("Subscribe: %v", err)
	}
	if err := nc.Flush(); err != nil {
		e.t.Fatalf("Flush: %v", err)
	}
	return r
}

// storedPositions counts fixes in positions events of a device, and
// returns the subjects they came on.
func (r *natsRecorder) positions(device string) (fixes int, subjects map[string]bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	subjects = map[string]bool{}
	for i, ev := range r.events {
		if p := ev.GetPositions(); p != nil && p.GetDeviceId() == device {
			fixes += len(p.GetFixes())
			subjects[r.subj[i]] = true
		}
	}
	return fixes, subjects
}

func (r *natsRecorder) count(match func(*sarv1.Event) bool) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, ev := range r.events {
		if match(ev) {
			n++
		}
	}
	return n
}

// TestEndToEnd follows the story: an operator opens an incident, two
// rescuers' devices stream fixes (with a retry, a reconnect and an
// offline backlog), and the state lands in Redis while events reach NATS
// and the operator's watch stream.
func TestEndToEnd(t *testing.T) {
	e := startEnv(t)
	rec := e.recordNATS()
	e.createAgency("police-north", "north", sarv1.AgencyKind_AGENCY_KIND_POLICE_STATION)
	e.createAgency("blue-sky", "north", sarv1.AgencyKind_AGENCY_KIND_VOLUNTEER_RESCUE)
	must[*sarv1.CreateTeamResponse](t, "CreateTeam")(e.agency.CreateTeam(e.as(e.admin), &sarv1.CreateTeamRequest{
		Team: &sarv1.Team{Id: "alpha", AgencyId: "blue-sky", Name: "Alpha"}}))
	op := e.operator("north")
	officer := e.rescuer("police-north", "")
	volunteer := e.rescuer("blue-sky", "alpha")

	inc := e.createIncident(op, "police-north")
	if inc.GetSearchResolution() != 9 || inc.GetState() != sarv1.IncidentState_INCIDENT_STATE_OPEN {
		t.Fatalf("new incident = %v, want open at resolution 9", inc)
	}
	must[*sarv1.AssignAgenciesResponse](t, "AssignAgencies")(e.inc.AssignAgencies(e.as(op), &sarv1.AssignAgenciesRequest{
		IncidentId: inc.GetId(), TeamRefs: []string{"blue-sky/alpha"}}))

	// The operator's console watches, with no deadline (a console's watch
	// lives as long as the incident).
	wctx, wcancel := context.WithCancel(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+op))
	defer wcancel()
	watch, err := e.inc.WatchIncident(wctx, &sarv1.WatchIncidentRequest{IncidentId: inc.GetId()})
	if err != nil {
		t.Fatalf("WatchIncident: %v", err)
	}
	first, err := watch.Recv()
	if err != nil || first.GetSnapshot().GetIncident().GetId() != inc.GetId() {
		t.Fatalf("first watch message = %v, %v; want the snapshot", first, err)
	}
	var watchMu sync.Mutex
	var watched []*sarv1.Event
	go func() {
		for {
			m, err := watch.Recv()
			if err != nil {
				return
			}
			watchMu.Lock()
			watched = append(watched, m.GetEvent())
			watchMu.Unlock()
		}
	}()

	joined := e.join(officer, inc.GetId(), "officer-phone")
	if joined.GetAckedThrough() != 0 || joined.GetParticipant().GetKind() != sarv1.ParticipantKind_PARTICIPANT_KIND_RESCUER {
		t.Fatalf("JoinIncident = %v, want a new rescuer at sequence 0", joined)
	}
	again := e.join(officer, inc.GetId(), "officer-phone")
	if again.GetParticipant().GetId() != joined.GetParticipant().GetId() {
		t.Fatalf("second JoinIncident participant = %s, want the same %s", again.GetParticipant().GetId(), joined.GetParticipant().GetId())
	}
	officerPart := joined.GetParticipant().GetId()

	now := time.Now()
	// Device 1: a batch, its retry (the ack was "lost"), then a reconnect
	// that overlaps the last stored fix.
	d1 := e.openDevice(officer, inc.GetId(), "officer-phone")
	fixes := walk(1, 5, now.Add(-2*time.Minute))
	ack := d1.send(fixes[:3]...)
	if !equalSeqs(ack.GetStored(), seqs(1, 2, 3)) || ack.GetAckedThrough() != 3 || len(ack.GetDuplicates()) != 0 {
		t.Fatalf("first batch ack = %v, want stored 1-3", ack)
	}
	ack = d1.send(fixes[:3]...)
	if len(ack.GetStored()) != 0 || !equalSeqs(ack.GetDuplicates(), seqs(1, 2, 3)) || ack.GetAckedThrough() != 3 {
		t.Fatalf("retried batch ack = %v, want duplicates 1-3 and nothing stored", ack)
	}
	d1.close()
	d1 = e.openDevice(officer, inc.GetId(), "officer-phone")
	ack = d1.send(fixes[2:]...)
	if !equalSeqs(ack.GetStored(), seqs(4, 5)) || !equalSeqs(ack.GetDuplicates(), seqs(3)) || ack.GetAckedThrough() != 5 {
		t.Fatalf("after reconnect ack = %v, want 3 duplicate, 4-5 stored", ack)
	}
	if r := e.join(officer, inc.GetId(), "officer-phone"); r.GetAckedThrough() != 5 {
		t.Errorf("JoinIncident after reconnect acked_through = %d, want 5 (the device resumes from it)", r.GetAckedThrough())
	}

	// Device 2: the volunteer's phone reports its current position; then
	// the volunteer's second device (a handheld GPS, same participant)
	// comes back with a 20-minute offline backlog of older fixes.
	e.join(volunteer, inc.GetId(), "vol-phone")
	e.join(volunteer, inc.GetId(), "vol-gps")
	d2 := e.openDevice(volunteer, inc.GetId(), "vol-phone")
	live := walk(1, 1, now)[0]
	ack = d2.send(live)
	if !equalSeqs(ack.GetStored(), seqs(1)) {
		t.Fatalf("live fix ack = %v, want stored 1", ack)
	}
	d3 := e.openDevice(volunteer, inc.GetId(), "vol-gps")
	backlog := walk(1, 120, now.Add(-10*time.Minute))
	ack = d3.send(backlog...)
	if len(ack.GetStored()) != 120 || ack.GetAckedThrough() != 120 {
		t.Fatalf("backlog ack stored %d through %d, want 120 through 120", len(ack.GetStored()), ack.GetAckedThrough())
	}

	// State in Redis, read with a plain client.
	parts := must[*sarv1.ListParticipantsResponse](t, "ListParticipants")(e.inc.ListParticipants(e.as(op), &sarv1.ListParticipantsRequest{IncidentId: inc.GetId()})).GetParticipants()
	if len(parts) != 2 {
		t.Fatalf("participants = %d, want 2", len(parts))
	}
	for _, p := range parts {
		switch p.GetId() {
		case officerPart:
			if p.GetLastFix().GetSequence() != 5 {
				t.Errorf("officer last fix = %v, want sequence 5", p.GetLastFix())
			}
		default:
			if !proto.Equal(p.GetLastFix().GetTime(), live.GetTime()) || len(p.GetDeviceIds()) != 2 {
				t.Errorf("volunteer last fix = %v devices %v; want the live fix (the backlog must not move it back) and 2 devices", p.GetLastFix(), p.GetDeviceIds())
			}
			track := must[*sarv1.GetTrackResponse](t, "GetTrack")(e.loc.GetTrack(e.as(op), &sarv1.GetTrackRequest{IncidentId: inc.GetId(), ParticipantId: p.GetId()})).GetFixes()
			if len(track) != 121 {
				t.Errorf("volunteer track = %d fixes, want 121 (backlog fills the track)", len(track))
			}
			for i := 1; i < len(track); i++ {
				if track[i].GetTime().AsTime().Before(track[i-1].GetTime().AsTime()) {
					t.Fatalf("track not in time order at %d", i)
				}
			}
		}
	}
	keys, err := e.rdb.Keys(context.Background(), "sar:{"+inc.GetId()+"}:*").Result()
	if err != nil || len(keys) < 8 {
		t.Fatalf("incident keys = %v, %v; want all under the incident's hash tag", keys, err)
	}
	wantCell, _ := geo.CellAt(fixes[4].GetLat(), fixes[4].GetLng(), 9)
	if n, err := e.rdb.HGet(context.Background(), "sar:{"+inc.GetId()+"}:cells", geo.CellString(wantCell)).Int(); err != nil || n < 1 {
		t.Errorf("visits of cell %s = %d, %v; want at least 1", geo.CellString(wantCell), n, err)
	}
	total := 0
	for _, c := range must[*sarv1.ListCellVisitsResponse](t, "ListCellVisits")(e.loc.ListCellVisits(e.as(op), &sarv1.ListCellVisitsRequest{IncidentId: inc.GetId()})).GetCells() {
		total += int(c.GetFixes())
	}
	if total != 5+1+120 {
		t.Errorf("sum of cell visits = %d, want %d (each stored fix once)", total, 5+1+120)
	}

	// Events on NATS and on the watch stream: every stored fix exactly
	// once, on the documented subjects.
	eventually(t, "positions events on NATS", func() bool {
		n1, _ := rec.positions("officer-phone")
		n3, _ := rec.positions("vol-gps")
		return n1 == 5 && n3 == 120
	})
	_, subjects := rec.positions("officer-phone")
	if want := "sar.v1.inc." + inc.GetId() + ".pos.police-north._." + officerPart; !subjects[want] || len(subjects) != 1 {
		t.Errorf("officer positions subjects = %v, want only %s", subjects, want)
	}
	if n := rec.count(func(ev *sarv1.Event) bool { return ev.GetParticipantJoined() != nil }); n != 2 {
		t.Errorf("participant joined events = %d, want 2 (one per participant, not per join call)", n)
	}
	eventually(t, "positions on the watch stream", func() bool {
		watchMu.Lock()
		defer watchMu.Unlock()
		n := 0
		for _, ev := range watched {
			n += len(ev.GetPositions().GetFixes())
		}
		return n == 126
	})

	// Closing stops ingest and starts the retention clock.
	closed := must[*sarv1.CloseIncidentResponse](t, "CloseIncident")(e.inc.CloseIncident(e.as(op), &sarv1.CloseIncidentRequest{
		IncidentId: inc.GetId(), Outcome: sarv1.IncidentOutcome_INCIDENT_OUTCOME_FOUND_ALIVE, Note: "found at the stream crossing"}))
	if closed.GetIncident().GetState() != sarv1.IncidentState_INCIDENT_STATE_CLOSED {
		t.Fatalf("closed incident state = %v", closed.GetIncident().GetState())
	}
	ack = d1.send(walk(6, 1, time.Now())...)
	if ack.GetProblem().GetCode() != uint32(codes.FailedPrecondition) || len(ack.GetStored()) != 0 {
		t.Errorf("fix after close ack = %v, want problem FAILED_PRECONDITION", ack)
	}
	if ttl, _ := e.rdb.TTL(context.Background(), "sar:{"+inc.GetId()+"}:trk:"+officerPart).Result(); ttl <= 0 || ttl > 31*24*time.Hour {
		t.Errorf("track TTL after close = %v, want the retention period", ttl)
	}
	eventually(t, "closed event on NATS", func() bool {
		return rec.count(func(ev *sarv1.Event) bool {
			return ev.GetIncidentChanged().GetChange() == sarv1.IncidentChange_INCIDENT_CHANGE_CLOSED
		}) == 1
	})
}
