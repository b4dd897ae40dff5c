package core

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/sar"
)

// Unit tests of the ingest rules on hand-written fakes: what the domain
// asks of the store and tells the bus, without Redis or NATS. The same
// path on real Redis and NATS is tested in server/.

var ruleNow = time.Date(2026, 6, 1, 16, 0, 0, 0, time.UTC)

func newRuleService(t *testing.T, st *fakeStore, bus *fakeBus) *Service {
	t.Helper()
	s := New(DefaultConfig(), st, bus, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	s.now = func() time.Time { return ruleNow }
	t.Cleanup(s.Close)
	return s
}

func ruleIncident() *sarv1.Incident {
	return &sarv1.Incident{Id: sar.NewID(), Jurisdiction: "north", State: sarv1.IncidentState_INCIDENT_STATE_OPEN,
		AgencyIds: []string{"ag1"}, SearchResolution: 9, CreateTime: timestamppb.New(ruleNow.Add(-time.Hour))}
}

func rescuer() *sarv1.Principal {
	return &sarv1.Principal{CredentialId: "cred1", Role: sarv1.Role_ROLE_RESCUER, AgencyId: "ag1", TeamId: "t1"}
}

func ruleFix(seq uint64, lat float64) *sarv1.LocationFix {
	return &sarv1.LocationFix{Sequence: seq, Lat: lat, Lng: 120.1, HorizontalAccuracyM: 8,
		Time: timestamppb.New(ruleNow.Add(-time.Minute + time.Duration(seq)*time.Second))}
}

// ingestStore is a fake store holding one incident and one bound device;
// ingest answers with res and records its arguments.
func ingestStore(inc *sarv1.Incident, res sar.IngestResult, got *[]sar.IngestArgs) *fakeStore {
	return &fakeStore{
		GetIncidentFn: func(_ context.Context, id string) (*sarv1.Incident, int64, error) {
			if id != inc.GetId() {
				return nil, 0, sar.NotFound("incident")
			}
			return inc, 1, nil
		},
		DeviceOwnerFn: func(_ context.Context, _, deviceID, credentialID string) (string, string, error) {
			switch deviceID {
			case "phone1":
				return "p1", "p1", nil
			case "phone2":
				return "p9", "p1", nil // bound to someone else
			}
			return "", "p1", nil // never joined
		},
		IngestFn: func(_ context.Context, a sar.IngestArgs) (sar.IngestResult, error) {
			*got = append(*got, a)
			return res, nil
		},
	}
}

func TestIngestNamesEveryFixOnce(t *testing.T) {
	inc := ruleIncident()
	var calls []sar.IngestArgs
	// The store saw 1-2 before, processed 3-5, and stopped at a gap after 5.
	st := ingestStore(inc, sar.IngestResult{AckedBefore: 2, AckedThrough: 5, Stored: 2}, &calls)
	bus := &fakeBus{}
	s := newRuleService(t, st, bus)
	bad := ruleFix(4, 95) // latitude out of range: refused, but consumes its sequence
	batch := &sarv1.FixBatch{IncidentId: inc.GetId(), DeviceId: "phone1",
		Fixes: []*sarv1.LocationFix{ruleFix(7, 30.1), ruleFix(1, 30.1), ruleFix(2, 30.1), ruleFix(3, 30.1), bad, ruleFix(5, 30.1), ruleFix(6, 30.1), ruleFix(3, 30.1)}}
	ack, err := s.Ingest(context.Background(), rescuer(), batch)
	if err != nil {
		t.Fatalf("Ingest = %v, want an ack", err)
	}
	if len(calls) != 1 {
		t.Fatalf("store Ingest called %d times, want once per batch", len(calls))
	}
	var seqs []uint64
	for _, e := range calls[0].Fixes {
		seqs = append(seqs, e.Sequence)
		if (e.Fix == nil) != (e.Sequence == 4) {
			t.Errorf("store got sequence %d with fix %v, want only 4 without a fix", e.Sequence, e.Fix)
		}
		if e.Fix != nil && e.Fix.GetCell() == "" {
			t.Errorf("store got sequence %d without its H3 cell", e.Sequence)
		}
	}
	if want := []uint64{1, 2, 3, 4, 5, 6, 7}; !slices.Equal(seqs, want) {
		t.Errorf("store sequences = %v, want %v (sorted, each once)", seqs, want)
	}
	if want := []uint64{1, 2, 3}; !slices.Equal(ack.GetDuplicates(), want) {
		t.Errorf("duplicates = %v, want %v (acked before, plus the repeated 3)", ack.GetDuplicates(), want)
	}
	if want := []uint64{3, 5}; !slices.Equal(ack.GetStored(), want) {
		t.Errorf("stored = %v, want %v", ack.GetStored(), want)
	}
	var rej []string
	for _, r := range ack.GetRejected() {
		rej = append(rej, r.GetReason().String())
	}
	want := []string{"REJECT_REASON_INVALID_COORDINATES", "REJECT_REASON_SEQUENCE_GAP", "REJECT_REASON_SEQUENCE_GAP"}
	if !slices.Equal(rej, want) {
		t.Errorf("rejections = %v, want %v (4 refused, 6 and 7 after the gap)", rej, want)
	}
	if ack.GetAckedThrough() != 5 {
		t.Errorf("acked_through = %d, want 5", ack.GetAckedThrough())
	}
	_, live := bus.published()
	if len(live) != 1 || len(live[0].GetPositions().GetFixes()) != 2 {
		t.Fatalf("live events = %v, want one positions event with the 2 stored fixes", live)
	}
	if pe := live[0].GetPositions(); pe.GetAgencyId() != "ag1" || pe.GetTeamId() != "t1" || pe.GetParticipantId() != "p1" {
		t.Errorf("positions event names %q/%q/%q, want ag1/t1/p1", pe.GetAgencyId(), pe.GetTeamId(), pe.GetParticipantId())
	}
}

func TestIngestNothingStoredPublishesNothing(t *testing.T) {
	inc := ruleIncident()
	var calls []sar.IngestArgs
	st := ingestStore(inc, sar.IngestResult{AckedBefore: 9, AckedThrough: 9}, &calls)
	bus := &fakeBus{}
	s := newRuleService(t, st, bus)
	ack, err := s.Ingest(context.Background(), rescuer(), &sarv1.FixBatch{IncidentId: inc.GetId(), DeviceId: "phone1",
		Fixes: []*sarv1.LocationFix{ruleFix(8, 30.1), ruleFix(9, 30.1)}})
	if err != nil {
		t.Fatalf("Ingest = %v", err)
	}
	if !slices.Equal(ack.GetDuplicates(), []uint64{8, 9}) {
		t.Errorf("duplicates = %v, want [8 9]", ack.GetDuplicates())
	}
	if _, live := bus.published(); len(live) != 0 {
		t.Errorf("a batch of duplicates published %d events, want none", len(live))
	}
}

func TestIngestRefusedBeforeTheStore(t *testing.T) {
	inc := ruleIncident()
	other := rescuer()
	other.AgencyId, other.TeamId = "ag2", ""
	for _, tc := range []struct {
		name   string
		p      *sarv1.Principal
		batch  *sarv1.FixBatch
		kind   sar.Kind
		reason string
	}{
		{"another agency's incident", other, &sarv1.FixBatch{IncidentId: inc.GetId(), DeviceId: "phone1", Fixes: []*sarv1.LocationFix{ruleFix(1, 30)}},
			sar.KindNotFound, "must look like an unknown incident"},
		{"a device bound to another participant", rescuer(), &sarv1.FixBatch{IncidentId: inc.GetId(), DeviceId: "phone2", Fixes: []*sarv1.LocationFix{ruleFix(1, 30)}},
			sar.KindPermissionDenied, ""},
		{"a device that never joined", rescuer(), &sarv1.FixBatch{IncidentId: inc.GetId(), DeviceId: "phone3", Fixes: []*sarv1.LocationFix{ruleFix(1, 30)}},
			sar.KindFailedPrecondition, ""},
		{"an operator", &sarv1.Principal{CredentialId: "op", Role: sarv1.Role_ROLE_OPERATOR, Jurisdiction: "north"},
			&sarv1.FixBatch{IncidentId: inc.GetId(), DeviceId: "phone1", Fixes: []*sarv1.LocationFix{ruleFix(1, 30)}}, sar.KindPermissionDenied, ""},
		{"skipped_through inside the batch", rescuer(), &sarv1.FixBatch{IncidentId: inc.GetId(), DeviceId: "phone1", SkippedThrough: 3,
			Fixes: []*sarv1.LocationFix{ruleFix(2, 30)}}, sar.KindInvalid, ""},
		{"skipped_through past 2^53-1 on an empty batch", rescuer(), &sarv1.FixBatch{IncidentId: inc.GetId(), DeviceId: "phone1",
			SkippedThrough: math.MaxUint64}, sar.KindInvalid, "Lua would round it, and no sequence could follow it"},
		{"too many fixes", rescuer(), &sarv1.FixBatch{IncidentId: inc.GetId(), DeviceId: "phone1",
			Fixes: make([]*sarv1.LocationFix, sar.MaxBatchFixes+1)}, sar.KindResourceExhausted, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls []sar.IngestArgs
			bus := &fakeBus{}
			s := newRuleService(t, ingestStore(inc, sar.IngestResult{}, &calls), bus)
			_, err := s.Ingest(context.Background(), tc.p, tc.batch)
			if got := sar.KindOf(err); got != tc.kind {
				t.Errorf("Ingest kind = %v (%v), want %v %s", got, err, tc.kind, tc.reason)
			}
			if len(calls) != 0 {
				t.Errorf("store Ingest called for a refused batch")
			}
			if d, l := bus.published(); len(d)+len(l) != 0 {
				t.Errorf("a refused batch published %d events", len(d)+len(l))
			}
		})
	}
}

