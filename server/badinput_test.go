package server_test

import (
	"math"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
)

// TestBadInput sends what broken phones and careless clients send: each
// gets its reason and code, the valid fixes next to it are stored, and
// nothing is half-written.
func TestBadInput(t *testing.T) {
	e := startEnv(t)
	op, officer, inc := e.officerOnIncident()
	d := e.openDevice(officer, inc.GetId(), "phone")
	now := time.Now()

	fixes := walk(1, 8, now)
	fixes[1].Lat = math.NaN()
	fixes[2].Lng = math.Inf(1)
	fixes[3].HorizontalAccuracyM = -1
	fixes[4].Time = timestamppb.New(now.Add(2 * time.Hour))
	fixes[5].Time = timestamppb.New(inc.GetCreateTime().AsTime().Add(-72 * time.Hour))
	ack := d.send(fixes...)
	if !equalSeqs(ack.GetStored(), seqs(1, 7, 8)) || ack.GetAckedThrough() != 8 {
		t.Fatalf("mixed batch ack stored %v through %d, want 1,7,8 through 8", ack.GetStored(), ack.GetAckedThrough())
	}
	want := map[uint64]sarv1.RejectReason{
		2: sarv1.RejectReason_REJECT_REASON_INVALID_COORDINATES, 3: sarv1.RejectReason_REJECT_REASON_INVALID_COORDINATES,
		4: sarv1.RejectReason_REJECT_REASON_INVALID_ACCURACY, 5: sarv1.RejectReason_REJECT_REASON_INVALID_TIME,
		6: sarv1.RejectReason_REJECT_REASON_INVALID_TIME,
	}
	if len(ack.GetRejected()) != len(want) {
		t.Fatalf("rejected = %v, want %d", ack.GetRejected(), len(want))
	}
	for _, r := range ack.GetRejected() {
		if want[r.GetSequence()] != r.GetReason() || r.GetViolation().GetField() == "" || r.GetViolation().GetDescription() == "" {
			t.Errorf("rejection of %d = %v, want %v with a field and a description", r.GetSequence(), r, want[r.GetSequence()])
		}
	}
	// A retry of the same batch: everything is a duplicate, the rejected
	// ones too (they were final), and nothing is stored twice.
	ack = d.send(fixes...)
	if len(ack.GetStored()) != 0 || len(ack.GetRejected()) != 0 || len(ack.GetDuplicates()) != 8 {
		t.Errorf("retry ack = %v, want 8 duplicates", ack)
	}
	// A shuffled batch is taken in sequence order; 0 is refused; a repeated
	// sequence is a duplicate, named once.
	ack = d.send(walk(10, 1, now)[0], walk(9, 1, now)[0], walk(0, 1, now)[0], walk(11, 1, now)[0], walk(11, 1, now)[0])
	if !equalSeqs(ack.GetStored(), seqs(9, 10, 11)) || !equalSeqs(ack.GetDuplicates(), seqs(11)) || len(ack.GetRejected()) != 1 ||
		ack.GetRejected()[0].GetReason() != sarv1.RejectReason_REJECT_REASON_INVALID_SEQUENCE {
		t.Errorf("shuffled batch ack = %v, want 9-11 stored, 11 once as duplicate, 0 rejected", ack)
	}
	// A gap: 14 after 11 is not stored and not acknowledged (the device
	// resends), until the device declares 12-13 given up.
	ack = d.send(walk(14, 1, now)...)
	if len(ack.GetStored()) != 0 || ack.GetAckedThrough() != 11 || len(ack.GetRejected()) != 1 ||
		ack.GetRejected()[0].GetReason() != sarv1.RejectReason_REJECT_REASON_SEQUENCE_GAP {
		t.Errorf("batch after a gap ack = %v, want SEQUENCE_GAP and acked_through 11", ack)
	}
	d.batchSeq++
	if err := d.stream.Send(&sarv1.StreamFixesRequest{Batch: &sarv1.FixBatch{IncidentId: inc.GetId(), DeviceId: "phone", BatchId: d.batchSeq,
		SkippedThrough: 13, Fixes: walk(14, 1, now)}}); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if r, err := d.stream.Recv(); err != nil || !equalSeqs(r.GetAck().GetStored(), seqs(14)) || r.GetAck().GetAckedThrough() != 14 {
		t.Errorf("batch with skipped_through 13 = %v, %v; want 14 stored through 14", r, err)
	}
	// An oversized batch is refused whole, the stream stays open.
	ack = d.send(walk(20, 501, now)...)
	if ack.GetProblem().GetCode() != uint32(codes.ResourceExhausted) || len(ack.GetStored()) != 0 {
		t.Errorf("oversized batch ack = %v, want RESOURCE_EXHAUSTED", ack)
	}
	// Unknown incident and unknown device: refused whole.
	bad := &device{t: t, id: "phone", inc: "01m8jr4ce97enc5xbf8y16h4vm", stream: d.stream, cancel: d.cancel, batchSeq: d.batchSeq}
	ack = bad.send(walk(20, 1, now)...)
	if ack.GetProblem().GetCode() != uint32(codes.NotFound) {
		t.Errorf("unknown incident ack = %v, want NOT_FOUND", ack)
	}
	d.batchSeq = bad.batchSeq
	d.id = "never-joined"
	ack = d.send(walk(20, 1, now)...)
	if ack.GetProblem().GetCode() != uint32(codes.FailedPrecondition) {
		t.Errorf("unjoined device ack = %v, want FAILED_PRECONDITION", ack)
	}
	d.id = "phone"
	ack = d.send(walk(15, 1, now)...)
	if !equalSeqs(ack.GetStored(), seqs(15)) {
		t.Errorf("after refused batches the stream still stores: ack = %v", ack)
	}
	// Nothing half-written: the track holds exactly the stored fixes.
	parts := must[*sarv1.ListParticipantsResponse](t, "ListParticipants")(e.inc.ListParticipants(e.as(op), &sarv1.ListParticipantsRequest{IncidentId: inc.GetId()}))
	track := must[*sarv1.GetTrackResponse](t, "GetTrack")(e.loc.GetTrack(e.as(op), &sarv1.GetTrackRequest{IncidentId: inc.GetId(), ParticipantId: parts.GetParticipants()[0].GetId()}))
	var got []uint64
	for _, f := range track.GetFixes() {
		got = append(got, f.GetSequence())
	}
	slices.Sort(got)
	if !equalSeqs(got, seqs(1, 7, 8, 9, 10, 11, 14, 15)) {
		t.Errorf("stored track sequences = %v, want 1 7 8 9 10 11 14 15", got)
	}

	// A message over the size limit ends the stream with RESOURCE_EXHAUSTED.
	huge := walk(100, 1, now)
	huge[0].Cell = string(make([]byte, 2<<20))
	d2 := e.openDevice(officer, inc.GetId(), "phone")
	if err := d2.stream.Send(&sarv1.StreamFixesRequest{Batch: &sarv1.FixBatch{IncidentId: inc.GetId(), DeviceId: "phone", Fixes: huge}}); err == nil {
		_, err = d2.stream.Recv()
		wantCode(t, "oversized message", err, codes.ResourceExhausted)
	}

	// Unary: field details on invalid requests.
	for _, tc := range []struct {
		name   string
		req    *sarv1.CreateIncidentRequest
		fields []string
	}{
		{"empty", &sarv1.CreateIncidentRequest{}, []string{"title"}},
		{"bad ipp", &sarv1.CreateIncidentRequest{Title: "x", InitialPlanningPoint: &sarv1.PlanningPoint{
			Position: &sarv1.LatLng{Lat: math.NaN(), Lng: 200}, AccuracyM: -5}}, []string{"initial_planning_point.position", "initial_planning_point.accuracy_m"}},
		{"bad subject", &sarv1.CreateIncidentRequest{Title: "x", Subject: &sarv1.SubjectProfile{NumberOfPeople: -2,
			LastSeenTime: timestamppb.New(now.Add(24 * time.Hour))}}, []string{"subject.number_of_people", "subject.last_seen_time"}},
		{"bad resolution and agency", &sarv1.CreateIncidentRequest{Title: "x", SearchResolution: 15, AgencyIds: []string{"nope"}}, []string{"search_resolution", "agency_ids"}},
	} {
		_, err := e.inc.CreateIncident(e.as(op), tc.req)
		st := wantCode(t, "CreateIncident "+tc.name, err, codes.InvalidArgument)
		if got := fieldViolations(st); !slices.Equal(got, tc.fields) {
			t.Errorf("CreateIncident %s field violations = %v, want %v", tc.name, got, tc.fields)
		}
	}
	_, err := e.loc.ReportFixes(e.as(officer), &sarv1.ReportFixesRequest{Batch: &sarv1.FixBatch{IncidentId: "not-an-id", DeviceId: "phone"}})
	if st := wantCode(t, "ReportFixes bad id", err, codes.InvalidArgument); !slices.Contains(fieldViolations(st), "batch.incident_id") {
		t.Errorf("ReportFixes bad id fields = %v, want batch.incident_id", fieldViolations(st))
	}
	_, err = e.inc.GetIncident(e.as(op), &sarv1.GetIncidentRequest{IncidentId: "01m8jr4ce97enc5xbf8y16h4vm"})
	wantCode(t, "GetIncident unknown", err, codes.NotFound)
	_, err = e.inc.CloseIncident(e.as(op), &sarv1.CloseIncidentRequest{IncidentId: inc.GetId()})
	wantCode(t, "CloseIncident without outcome", err, codes.InvalidArgument)
	must[*sarv1.CloseIncidentResponse](t, "CloseIncident")(e.inc.CloseIncident(e.as(op), &sarv1.CloseIncidentRequest{IncidentId: inc.GetId(), Outcome: sarv1.IncidentOutcome_INCIDENT_OUTCOME_SUSPENDED}))
	_, err = e.inc.CloseIncident(e.as(op), &sarv1.CloseIncidentRequest{IncidentId: inc.GetId(), Outcome: sarv1.IncidentOutcome_INCIDENT_OUTCOME_SUSPENDED})
	wantCode(t, "CloseIncident twice", err, codes.FailedPrecondition)
	_, err = e.loc.ReportFixes(e.as(officer), &sarv1.ReportFixesRequest{Batch: &sarv1.FixBatch{IncidentId: inc.GetId(), DeviceId: "phone", Fixes: walk(30, 1, now)}})
	wantCode(t, "ReportFixes on a closed incident", err, codes.FailedPrecondition)
	_, err = e.inc.JoinIncident(e.as(officer), &sarv1.JoinIncidentRequest{IncidentId: inc.GetId(), DeviceId: "new-phone"})
	wantCode(t, "JoinIncident on a closed incident", err, codes.FailedPrecondition)
	_, err = e.agency.CreateAgency(e.as(e.admin), &sarv1.CreateAgencyRequest{Agency: &sarv1.Agency{Id: "police-north", Name: "dup", Kind: sarv1.AgencyKind_AGENCY_KIND_OTHER, Jurisdiction: "north"}})
	wantCode(t, "CreateAgency duplicate", err, codes.AlreadyExists)
	_, err = e.agency.CreateAgency(e.as(e.admin), &sarv1.CreateAgencyRequest{Agency: &sarv1.Agency{Id: "Bad.Id*", Name: "", Jurisdiction: "x>y"}})
	if st := wantCode(t, "CreateAgency invalid", err, codes.InvalidArgument); len(fieldViolations(st)) != 4 {
		t.Errorf("CreateAgency invalid fields = %v, want id, jurisdiction, name, kind", fieldViolations(st))
	}
}
