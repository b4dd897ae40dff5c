package store

import (
	"context"
	"errors"
	"math"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/sar"
)

func newEvent(id string) *sarv1.Event {
	return &sarv1.Event{Id: sar.NewID(), IncidentId: id, Time: timestamppb.Now()}
}

// TestSegmentationCompareAndSet checks that a segmentation is written only
// over the version it was read at, with its event, and that it expires
// with the incident's other data after close.
func TestSegmentationCompareAndSet(t *testing.T) {
	s, rdb := newStore(t, WithRetention(time.Hour))
	ctx := context.Background()
	id := openIncident(t, s).GetId()
	if seg, err := s.Segmentation(ctx, id); err != nil || seg != nil {
		t.Fatalf("sar.Segmentation before any = %v, %v; want nil, nil", seg, err)
	}
	seg := &sar.Segmentation{SeedVersion: 3, TargetAreaM2: 5e5, NextID: 3, Segments: []sar.StoredSegment{
		{ID: 1, Cells: []uint64{0x8928308280fffff, 0x8928308280bffff}, AreaM2: 2e5, Lat: 37.77, Lng: -122.41},
		{ID: 2, Cells: []uint64{0x89283082807ffff}, AreaM2: 1e5, Lat: 37.78, Lng: -122.42, Agency: "rescue", Team: "alpha", AssignMs: 1700000000000},
	}}
	ev := newEvent(id)
	v, err := s.PutSegmentation(ctx, id, seg, ev)
	if err != nil || v != 1 {
		t.Fatalf("PutSegmentation = %d, %v; want version 1", v, err)
	}
	if ok, _ := rdb.HExists(ctx, kOutbox(id), ev.GetId()).Result(); !ok {
		t.Errorf("the segmentation's event is not in the outbox")
	}
	if _, err := s.PutSegmentation(ctx, id, seg, newEvent(id)); !errors.Is(err, sar.ErrSegmentsConflict) {
		t.Errorf("PutSegmentation over version 0 again = %v, want sar.ErrSegmentsConflict", err)
	}
	got, err := s.Segmentation(ctx, id)
	if err != nil {
		t.Fatalf("sar.Segmentation: %v", err)
	}
	if got.Version != 1 || got.SeedVersion != 3 || got.NextID != 3 || len(got.Segments) != 2 ||
		!slices.Equal(got.Segments[0].Cells, seg.Segments[0].Cells) || got.Segments[1].Team != "alpha" || !got.Segments[1].Assigned() ||
		got.Segments[0].Assigned() {
		t.Errorf("sar.Segmentation read back = %+v, want what was written at version 1", got)
	}
	got.Segments[0].Agency = "police"
	if v, err := s.PutSegmentation(ctx, id, got, newEvent(id)); err != nil || v != 2 {
		t.Errorf("PutSegmentation over version 1 = %d, %v; want 2", v, err)
	}

	rdb.HSet(ctx, kSearcher(id), "p", "dog") // a participant's searcher type
	if _, err := s.UpdateIncident(ctx, id, func(i *sarv1.Incident) (*sarv1.Event, error) {
		i.State = sarv1.IncidentState_INCIDENT_STATE_CLOSED
		return newEvent(id), nil
	}); err != nil {
		t.Fatalf("UpdateIncident: %v", err)
	}
	for _, k := range []string{kSegs(id), kSearcher(id)} {
		if ttl, _ := rdb.TTL(ctx, k).Result(); ttl <= 0 || ttl > time.Hour {
			t.Errorf("TTL(%s) after close = %v, want the 1h retention", k, ttl)
		}
	}
	got.Version = 2
	if _, err := s.PutSegmentation(ctx, id, got, newEvent(id)); sar.KindOf(err) != sar.KindFailedPrecondition {
		t.Errorf("PutSegmentation after close = %v, want FailedPrecondition", err)
	}
}

