package server

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/sar"
)

// sentMessages is a WatchIncident server stream that keeps what is sent.
type sentMessages struct {
	grpc.ServerStream
	ctx  context.Context
	sent []any
}

func (s *sentMessages) Context() context.Context     { return s.ctx }
func (s *sentMessages) SetHeader(metadata.MD) error  { return nil }
func (s *sentMessages) SendHeader(metadata.MD) error { return nil }
func (s *sentMessages) SetTrailer(metadata.MD)       {}
func (s *sentMessages) SendMsg(m any) error          { s.sent = append(s.sent, m); return nil }
func (s *sentMessages) RecvMsg(any) error            { return nil }
func (s *sentMessages) Send(m *sarv1.WatchIncidentResponse) error {
	return s.SendMsg(m)
}

// TestWatchEventsGoOnAsTheyCame: on the gRPC door an event is sent in the
// bytes the bus delivered, inside the response's field header, and the
// codec writes them as they are: a client decodes the response a marshal
// would have made. Elsewhere (the gateway's in-process door) it is sent
// as a message.
func TestWatchEventsGoOnAsTheyCame(t *testing.T) {
	ev := &sarv1.Event{Id: "e1", IncidentId: "i1", Payload: &sarv1.Event_Positions{Positions: &sarv1.PositionsEvent{
		DeviceId: "d1", BatchId: 7, Fixes: []*sarv1.LocationFix{{Sequence: 1, Lat: 46.5, Lng: 8}}}}}
	b, err := proto.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	want := &sarv1.WatchIncidentResponse{Kind: &sarv1.WatchIncidentResponse_Event{Event: ev}}

	// Only the gRPC door's codec interceptor marks the stream.
	c := newDecodeCodec()
	var wire bool
	if err := c.stream(nil, &sentMessages{ctx: context.Background()}, nil, func(_ any, ss grpc.ServerStream) error {
		wire = onWire(ss.Context())
		return nil
	}); err != nil || !wire {
		t.Fatalf("a stream through the codec's interceptor: onWire = %v (%v), want true", wire, err)
	}
	if onWire(context.Background()) {
		t.Fatal("onWire of a bare context = true, want false")
	}

	st := &sentMessages{ctx: context.Background()}
	if err := sendEvent(st, sar.BusEvent{Event: ev, Wire: b}, true); err != nil {
		t.Fatal(err)
	}
	w, ok := st.sent[0].(wireMessage)
	if !ok {
		t.Fatalf("on the gRPC door sent %T, want the bytes as they came", st.sent[0])
	}
	out, err := c.Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	var got sarv1.WatchIncidentResponse
	if err := proto.Unmarshal(out.Materialize(), &got); err != nil || !proto.Equal(&got, want) {
		t.Errorf("the client decodes %v (%v), want %v", &got, err, want)
	}
	if &w.body[0] != &b[0] {
		t.Errorf("the event's bytes were copied, want them sent as they came")
	}

	st = &sentMessages{ctx: context.Background()}
	if err := sendEvent(st, sar.BusEvent{Event: ev, Wire: b}, false); err != nil {
		t.Fatal(err)
	}
	if m, ok := st.sent[0].(*sarv1.WatchIncidentResponse); !ok || !proto.Equal(m, want) {
		t.Errorf("off the gRPC door sent %v, want the response message", st.sent[0])
	}
}
