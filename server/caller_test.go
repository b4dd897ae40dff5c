package server_test

import (
	"io"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
)

// fixAt is one fix at a point, now.
func fixAt(seq uint64, ll *sarv1.LatLng) *sarv1.LocationFix {
	return &sarv1.LocationFix{Sequence: seq, Lat: ll.GetLat(), Lng: ll.GetLng(), HorizontalAccuracyM: 8,
		Time: timestamppb.New(time.Now().Add(-time.Second)), Source: sarv1.FixSource_FIX_SOURCE_GNSS}
}

// The lost person's page sees only this: searching, rescuers on the way
// (how many teams, how far the nearest, rounded), found, closed.
func TestCallerStatus(t *testing.T) {
	e := startEnv(t)
	c := e.callout()
	link := must[*sarv1.CreateShareLinkResponse](t, "CreateShareLink")(e.auth.CreateShareLink(e.as(c.op), &sarv1.CreateShareLinkRequest{IncidentId: c.inc}))
	caller := link.GetToken()
	e.join(caller, c.inc, "browser-1")
	report := func(token, device string, f *sarv1.LocationFix) {
		t.Helper()
		ack := must[*sarv1.ReportFixesResponse](t, "ReportFixes")(e.loc.ReportFixes(e.as(token), &sarv1.ReportFixesRequest{Batch: &sarv1.FixBatch{
			IncidentId: c.inc, DeviceId: device, Fixes: []*sarv1.LocationFix{f}}})).GetAck()
		if len(ack.GetStored()) != 1 {
			t.Fatalf("fix not stored: %v", ack)
		}
	}
	report(caller, "browser-1", fixAt(1, ipp))
	k9 := c.rescuers["blue-sky/k9"]
	e.join(k9, c.inc, "k9-phone")
	report(k9, "k9-phone", fixAt(1, east(1234)))

	w, err := e.inc.WatchCallerStatus(e.as(caller), &sarv1.WatchCallerStatusRequest{IncidentId: c.inc})
	if err != nil {
		t.Fatal(err)
	}
	next := func(what string) *sarv1.CallerStatus {
		t.Helper()
		r, err := w.Recv()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return r.GetStatus()
	}
	st := next("first status")
	if st.GetPhase() != sarv1.CallerPhase_CALLER_PHASE_SEARCHING || st.GetTeamsOnTheWay() != 0 || st.GetNearestRescuerM() != 1200 || st.GetCallerLastFixTime() == nil {
		t.Errorf("first status = %v, want searching, no team, nearest 1200 m, the last fix time", st)
	}
	task := e.offer(c, sarv1.TaskKind_TASK_KIND_GO_TO_POINT, "blue-sky", "k9", func(r *sarv1.CreateTaskRequest) { r.Point = ipp })
	must[*sarv1.AcceptTaskResponse](t, "accept")(e.tasks().AcceptTask(e.as(k9), &sarv1.AcceptTaskRequest{IncidentId: c.inc, TaskId: task.GetId(),
		Eta: durationpb.New(20 * time.Minute)}))
	if st := next("on the way"); st.GetPhase() != sarv1.CallerPhase_CALLER_PHASE_RESCUERS_ON_THE_WAY || st.GetTeamsOnTheWay() != 1 {
		t.Errorf("after a team accepted = %v, want rescuers on the way, 1 team", st)
	}
	report(k9, "k9-phone", fixAt(2, east(260)))
	got := must[*sarv1.GetCallerStatusResponse](t, "GetCallerStatus")(e.inc.GetCallerStatus(e.as(caller), &sarv1.GetCallerStatusRequest{IncidentId: c.inc})).GetStatus()
	if got.GetNearestRescuerM() != 300 {
		t.Errorf("nearest rescuer after it came closer = %v m, want 300 (260 rounded to 100 m)", got.GetNearestRescuerM())
	}

	// Who may read it.
	_, err = e.inc.GetCallerStatus(e.as(k9), &sarv1.GetCallerStatusRequest{IncidentId: c.inc})
	wantCode(t, "a rescuer reads the caller status", err, codes.PermissionDenied)
	other := e.createIncident(c.op, "blue-sky").GetId()
	_, err = e.inc.GetCallerStatus(e.as(caller), &sarv1.GetCallerStatusRequest{IncidentId: other})
	wantCode(t, "the caller reads another incident's status", err, codes.NotFound)
	must[*sarv1.GetCallerStatusResponse](t, "operator GetCallerStatus")(e.inc.GetCallerStatus(e.as(c.op), &sarv1.GetCallerStatusRequest{IncidentId: c.inc}))

	must[*sarv1.ReportSubjectFoundResponse](t, "found")(e.inc.ReportSubjectFound(e.as(k9), &sarv1.ReportSubjectFoundRequest{IncidentId: c.inc, Position: ipp}))
	for {
		st := next("found")
		if st.GetPhase() == sarv1.CallerPhase_CALLER_PHASE_FOUND {
			break
		}
		if st.GetPhase() != sarv1.CallerPhase_CALLER_PHASE_RESCUERS_ON_THE_WAY {
			t.Fatalf("status before found = %v", st)
		}
	}
	must[*sarv1.CloseIncidentResponse](t, "close")(e.inc.CloseIncident(e.as(c.op), &sarv1.CloseIncidentRequest{IncidentId: c.inc,
		Outcome: sarv1.IncidentOutcome_INCIDENT_OUTCOME_FOUND_ALIVE}))
	if st := next("closed"); st.GetPhase() != sarv1.CallerPhase_CALLER_PHASE_CLOSED {
		t.Errorf("after close = %v, want closed", st)
	}
	if _, err := w.Recv(); err != io.EOF {
		t.Errorf("the caller's status stream after closed: %v, want its end (EOF)", err)
	}
}