// TestJoinSearcherTypeAndRefusal checks the searcher type kept per
// participant, and that a join refused because the device is taken writes
// nothing (no participant, no event).
func TestJoinSearcherTypeAndRefusal(t *testing.T) {
	s, rdb := newStore(t)
	ctx := context.Background()
	id := openIncident(t, s).GetId()
	join := func(cred, device, typ string) (sar.JoinResult, error) {
		pid := sar.NewID()
		return s.Join(ctx, sar.JoinArgs{IncidentID: id, DeviceID: device, CredentialID: cred, SearcherType: typ, NewSearcherType: "foot",
			New:   &sarv1.Participant{Id: pid, IncidentId: id, Kind: sarv1.ParticipantKind_PARTICIPANT_KIND_RESCUER},
			Event: newEvent(id)})
	}
	a, err := join("cred-a", "phone-a", "")
	if err != nil || !a.Created || a.Participant.GetSearcherType() != "foot" {
		t.Fatalf("first join = %+v, %v; want a new participant of type foot", a, err)
	}
	if r, err := join("cred-a", "phone-a", "dog"); err != nil || r.Created || r.Participant.GetSearcherType() != "dog" {
		t.Errorf("rejoin with type dog = %+v, %v; want the same participant, now dog", r, err)
	}
	if r, err := join("cred-a", "phone-a", ""); err != nil || r.Participant.GetSearcherType() != "dog" {
		t.Errorf("rejoin without a type = %+v, %v; want dog kept", r, err)
	}
	parts0, _ := rdb.HLen(ctx, kParts(id)).Result()
	events0, _ := rdb.HLen(ctx, kOutbox(id)).Result()
	if _, err := join("cred-b", "phone-a", "drone"); !errors.Is(err, sar.ErrDeviceTaken) {
		t.Fatalf("join with another's device = %v, want sar.ErrDeviceTaken", err)
	}
	parts1, _ := rdb.HLen(ctx, kParts(id)).Result()
	events1, _ := rdb.HLen(ctx, kOutbox(id)).Result()
	creds, _ := rdb.HExists(ctx, kPartCred(id), "cred-b").Result()
	if parts1 != parts0 || events1 != events0 || creds {
		t.Errorf("refused join left participants %d→%d, events %d→%d, credential bound %v; want nothing written", parts0, parts1, events0, events1, creds)
	}
	p, err := s.Participant(ctx, id, a.Participant.GetId())
	if err != nil || p.GetSearcherType() != "dog" {
		t.Errorf("Participant = %+v, %v; want searcher type dog", p, err)
	}
	ps, err := s.Participants(ctx, id)
	if err != nil || len(ps) != 1 || ps[0].GetSearcherType() != "dog" {
		t.Errorf("Participants = %+v, %v; want one, of type dog", ps, err)
	}
	if typ, err := rdb.HGet(ctx, kSearcher(id), a.Participant.GetId()).Result(); err != nil || typ != "dog" || rdb.Exists(ctx, kGrid(id)).Val() != 0 {
		t.Errorf("searcher type %q, %v; want dog, no grid", typ, err)
	}
}

// TestTrailingGridEvent checks the trailing event decision: a change below
// the throttle's delta is announced once the throttle interval has passed
// since the last event, exactly once.
func TestTrailingGridEvent(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	id := openIncident(t, s).GetId()
	const a, b = 0x8928308280fffff, 0x8928308280bffff
	if te, err := s.FlushGridEvent(ctx, id, 1e-6, 5000, 0); err != nil || te.Due || te.WaitMs != 0 {
		t.Errorf("FlushGridEvent without a grid = %+v, %v; want nothing", te, err)
	}
	if err := s.PutGrid(ctx, sar.GridWrite{IncidentID: id, Seed: true, Summary: &sarv1.SearchGridSummary{IncidentId: id, Resolution: 9},
		Prior: map[uint64]float64{a: 0.6, b: 0.3}, RestOfWorld: 0.1, Event: newEvent(id)}); err != nil {
		t.Fatalf("PutGrid: %v", err)
	}
	now := time.Now().UnixMilli()
	if te, err := s.FlushGridEvent(ctx, id, 1e-6, 5000, now); err != nil || te.Due || te.WaitMs != 0 {
		t.Errorf("FlushGridEvent right after seeding = %+v, %v; want nothing to announce", te, err)
	}
	r, err := s.AddCoverage(ctx, sar.CoverageArgs{IncidentID: id, ParticipantID: "p", TrackerAfter: "s1", Coverage: map[uint64]float64{a: 0.01},
		EventDelta: 0.01, EventEveryMs: 5000, NowMs: now})
	if err != nil || r.EventDue {
		t.Fatalf("AddCoverage = %+v, %v; want a change below the throttle's delta", r, err)
	}
	// The seed counts as the last event at time 0, so the throttle interval
	// has passed; make the coverage event the reference instead.
	r, err = s.AddCoverage(ctx, sar.CoverageArgs{IncidentID: id, ParticipantID: "p", TrackerBefore: "s1", TrackerAfter: "s2",
		Coverage: map[uint64]float64{a: 0.2}, EventDelta: 0.01, EventEveryMs: 5000, NowMs: now})
	if err != nil || !r.EventDue {
		t.Fatalf("AddCoverage = %+v, %v; want an event", r, err)
	}
	r, err = s.AddCoverage(ctx, sar.CoverageArgs{IncidentID: id, ParticipantID: "p", TrackerBefore: "s2", TrackerAfter: "s3",
		Coverage: map[uint64]float64{b: 0.001}, EventDelta: 0.01, EventEveryMs: 5000, NowMs: now + 1000})
	if err != nil || r.EventDue {
		t.Fatalf("AddCoverage = %+v, %v; want a change below the throttle's delta", r, err)
	}
	// Due 5 s after the last coverage (a debounce), not 5 s after the
	// last event.
	te, err := s.FlushGridEvent(ctx, id, 1e-6, 5000, now+2000)
	if err != nil || te.Due || te.WaitMs != 4000 {
		t.Errorf("FlushGridEvent 1 s after the last coverage = %+v, %v; want wait 4000 ms", te, err)
	}
	te, err = s.FlushGridEvent(ctx, id, 1e-6, 5000, now+5000)
	if err != nil || te.Due || te.WaitMs != 1000 {
		t.Errorf("FlushGridEvent 5 s after the event, 4 s after the last coverage = %+v, %v; want wait 1000 ms", te, err)
	}
	te, err = s.FlushGridEvent(ctx, id, 1e-6, 5000, now+6000)
	z := 0.6*math.Exp(-0.21) + 0.3*math.Exp(-0.001) + 0.1
	if err != nil || !te.Due || math.Abs(te.POS-(1-z)) > 1e-12 || math.Abs(te.ROW-0.1/z) > 1e-12 || te.Meta.Version != r.Version {
		t.Errorf("FlushGridEvent 5 s after the last coverage = %+v, %v; want due with POS %v, version %d", te, err, 1-z, r.Version)
	}
	if te, err := s.FlushGridEvent(ctx, id, 1e-6, 5000, now+60000); err != nil || te.Due || te.WaitMs != 0 {
		t.Errorf("FlushGridEvent after the trailing event = %+v, %v; want nothing", te, err)
	}
}

