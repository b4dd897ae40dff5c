package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/types/known/timestamppb"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/sar"
	"github.com/mountain-sar/sar/internal/testenv"
)

// withTracks adds n participants to an incident, each with a device and
// a few stored fixes, and returns their ids.
func withTracks(t *testing.T, s *Store, id string, n int) []string {
	t.Helper()
	ctx := context.Background()
	var ids []string
	for i := range n {
		p := &sarv1.Participant{Id: sar.NewID(), IncidentId: id, Kind: sarv1.ParticipantKind_PARTICIPANT_KIND_CALLER}
		if err := s.AddParticipant(ctx, p, &sarv1.Event{Id: sar.NewID(), IncidentId: id, Time: timestamppb.Now()}); err != nil {
			t.Fatalf("AddParticipant: %v", err)
		}
		dev := fmt.Sprintf("d%d", i)
		if _, err := s.Join(ctx, sar.JoinArgs{IncidentID: id, DeviceID: dev, CallerPartID: p.GetId()}); err != nil {
			t.Fatalf("Join: %v", err)
		}
		if r, err := s.Ingest(ctx, sar.IngestArgs{IncidentID: id, ParticipantID: p.GetId(), DeviceID: dev,
			Fixes: batch(1, 3, time.Now(), time.Second)}); err != nil || r.Stored != 3 {
			t.Fatalf("Ingest = %+v, %v", r, err)
		}
		ids = append(ids, p.GetId())
	}
	return ids
}

func closeIncident(t *testing.T, s *Store, id string) {
	t.Helper()
	if _, err := s.UpdateIncident(context.Background(), id, func(i *sarv1.Incident) (*sarv1.Event, error) {
		i.State = sarv1.IncidentState_INCIDENT_STATE_CLOSED
		return &sarv1.Event{Id: sar.NewID(), IncidentId: id, Time: timestamppb.Now()}, nil
	}); err != nil {
		t.Fatalf("close: %v", err)
	}
}

// TestCloseParticipantsChanged: the close script gets the track keys of
// the participants read before it; a participant that joined in between
// makes it refuse without writing, so its track cannot miss the expiry.
func TestCloseParticipantsChanged(t *testing.T) {
	s, rdb := newStore(t, WithRetention(time.Hour))
	ctx := context.Background()
	inc := openIncident(t, s)
	id := inc.GetId()
	parts := withTracks(t, s, id, 2)
	inc.State = sarv1.IncidentState_INCIDENT_STATE_CLOSED
	ev := &sarv1.Event{Id: sar.NewID(), IncidentId: id, Time: timestamppb.Now()}
	for _, stale := range [][]string{parts[:1], {parts[0], "someone-else"}} {
		keys, args := closeKeys(id, stale)
		args = append([]any{1, marshal(inc), "closed", ev.GetId(), marshal(ev), 3600, len(stale)}, args...)
		err := putIncidentScript.Run(ctx, rdb, keys, args...).Err()
		if scriptCode(err) != codePartsChanged {
			t.Errorf("close with participants %v of %v = %v, want %s", stale, parts, err, codePartsChanged)
		}
	}
	if _, ver, _ := s.GetIncident(ctx, id); ver != 1 {
		t.Errorf("version after refused closes = %d, want 1 (nothing written)", ver)
	}
	if ttl, _ := rdb.TTL(ctx, kTrack(id, parts[0])).Result(); ttl != -1 {
		t.Errorf("TTL of a track after refused closes = %v, want none", ttl)
	}
	closeIncident(t, s, id)
	for _, p := range parts {
		if ttl, _ := rdb.TTL(ctx, kTrack(id, p)).Result(); ttl <= 0 || ttl > time.Hour {
			t.Errorf("TTL(track of %s) = %v, want the 1h retention", p, ttl)
		}
	}
}

// TestClusterClose closes incidents with tracks on a Redis Cluster: the
// close script receives every track key in KEYS and the retention applies
// to each.
func TestClusterClose(t *testing.T) {
	cluster := testenv.StartRedisCluster(t, 3)
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cluster.Addrs()})
	t.Cleanup(func() { _ = cc.Close() })
	s := New(cc, WithRetention(2*time.Hour))
	ctx := context.Background()
	if err := s.LoadScripts(ctx); err != nil {
		t.Fatalf("LoadScripts on the cluster: %v", err)
	}
	masters := map[string]bool{}
	// Six incidents at least, more until two masters hold one (six alone
	// all land on one master of three once in 243 runs).
	for i := 0; i < 6 || (len(masters) < 2 && i < 40); i++ {
		id := openIncident(t, s).GetId()
		parts := withTracks(t, s, id, 3)
		closeIncident(t, s, id)
		for _, p := range parts {
			k := kTrack(id, p)
			if n, _ := cc.ZCard(ctx, k).Result(); n != 3 {
				t.Errorf("track %s holds %d fixes, want 3", k, n)
			}
			if ttl, err := cc.TTL(ctx, k).Result(); err != nil || ttl <= time.Hour || ttl > 2*time.Hour {
				t.Errorf("TTL(%s) = %v, %v; want the 2h retention", k, ttl, err)
			}
		}
		for _, k := range []string{kLast(id), kParts(id), kSeq(id)} {
			if ttl, _ := cc.TTL(ctx, k).Result(); ttl <= time.Hour || ttl > 2*time.Hour {
				t.Errorf("TTL(%s) = %v, want the 2h retention", k, ttl)
			}
		}
		node, err := cc.MasterForKey(ctx, kInc(id))
		if err != nil {
			t.Fatalf("MasterForKey: %v", err)
		}
		masters[node.Options().Addr] = true
	}
	if len(masters) < 2 {
		t.Errorf("incidents landed on %d masters, want them spread (test too weak)", len(masters))
	}
}
