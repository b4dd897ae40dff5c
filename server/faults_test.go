package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/mountain-sar/sar/dispatch"
	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/app"
	"github.com/mountain-sar/sar/internal/testenv"
)

// TestRedisCrashLosesNothingAcknowledged kills Redis (SIGKILL, AOF on)
// while a device streams: batches during the outage are refused with
// UNAVAILABLE, the device resends them after the restart, and every fix
// that was ever acknowledged is stored exactly once.
func TestRedisCrashLosesNothingAcknowledged(t *testing.T) {
	e := startEnv(t)
	op, officer, inc := e.officerOnIncident()
	d := e.openDevice(officer, inc.GetId(), "phone")
	now := time.Now()
	all := walk(1, 30, now)

	ack := d.send(all[:10]...)
	if len(ack.GetStored()) != 10 {
		t.Fatalf("before the crash ack = %v, want 10 stored", ack)
	}
	e.redis.Stop(testenv.WithSIGKILL())
	ack = d.send(all[10:20]...)
	if ack.GetProblem().GetCode() != uint32(codes.Unavailable) || len(ack.GetStored()) != 0 || ack.GetAckedThrough() != 0 {
		t.Fatalf("during the outage ack = %v, want UNAVAILABLE and nothing acknowledged", ack)
	}
	e.redis.Start()
	// The device's outbox resends from its last acknowledged sequence.
	var acked []uint64
	eventually(t, "ingest after the restart", func() bool {
		ack = d.send(all[10:20]...)
		acked = append(acked, ack.GetStored()...)
		return ack.GetProblem() == nil
	})
	ack = d.send(all[10:]...) // overlapping resend
	acked = append(acked, ack.GetStored()...)
	if len(acked) != 20 || ack.GetAckedThrough() != 30 {
		t.Fatalf("after the restart stored %v through %d, want 11-30 once", acked, ack.GetAckedThrough())
	}
	parts := must[*sarv1.ListParticipantsResponse](t, "ListParticipants")(e.inc.ListParticipants(e.as(op), &sarv1.ListParticipantsRequest{IncidentId: inc.GetId()}))
	track := must[*sarv1.GetTrackResponse](t, "GetTrack")(e.loc.GetTrack(e.as(op), &sarv1.GetTrackRequest{IncidentId: inc.GetId(), ParticipantId: parts.GetParticipants()[0].GetId()}))
	if len(track.GetFixes()) != 30 {
		t.Fatalf("track after crash = %d fixes, want 30 (each acknowledged fix exactly once)", len(track.GetFixes()))
	}
	for i, f := range track.GetFixes() {
		if f.GetSequence() != uint64(i+1) {
			t.Fatalf("track[%d] sequence = %d, want %d", i, f.GetSequence(), i+1)
		}
	}
}

