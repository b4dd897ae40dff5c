package main

import (
	"testing"
	"time"
)

// TestEventsMissing: a stored batch whose event was not seen is missing;
// an event of a batch whose ack stored nothing (a resent batch answered
// as duplicates) is neither missing nor makes up for another.
func TestEventsMissing(t *testing.T) {
	d := &benchDevice{id: "d", sentAt: []time.Duration{10, 20, 30, 40}}
	r := &benchRun{devices: []*benchDevice{d}, byID: map[string]*benchDevice{"d": d}}
	r.start = time.Now()
	d.storedIDs = []uint64{1, 2, 4} // batch 3 was answered as duplicates
	if got := r.eventsMissing(); got != 3 {
		t.Fatalf("no event seen: missing %d, want 3", got)
	}
	d.sentAt[0], d.sentAt[2] = -1, -1 // events of batches 1 and 3 seen
	if got := r.eventsMissing(); got != 2 {
		t.Errorf("events of batches 1 and 3 seen: missing %d, want 2 (batches 2 and 4)", got)
	}
	if res := r.result(time.Second, 1); res.EventsMissing != 2 {
		t.Errorf("result: events_missing %d, want 2", res.EventsMissing)
	}
}