// TestSummaryUpdateAndClearCoverage checks that a settings update counts
// as a write (a rebase prepared before it is refused instead of writing
// its older summary back), and that a seed can forget the coverage of the
// cells it writes (a caller's fix).
func TestSummaryUpdateAndClearCoverage(t *testing.T) {
	s, rdb := newStore(t)
	ctx := context.Background()
	id := openIncident(t, s).GetId()
	const a, b, far = 0x8928308280fffff, 0x8928308280bffff, 0x89283082877ffff
	sm := &sarv1.SearchGridSummary{IncidentId: id, Resolution: 9, SweepWidthsM: map[string]float64{"foot": 20}}
	if err := s.PutGrid(ctx, sar.GridWrite{IncidentID: id, Seed: true, Summary: sm, Prior: map[uint64]float64{a: 0.5, b: 0.4},
		RestOfWorld: 0.1, Event: newEvent(id)}); err != nil {
		t.Fatalf("PutGrid: %v", err)
	}
	if _, err := s.AddCoverage(ctx, sar.CoverageArgs{IncidentID: id, ParticipantID: "p", TrackerAfter: "s1",
		Coverage: map[uint64]float64{a: 2, far: 1}, EventDelta: 0.01, EventEveryMs: 5000, NowMs: 1}); err != nil {
		t.Fatalf("AddCoverage: %v", err)
	}
	meta, err := s.GridMeta(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	dog := &sarv1.SearchGridSummary{IncidentId: id, Resolution: 9, SweepWidthsM: map[string]float64{"foot": 20, "dog": 60}}
	if err := s.UpdateGridSummary(ctx, id, meta.WriteVersion, dog); err != nil {
		t.Fatalf("UpdateGridSummary: %v", err)
	}
	if err := s.UpdateGridSummary(ctx, id, meta.WriteVersion, sm); !errors.Is(err, sar.ErrGridConflict) {
		t.Errorf("UpdateGridSummary from the same meta again = %v, want sar.ErrGridConflict", err)
	}
	rebase := sar.GridWrite{IncidentID: id, ExpectWriteVersion: meta.WriteVersion, ExpectVersion: meta.Version,
		Summary: sm, Prior: map[uint64]float64{a: 0.5, b: 0.4}, RestOfWorld: 0.1, Event: newEvent(id)}
	if err := s.PutGrid(ctx, rebase); !errors.Is(err, sar.ErrGridConflict) {
		t.Errorf("a rebase prepared before the settings update = %v, want sar.ErrGridConflict", err)
	}
	if m, _ := s.GridMeta(ctx, id); m.Summary.GetSweepWidthsM()["dog"] != 60 {
		t.Errorf("sweep widths = %v, want the dog width kept", m.Summary.GetSweepWidthsM())
	}
	meta, _ = s.GridMeta(ctx, id)
	collapse := sar.GridWrite{IncidentID: id, ExpectWriteVersion: meta.WriteVersion, ExpectVersion: meta.Version,
		Seed: true, ClearCoverage: true, Summary: dog, Prior: map[uint64]float64{a: 0.7, b: 0.25}, RestOfWorld: 0.05, Event: newEvent(id)}
	if err := s.PutGrid(ctx, collapse); err != nil {
		t.Fatalf("PutGrid clearing coverage: %v", err)
	}
	cov, _ := rdb.HGetAll(ctx, kGridCov(id)).Result()
	if _, ok := cov[sar.CellHex(a)]; ok || cov[sar.CellHex(far)] != "1" {
		t.Errorf("coverage after a clearing seed = %v, want a's forgotten and the far cell's kept", cov)
	}
	if m, _ := s.GridMeta(ctx, id); math.Abs(m.Z-1) > 1e-15 {
		t.Errorf("maintained total after a clearing seed = %v, want 1", m.Z)
	}
}
