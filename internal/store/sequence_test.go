package store

import (
	"context"
	"math"
	"strconv"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/sar"
)

// TestIngestSequencesExact checks skipped_through's bounds in the script
// (at most sar.MaxSkip past acked-through, never past 2^53-1) and that
// sequences up to 2^53-1 round-trip through Lua exactly.
func TestIngestSequencesExact(t *testing.T) {
	s, rdb := newStore(t)
	ctx := context.Background()
	inc := openIncident(t, s)
	p := &sarv1.Participant{Id: sar.NewID(), IncidentId: inc.GetId(), Kind: sarv1.ParticipantKind_PARTICIPANT_KIND_CALLER}
	if err := s.AddParticipant(ctx, p, &sarv1.Event{Id: sar.NewID(), IncidentId: inc.GetId(), Time: timestamppb.Now()}); err != nil {
		t.Fatalf("AddParticipant: %v", err)
	}
	if _, err := s.Join(ctx, sar.JoinArgs{IncidentID: inc.GetId(), DeviceID: "d1", CallerPartID: p.GetId()}); err != nil {
		t.Fatalf("Join: %v", err)
	}
	ingest := func(skip uint64, fixes []sar.IngestFix) (sar.IngestResult, error) {
		return s.Ingest(ctx, sar.IngestArgs{IncidentID: inc.GetId(), ParticipantID: p.GetId(), DeviceID: "d1", SkippedThrough: skip, Fixes: fixes})
	}
	acked := func() string { v, _ := rdb.HGet(ctx, kSeq(inc.GetId()), "d1").Result(); return v }
	for _, skip := range []uint64{math.MaxUint64, sar.MaxSequence + 1, sar.MaxSkip + 1} {
		if _, err := ingest(skip, nil); sar.KindOf(err) != sar.KindInvalid {
			t.Errorf("empty batch skipping through %d = %v, want Invalid", skip, err)
		}
	}
	if a := acked(); a != "" {
		t.Fatalf("acked-through after refused skips = %q, want nothing written", a)
	}
	res, err := ingest(sar.MaxSkip, nil)
	if err != nil || res.AckedThrough != sar.MaxSkip {
		t.Fatalf("skip of exactly MaxSkip = %+v, %v; want acked through %d", res, err, sar.MaxSkip)
	}
	// Near the top: a device whose acked-through is 2^53-6 stores 2^53-5 ...
	// 2^53-1, and every sequence comes back exactly.
	top := uint64(sar.MaxSequence)
	rdb.HSet(ctx, kSeq(inc.GetId()), "d1", strconv.FormatUint(top-5, 10))
	res, err = ingest(0, batch(top-4, 4, time.Now(), time.Second))
	if err != nil || res.AckedBefore != top-5 || res.AckedThrough != top-1 || res.Stored != 4 {
		t.Fatalf("batch at 2^53-5.. = %+v, %v; want acked %d -> %d, 4 stored", res, err, top-5, top-1)
	}
	res, err = ingest(top, nil)
	if err != nil || res.AckedThrough != top || acked() != strconv.FormatUint(top, 10) {
		t.Fatalf("skip to 2^53-1 = %+v, %v (stored %q); want exactly %d", res, err, acked(), top)
	}
	// A corrupt stored sequence is an error, not a capped number.
	rdb.HSet(ctx, kSeq(inc.GetId()), "d1", "18446744073709551616")
	if got, err := s.AckedThrough(ctx, inc.GetId(), "d1"); sar.KindOf(err) != sar.KindInternal {
		t.Errorf("AckedThrough of a corrupt value = %d, %v; want an internal error", got, err)
	}
}
