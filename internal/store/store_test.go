package store

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/types/known/timestamppb"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/sar"
	"github.com/mountain-sar/sar/internal/testenv"
)

func newStore(t *testing.T, opts ...Option) (*Store, *redis.Client) {
	t.Helper()
	r := testenv.StartRedis(t)
	opt, _ := redis.ParseURL(r.URL())
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { _ = rdb.Close() })
	return New(rdb, opts...), rdb
}

func openIncident(t *testing.T, s *Store) *sarv1.Incident {
	t.Helper()
	inc := &sarv1.Incident{Id: sar.NewID(), Jurisdiction: "north", State: sarv1.IncidentState_INCIDENT_STATE_OPEN, CreateTime: timestamppb.Now()}
	ev := &sarv1.Event{Id: sar.NewID(), IncidentId: inc.GetId(), Time: timestamppb.Now()}
	if _, _, err := s.CreateIncident(context.Background(), inc, "", ev); err != nil {
		t.Fatalf("CreateIncident: %v", err)
	}
	return inc
}

func batch(first uint64, n int, start time.Time, step time.Duration) []sar.IngestFix {
	out := make([]sar.IngestFix, n)
	for i := range n {
		t := start.Add(time.Duration(i) * step)
		f := &sarv1.LocationFix{Sequence: first + uint64(i), Lat: 46.8, Lng: -121.5, HorizontalAccuracyM: 5,
			Time: timestamppb.New(t), Cell: "8928308280fffff"}
		out[i] = sar.IngestFix{Sequence: f.GetSequence(), Fix: f, TimeMs: t.UnixMilli()}
	}
	return out
}

