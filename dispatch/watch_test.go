package dispatch_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/mountain-sar/sar/dispatch"
	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/testenv"
)

// A watcher of an incident gets that incident's events as published, and
// nothing that arrives on its subjects but is not: another incident's
// event, or an event on a subject it does not belong to (an agency can
// have JetStream deliver its own consumer's messages onto any subject).
func TestWatchPassesOnlyTheIncidentsOwnEvents(t *testing.T) {
	srv := testenv.StartNATS(t)
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	bus, err := dispatch.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const inc, other = "01m8jr4ce97enc5xbf8y16h4vm", "01m8jr4ce97enc5xbf8y16h4vn"
	events, _, stop, err := bus.Watch(ctx, inc)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	grid := func(id, incident string) *sarv1.Event {
		return &sarv1.Event{Id: id, IncidentId: incident, Payload: &sarv1.Event_SearchGridChanged{SearchGridChanged: &sarv1.SearchGridChangedEvent{}}}
	}
	raw := func(subject string, ev *sarv1.Event) {
		b, _ := proto.Marshal(ev)
		if err := nc.Publish(subject, b); err != nil {
			t.Fatal(err)
		}
	}
	prefix := "sar.v1.inc." + inc
	raw(prefix+".evt.grid", grid("foreign", other))                     // another incident's event on ours
	raw(prefix+".evt.task.blue-sky.k9", grid("rerouted", inc))          // ours, on a subject it does not belong to
	raw(prefix+".evt.grid", &sarv1.Event{Id: "empty", IncidentId: inc}) // no payload: belongs on evt.incident
	raw(prefix+".evt.grid", grid("genuine", inc))
	select {
	case ev := <-events:
		if ev.Event.GetId() != "genuine" {
			t.Errorf("watcher got %q first, want only the genuine event", ev.Event.GetId())
		}
		// The bytes it came in, for streams to pass on as they are.
		var again sarv1.Event
		if err := proto.Unmarshal(ev.Wire, &again); err != nil || !proto.Equal(&again, ev.Event) {
			t.Errorf("event's wire bytes decode to %v (%v), want the event %v", &again, err, ev.Event)
		}
	case <-ctx.Done():
		t.Fatal("the genuine event never arrived")
	}
	select {
	case ev := <-events:
		t.Errorf("watcher got %q as well", ev.Event.GetId())
	case <-time.After(300 * time.Millisecond):
	}
}
