package store

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/mountain-sar/sar/internal/sar"
)

// A queue entry ends only if no batch queued more since it was read; one
// that did stays, its time moved to the worker's progress; a time entry
// left without its generation is dropped instead of being worked forever.
func TestWorkDone(t *testing.T) {
	s, rdb := newStore(t)
	ctx := context.Background()
	id := "01hzzzzzzzzzzzzzzzzzzzzzzz"
	m := sar.WorkMember(sar.WorkCoverage, "p1")
	rdb.HSet(ctx, kWork(id), m, "3")
	rdb.ZAdd(ctx, kWorkTime(id), redis.Z{Score: 1000, Member: m})
	if done, err := s.WorkDone(ctx, id, m, "2", 5000); err != nil || done {
		t.Fatalf("WorkDone with a moved generation = %v, %v; want false", done, err)
	}
	items, err := s.SearchWork(ctx, id)
	if err != nil || len(items) != 1 || items[0].SinceMs != 5000 || items[0].ParticipantID != "p1" || items[0].Kind != sar.WorkCoverage {
		t.Fatalf("SearchWork = %+v, %v; want p1's coverage entry with its time moved to 5000", items, err)
	}
	if done, err := s.WorkDone(ctx, id, m, "3", 6000); err != nil || !done {
		t.Fatalf("WorkDone with the generation read = %v, %v; want true", done, err)
	}
	if items, err := s.SearchWork(ctx, id); err != nil || len(items) != 0 {
		t.Fatalf("SearchWork after the end = %+v, %v; want none", items, err)
	}
	rdb.ZAdd(ctx, kWorkTime(id), redis.Z{Score: 1000, Member: m}) // a stray time entry
	if done, err := s.WorkDone(ctx, id, m, "", 7000); err != nil || !done {
		t.Fatalf("WorkDone on a stray = %v, %v; want it dropped", done, err)
	}
	if n := rdb.ZCard(ctx, kWorkTime(id)).Val(); n != 0 {
		t.Fatalf("%d time entries left, want 0", n)
	}
	rdb.ZAdd(ctx, kWorkTime(id), redis.Z{Score: 1000, Member: "x:p1"})
	if _, err := s.SearchWork(ctx, id); sar.KindOf(err) != sar.KindInternal {
		t.Fatalf("SearchWork with a malformed entry = %v, want an internal error", err)
	}
}