// TestIngestScript checks the script's invariants directly: exactly once,
// last position only forward in fix time, bounded track, one cell count per
// stored fix, and nothing written for a closed incident.
func TestIngestScript(t *testing.T) {
	s, rdb := newStore(t, WithTrackMax(20), WithRetention(time.Hour))
	ctx := context.Background()
	inc := openIncident(t, s)
	p := &sarv1.Participant{Id: sar.NewID(), IncidentId: inc.GetId(), Kind: sarv1.ParticipantKind_PARTICIPANT_KIND_CALLER}
	if err := s.AddParticipant(ctx, p, &sarv1.Event{Id: sar.NewID(), IncidentId: inc.GetId(), Time: timestamppb.Now()}); err != nil {
		t.Fatalf("AddParticipant: %v", err)
	}
	if _, err := s.Join(ctx, sar.JoinArgs{IncidentID: inc.GetId(), DeviceID: "d1", CallerPartID: p.GetId()}); err != nil {
		t.Fatalf("Join: %v", err)
	}
	ingest := func(fixes []sar.IngestFix) sar.IngestResult {
		t.Helper()
		res, err := s.Ingest(ctx, sar.IngestArgs{IncidentID: inc.GetId(), ParticipantID: p.GetId(), DeviceID: "d1", Fixes: fixes})
		if err != nil {
			t.Fatalf("Ingest: %v", err)
		}
		return res
	}
	now := time.Now()
	res := ingest(batch(1, 10, now.Add(-time.Minute), time.Second))
	if res.AckedBefore != 0 || res.Stored != 10 || !res.LastChanged || res.Last.GetSequence() != 10 {
		t.Fatalf("first batch = %+v, want 10 stored and last = 10", res)
	}
	if res.HasGrid {
		t.Errorf("first batch says the incident has a search plan; it has none")
	}
	// A plan seeded meanwhile (on any replica) is seen by the next batch.
	if err := s.PutGrid(ctx, sar.GridWrite{IncidentID: inc.GetId(), Seed: true, Summary: &sarv1.SearchGridSummary{IncidentId: inc.GetId(), Resolution: 9},
		Prior: map[uint64]float64{0x8928308280fffff: 1}, Event: &sarv1.Event{Id: sar.NewID(), IncidentId: inc.GetId()}}); err != nil {
		t.Fatalf("PutGrid: %v", err)
	}
	res = ingest(batch(1, 10, now.Add(-time.Minute), time.Second))
	if !res.HasGrid {
		t.Errorf("batch after a plan was seeded: HasGrid = false")
	}
	if res.AckedBefore != 10 || res.Stored != 0 || res.LastChanged {
		t.Fatalf("replayed batch = %+v, want nothing stored", res)
	}
	// Older fixes with higher sequences (a device whose clock went back, or
	// a backlog): stored, but the last position stays.
	old := append(batch(11, 5, now.Add(-time.Hour), time.Second), sar.IngestFix{Sequence: 16}, sar.IngestFix{Sequence: 17}) // 16, 17 refused upstream
	res = ingest(old)
	if res.Stored != 5 || res.LastChanged || res.Last.GetSequence() != 10 || res.AckedThrough != 17 {
		t.Fatalf("old-time batch = %+v, want 5 stored, last still 10, acked through 17", res)
	}
	// A gap stops the walk: 19 and 20 wait until 18 arrives.
	res = ingest(batch(19, 2, now, time.Second))
	if res.Stored != 0 || res.AckedThrough != 17 {
		t.Fatalf("batch after a gap = %+v, want nothing stored, still through 17", res)
	}
	if got, _ := s.AckedThrough(ctx, inc.GetId(), "d1"); got != 17 {
		t.Errorf("AckedThrough = %d, want 17 (rejected fixes count)", got)
	}
	// The track is bounded: it never grows past trackMax + 10 %, and keeps
	// the newest fixes by time.
	for i := uint64(0); i < 10; i++ {
		ingest(batch(18+i*3, 3, now.Add(time.Duration(i)*3*time.Second), time.Second))
		if n, _ := rdb.ZCard(ctx, kTrack(inc.GetId(), p.GetId())).Result(); n > 22 {
			t.Fatalf("track size = %d, want at most 22", n)
		}
	}
	track, err := s.Track(ctx, inc.GetId(), p.GetId(), 0, 100)
	if err != nil || len(track) < 20 || track[len(track)-1].GetSequence() != 47 {
		t.Fatalf("Track = %d fixes ending at %v, %v; want the newest ≥ 20 ending at 47", len(track), track[len(track)-1].GetSequence(), err)
	}
	cells, _ := s.CellVisits(ctx, inc.GetId())
	if len(cells) != 1 || cells[0].Fixes != 45 {
		t.Errorf("CellVisits = %+v, want one cell with 45 fixes (10+5+30)", cells)
	}

	// Close: ingest is refused, the retention clock starts.
	if _, err := s.UpdateIncident(ctx, inc.GetId(), func(i *sarv1.Incident) (*sarv1.Event, error) {
		i.State = sarv1.IncidentState_INCIDENT_STATE_CLOSED
		return &sarv1.Event{Id: sar.NewID(), IncidentId: i.GetId(), Time: timestamppb.Now()}, nil
	}); err != nil {
		t.Fatalf("UpdateIncident: %v", err)
	}
	_, err = s.Ingest(ctx, sar.IngestArgs{IncidentID: inc.GetId(), ParticipantID: p.GetId(), DeviceID: "d1", Fixes: batch(48, 1, now, 0)})
	if sar.KindOf(err) != sar.KindFailedPrecondition {
		t.Errorf("Ingest after close = %v, want FailedPrecondition", err)
	}
	if got, _ := s.AckedThrough(ctx, inc.GetId(), "d1"); got != 47 {
		t.Errorf("AckedThrough after refused batch = %d, want 47 (nothing written)", got)
	}
	for _, k := range []string{kTrack(inc.GetId(), p.GetId()), kLast(inc.GetId()), kCells(inc.GetId()), kCellTime(inc.GetId()),
		kParts(inc.GetId()), kDev(inc.GetId()), kSeq(inc.GetId())} {
		if ttl, _ := rdb.TTL(ctx, k).Result(); ttl <= 0 || ttl > time.Hour {
			t.Errorf("TTL(%s) = %v, want the 1h retention", k, ttl)
		}
	}
	if n, _ := rdb.HLen(ctx, kOutbox(inc.GetId())).Result(); n != 4 {
		t.Errorf("outbox holds %d events, want 4 (created, joined, grid seeded, closed; nothing published them)", n)
	}
}

// TestUpdateIncidentConcurrent makes two writers race: both changes land,
// one after the other (compare-and-set on the version).
func TestUpdateIncidentConcurrent(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	inc := openIncident(t, s)
	done := make(chan error, 2)
	for _, a := range []string{"a", "b"} {
		go func() {
			_, err := s.UpdateIncident(ctx, inc.GetId(), func(i *sarv1.Incident) (*sarv1.Event, error) {
				i.AgencyIds = append(i.AgencyIds, a)
				time.Sleep(20 * time.Millisecond) // widen the race
				return &sarv1.Event{Id: sar.NewID(), IncidentId: i.GetId(), Time: timestamppb.Now()}, nil
			})
			done <- err
		}()
	}
	for range 2 {
		if err := <-done; err != nil {
			t.Fatalf("UpdateIncident: %v", err)
		}
	}
	got, ver, err := s.GetIncident(ctx, inc.GetId())
	if err != nil || len(got.GetAgencyIds()) != 2 || ver != 3 {
		t.Fatalf("after two updates agencies = %v version %d, %v; want both and version 3", got.GetAgencyIds(), ver, err)
	}
}

