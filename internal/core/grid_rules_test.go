package core

import (
	"context"
	"testing"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/sar"
)

// A grid write whose version was moved by tracks is renumbered and written
// again: its event names the version after the one the store reported, and
// nothing else of the write changes. A write that keeps losing gives up
// with a conflict (ABORTED) instead of looping.
func TestWriteGridRenumbersAfterTracks(t *testing.T) {
	var writes []sar.GridWrite
	st := &fakeStore{PutGridFn: func(_ context.Context, w sar.GridWrite) error {
		writes = append(writes, w)
		if len(writes) == 1 {
			return &sar.VersionMovedError{Current: 41}
		}
		return nil
	}}
	s := newRuleService(t, st, &fakeBus{})
	var numbered []int64
	w := sar.GridWrite{IncidentID: "inc", ExpectWriteVersion: 3, ExpectVersion: 7, Prior: map[uint64]float64{1: 0.5}}
	ev, err := s.writeGrid(context.Background(), w, func(v int64) *sarv1.Event {
		numbered = append(numbered, v)
		return &sarv1.Event{Id: "e", IncidentId: "inc"}
	})
	if err != nil || ev == nil {
		t.Fatalf("writeGrid = %v, %v; want the event of the second write", ev, err)
	}
	if len(numbered) != 2 || numbered[0] != 8 || numbered[1] != 42 {
		t.Errorf("event versions = %v, want [8 42] (renumbered after the version tracks reached)", numbered)
	}
	if len(writes) != 2 || writes[1].ExpectVersion != 41 || writes[1].ExpectWriteVersion != 3 {
		t.Errorf("second write expects version %d and write version %d, want 41 and 3 (the snapshot stays the same)",
			writes[1].ExpectVersion, writes[1].ExpectWriteVersion)
	}
}

func TestWriteGridGivesUp(t *testing.T) {
	calls := 0
	st := &fakeStore{PutGridFn: func(_ context.Context, w sar.GridWrite) error {
		calls++
		return &sar.VersionMovedError{Current: w.ExpectVersion + 1}
	}}
	s := newRuleService(t, st, &fakeBus{})
	_, err := s.writeGrid(context.Background(), sar.GridWrite{IncidentID: "inc"}, func(int64) *sarv1.Event { return &sarv1.Event{} })
	if sar.KindOf(err) != sar.KindAborted {
		t.Errorf("writeGrid against a version that always moves = %v, want an aborted conflict", err)
	}
	if calls != gridWriteTries {
		t.Errorf("PutGrid called %d times, want %d", calls, gridWriteTries)
	}
}

func TestWriteGridLostToASeedIsNotRetried(t *testing.T) {
	calls := 0
	st := &fakeStore{PutGridFn: func(context.Context, sar.GridWrite) error { calls++; return sar.ErrGridConflict }}
	s := newRuleService(t, st, &fakeBus{})
	if _, err := s.writeGrid(context.Background(), sar.GridWrite{IncidentID: "inc"}, func(int64) *sarv1.Event { return &sarv1.Event{} }); err != sar.ErrGridConflict {
		t.Errorf("writeGrid after another seed won = %v, want sar.ErrGridConflict (the caller reloads the grid)", err)
	}
	if calls != 1 {
		t.Errorf("PutGrid called %d times, want 1: a stale snapshot must be reloaded, not written again", calls)
	}
}
