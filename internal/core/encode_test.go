package core

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
)

// The positions event put together from the fixes' encodings decodes to
// the same event as the whole event encoded at once.
func TestEncodePositionsDecodesToTheEvent(t *testing.T) {
	fixes := benchFixes(7, 3, time.Now())
	fixes[1].Cell = "891f8d7a49bffff"
	pbs := make([][]byte, len(fixes))
	for i, f := range fixes {
		b, err := proto.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		pbs[i] = b
	}
	ev := &sarv1.Event{Id: "ev1", IncidentId: "inc1", Time: timestamppb.Now()}
	pe := &sarv1.PositionsEvent{ParticipantId: "p1", DeviceId: "phone", Kind: sarv1.ParticipantKind_PARTICIPANT_KIND_RESCUER,
		AgencyId: "ag", TeamId: "t", LastFix: fixes[2], LastFixChanged: true, BatchId: 42}
	data, err := encodePositions(ev, pe, pbs)
	if err != nil {
		t.Fatal(err)
	}
	pe.Fixes = fixes
	ev.Payload = &sarv1.Event_Positions{Positions: pe}
	got := &sarv1.Event{}
	if err := proto.Unmarshal(data, got); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, ev) {
		t.Fatalf("decoded %v\nwant %v", got, ev)
	}
	if _, err := encodePositions(ev, pe, pbs); err == nil {
		t.Fatal("an event that already has its payload was encoded again")
	}
}