func TestIngestClosedIncidentRereadsIt(t *testing.T) {
	inc := ruleIncident()
	var calls []sar.IngestArgs
	st := ingestStore(inc, sar.IngestResult{}, &calls)
	reads := 0
	get := st.GetIncidentFn
	st.GetIncidentFn = func(ctx context.Context, id string) (*sarv1.Incident, int64, error) {
		reads++
		return get(ctx, id)
	}
	st.IngestFn = func(context.Context, sar.IngestArgs) (sar.IngestResult, error) {
		return sar.IngestResult{}, sar.Errorf(sar.KindFailedPrecondition, "incident is closed")
	}
	s := newRuleService(t, st, &fakeBus{})
	batch := &sarv1.FixBatch{IncidentId: inc.GetId(), DeviceId: "phone1", Fixes: []*sarv1.LocationFix{ruleFix(1, 30)}}
	for i := range 2 {
		if _, err := s.Ingest(context.Background(), rescuer(), batch); sar.KindOf(err) != sar.KindFailedPrecondition {
			t.Fatalf("Ingest %d = %v, want failed precondition", i, err)
		}
	}
	if reads != 2 {
		t.Errorf("incident read %d times for two batches to a closed incident, want 2 (the cached copy is dropped)", reads)
	}
}

func TestIngestAckSurvivesALostLiveEvent(t *testing.T) {
	inc := ruleIncident()
	var calls []sar.IngestArgs
	st := ingestStore(inc, sar.IngestResult{AckedThrough: 1, Stored: 1}, &calls)
	s := newRuleService(t, st, &fakeBus{liveErr: errors.New("nats: connection closed")})
	ack, err := s.Ingest(context.Background(), rescuer(), &sarv1.FixBatch{IncidentId: inc.GetId(), DeviceId: "phone1",
		Fixes: []*sarv1.LocationFix{ruleFix(1, 30)}})
	if err != nil || !slices.Equal(ack.GetStored(), []uint64{1}) {
		t.Errorf("Ingest with NATS down = %v, %v; want fix 1 acknowledged (it is stored)", ack.GetStored(), err)
	}
}