// TestPutIncidentReplay replays the same change, as go-redis does when a
// reply is lost: the second run is recognised and changes nothing.
func TestPutIncidentReplay(t *testing.T) {
	s, rdb := newStore(t)
	ctx := context.Background()
	inc := &sarv1.Incident{Id: sar.NewID(), Jurisdiction: "north", State: sarv1.IncidentState_INCIDENT_STATE_OPEN}
	ev := &sarv1.Event{Id: sar.NewID(), IncidentId: inc.GetId(), Time: timestamppb.Now()}
	v1, err := s.putIncident(ctx, inc, 0, ev)
	if err != nil || v1 != 1 {
		t.Fatalf("create = %d, %v; want version 1", v1, err)
	}
	if v, err := s.putIncident(ctx, inc, 0, ev); err != nil || v != 1 {
		t.Fatalf("replayed create = %d, %v; want version 1 and no error", v, err)
	}
	ev2 := &sarv1.Event{Id: sar.NewID(), IncidentId: inc.GetId(), Time: timestamppb.Now()}
	if _, err := s.putIncident(ctx, inc, 0, ev2); sar.KindOf(err) != sar.KindAlreadyExists {
		t.Fatalf("another create with the same id = %v, want AlreadyExists", err)
	}
	if n, _ := rdb.HLen(ctx, kOutbox(inc.GetId())).Result(); n != 1 {
		t.Errorf("outbox = %d events, want 1", n)
	}
}

// TestCreateIncidentRequestIDRecovers: a create that died after claiming
// its request id is finished by the retry, under the same id.
func TestCreateIncidentRequestIDRecovers(t *testing.T) {
	s, rdb := newStore(t)
	ctx := context.Background()
	first := sar.NewID()
	if err := rdb.Set(ctx, kReqID("cred1", "req-7"), first, time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	inc := &sarv1.Incident{Id: sar.NewID(), Jurisdiction: "north", CreatedBy: "cred1", State: sarv1.IncidentState_INCIDENT_STATE_OPEN}
	got, created, err := s.CreateIncident(ctx, inc, "req-7", &sarv1.Event{Id: sar.NewID(), IncidentId: inc.GetId(), Time: timestamppb.Now()})
	if err != nil || got.GetId() != first || !created {
		t.Fatalf("retry = %v, created %v, %v; want the first call's id %s created now", got.GetId(), created, err, first)
	}
	again := &sarv1.Incident{Id: sar.NewID(), Jurisdiction: "north", CreatedBy: "cred1", State: sarv1.IncidentState_INCIDENT_STATE_OPEN}
	got, created, err = s.CreateIncident(ctx, again, "req-7", &sarv1.Event{Id: sar.NewID(), IncidentId: again.GetId(), Time: timestamppb.Now()})
	if err != nil || got.GetId() != first || created {
		t.Fatalf("second retry = %v, created %v, %v; want %s, not created", got.GetId(), created, err, first)
	}
	other := &sarv1.Incident{Id: sar.NewID(), Jurisdiction: "north", CreatedBy: "cred2", State: sarv1.IncidentState_INCIDENT_STATE_OPEN}
	got, created, _ = s.CreateIncident(ctx, other, "req-7", &sarv1.Event{Id: sar.NewID(), IncidentId: other.GetId(), Time: timestamppb.Now()})
	if got.GetId() == first || !created {
		t.Errorf("another credential's request id req-7 returned the first incident")
	}
}

// TestOutboxOrder: events come back in the order they were made, so the
// relay publishes created before closed.
func TestOutboxOrder(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	inc := openIncident(t, s)
	for i := 0; i < 20; i++ {
		if _, err := s.UpdateIncident(ctx, inc.GetId(), func(i *sarv1.Incident) (*sarv1.Event, error) {
			return &sarv1.Event{Id: sar.NewID(), IncidentId: i.GetId(), Time: timestamppb.Now()}, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	evs, err := s.OutboxEvents(ctx, inc.GetId())
	if err != nil || len(evs) != 21 {
		t.Fatalf("OutboxEvents = %d, %v; want 21", len(evs), err)
	}
	for i := 1; i < len(evs); i++ {
		if evs[i-1].GetId() >= evs[i].GetId() {
			t.Fatalf("outbox event %d (%s) not after %d (%s)", i, evs[i].GetId(), i-1, evs[i-1].GetId())
		}
	}
}