// TestNATSOutageKeepsLifecycleEvents stops NATS while an operator closes an
// incident: the close succeeds (it is stored), its event waits in the
// outbox, and once NATS is back the relay publishes it to JetStream exactly
// once. Positions keep being stored throughout.
func TestNATSOutageKeepsLifecycleEvents(t *testing.T) {
	e := startEnv(t)
	op, officer, inc := e.officerOnIncident()

	e.nats.Shutdown()
	ack, err := e.loc.ReportFixes(e.as(officer), &sarv1.ReportFixesRequest{Batch: &sarv1.FixBatch{IncidentId: inc.GetId(), DeviceId: "phone", Fixes: walk(1, 5, time.Now())}})
	if err != nil || len(ack.GetAck().GetStored()) != 5 {
		t.Fatalf("ReportFixes with NATS down = %v, %v; want 5 stored (Redis is the record)", ack, err)
	}
	ctx, cancel := context.WithTimeout(e.as(op), 20*time.Second)
	defer cancel()
	if _, err := e.inc.CloseIncident(ctx, &sarv1.CloseIncidentRequest{IncidentId: inc.GetId(), Outcome: sarv1.IncidentOutcome_INCIDENT_OUTCOME_FOUND_ALIVE}); err != nil {
		t.Fatalf("CloseIncident with NATS down: %v", err)
	}
	if n, _ := e.rdb.HLen(context.Background(), "sar:{"+inc.GetId()+"}:outbox").Result(); n == 0 {
		t.Fatalf("outbox after close with NATS down is empty, want the closed event waiting")
	}
	e.nats.Start()

	nc, err := nats.Connect(e.nats.URL())
	if err != nil {
		t.Fatalf("nats.Connect: %v", err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	var closedEvents int
	eventually(t, "the closed event in JetStream", func() bool {
		closedEvents = countStream(t, js, dispatch.SubjectPrefix+inc.GetId()+".evt.incident", sarv1.IncidentChange_INCIDENT_CHANGE_CLOSED)
		return closedEvents >= 1
	})
	eventually(t, "the outbox to drain", func() bool {
		n, _ := e.rdb.HLen(context.Background(), "sar:{"+inc.GetId()+"}:outbox").Result()
		return n == 0
	})
	if n := countStream(t, js, dispatch.SubjectPrefix+inc.GetId()+".evt.incident", sarv1.IncidentChange_INCIDENT_CHANGE_CLOSED); n != 1 {
		t.Errorf("closed events in JetStream = %d, want exactly 1", n)
	}
}

// countStream reads SAR_EVENTS on subject and counts incident changes.
func countStream(t *testing.T, js jetstream.JetStream, subject string, change sarv1.IncidentChange) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := js.OrderedConsumer(ctx, dispatch.StreamName, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		return 0
	}
	n := 0
	for {
		msgs, err := c.FetchNoWait(100)
		if err != nil {
			return n
		}
		got := 0
		for m := range msgs.Messages() {
			got++
			ev := &sarv1.Event{}
			if proto.Unmarshal(m.Data(), ev) == nil && ev.GetIncidentChanged().GetChange() == change {
				n++
			}
		}
		if got == 0 {
			return n
		}
	}
}

// TestGracefulShutdownFinishesBatches stops the server while a device
// streams: every batch that was acknowledged is stored, the stream ends
// with UNAVAILABLE so the device reconnects, and the server exits.
func TestGracefulShutdownFinishesBatches(t *testing.T) {
	e := startEnv(t)
	_, officer, inc := e.officerOnIncident()
	d := e.openDevice(officer, inc.GetId(), "phone")
	fixes := walk(1, 200, time.Now())

	stored := 0
	done := make(chan error, 1)
	go func() { done <- e.app.Close() }()
	var streamErr error
	for i := 0; i < 20; i++ {
		if err := d.stream.Send(&sarv1.StreamFixesRequest{Batch: &sarv1.FixBatch{IncidentId: inc.GetId(), DeviceId: "phone", Fixes: fixes[i*10 : i*10+10]}}); err != nil {
			_, streamErr = d.stream.Recv() // Send says only io.EOF; Recv has the status
			break
		}
		r, err := d.stream.Recv()
		if err != nil {
			streamErr = err
			break
		}
		stored += len(r.GetAck().GetStored())
	}
	if err := <-done; err != nil {
		t.Fatalf("Close: %v", err)
	}
	if streamErr != nil {
		wantCode(t, "stream at shutdown", streamErr, codes.Unavailable)
	}
	n, err := e.rdb.ZCard(context.Background(), "sar:{"+inc.GetId()+"}:trk:"+e.participantOf(inc.GetId(), "phone")).Result()
	if err != nil || int(n) != stored {
		t.Fatalf("track holds %d, %v; want the %d acknowledged fixes", n, err, stored)
	}
}

// TestShutdownWakesIdleStreams stops the server while device streams wait
// for their next batch (the handler is in Recv, with no goroutine of its
// own watching for shutdown): each ends at once with the draining
// UNAVAILABLE, not cut by the shutdown timeout, and Close returns cleanly.
func TestShutdownWakesIdleStreams(t *testing.T) {
	e := startEnv(t, func(c *app.Config) { c.ShutdownTimeout = time.Minute })
	_, officer, inc := e.officerOnIncident()
	// Each sends a batch (so the server holds its stream), then waits.
	devices := []*device{e.openDevice(officer, inc.GetId(), "phone-1"), e.openDevice(officer, inc.GetId(), "phone-2")}
	for _, d := range devices {
		d.send(walk(1, 10, time.Now())...)
	}
	done := make(chan error, 1)
	go func() { done <- e.app.Close() }()
	for _, d := range devices {
		_, err := d.stream.Recv()
		wantCode(t, d.id+" stream at shutdown", err, codes.Unavailable)
		if msg := status.Convert(err).Message(); !strings.Contains(msg, "shutting down") {
			t.Errorf("%s stream at shutdown: %q, want the draining message (shutting down; reconnect)", d.id, msg)
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func (e *env) participantOf(incident, device string) string {
	p, err := e.rdb.HGet(context.Background(), "sar:{"+incident+"}:dev", device).Result()
	if err != nil {
		e.t.Fatalf("participant of %s: %v", device, err)
	}
	return p
}
