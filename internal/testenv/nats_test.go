package testenv

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// waitFor waits for a signal on ch, or fails the test after 10 s.
func waitFor(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s after 10s", what)
	}
}

// signal sends on ch without blocking.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func TestNATSJetStreamSurvivesRestart(t *testing.T) {
	ctx := t.Context()
	n := StartNATS(t)
	url := n.URL()

	disconnected := make(chan struct{}, 1)
	reconnected := make(chan struct{}, 1)
	nc, err := nats.Connect(url,
		nats.MaxReconnects(-1),
		nats.ReconnectWait(50*time.Millisecond),
		// Without this, a publish made while disconnected is buffered and
		// sent on reconnect, even though its caller got an error.
		nats.ReconnectBufSize(-1),
		nats.DisconnectErrHandler(func(*nats.Conn, error) { signal(disconnected) }),
		nats.ReconnectHandler(func(*nats.Conn) { signal(reconnected) }),
	)
	if err != nil {
		t.Fatalf("nats.Connect(%q) = %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream.New = %v", err)
	}

	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:     "INCIDENTS",
		Subjects: []string{"incidents.>"},
		Storage:  jetstream.FileStorage,
	})
	if err != nil {
		t.Fatalf("CreateStream(INCIDENTS) = %v", err)
	}
	if _, err := js.Publish(ctx, "incidents.opened", []byte("two hikers lost")); err != nil {
		t.Fatalf("Publish(incidents.opened) = %v", err)
	}

	// The broker goes down: the client notices, publishing fails.
	n.Shutdown()
	if n.Server() != nil {
		t.Errorf("Server() after Shutdown = %v, want nil", n.Server())
	}
	waitFor(t, disconnected, "disconnect")
	pubCtx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err = js.Publish(pubCtx, "incidents.opened", []byte("lost while down"))
	cancel()
	if err == nil {
		t.Errorf("Publish while the server is down = nil, want an error")
	}

	// It comes back on the same port and store: the client reconnects by
	// itself and the stream still holds the message.
	n.Start()
	if n.URL() != url {
		t.Errorf("URL() after Start = %q, want %q", n.URL(), url)
	}
	if n.Server() == nil || !n.Server().JetStreamEnabled() {
		t.Fatalf("Server() after Start = %v, want a server with JetStream", n.Server())
	}
	waitFor(t, reconnected, "reconnect")
	msg, err := stream.GetMsg(ctx, 1)
	if err != nil {
		t.Fatalf("GetMsg(1) after restart = %v", err)
	}
	if string(msg.Data) != "two hikers lost" || msg.Subject != "incidents.opened" {
		t.Errorf("GetMsg(1) after restart = %s %q, want incidents.opened %q", msg.Subject, msg.Data, "two hikers lost")
	}

	// Restart does both at once; the stream keeps counting.
	n.Restart()
	waitFor(t, reconnected, "reconnect after Restart")
	ack, err := js.Publish(ctx, "incidents.found", []byte("found before dark"))
	if err != nil || ack.Sequence != 2 {
		t.Fatalf("Publish after Restart = %+v, %v; want sequence 2", ack, err)
	}
	info, err := stream.Info(ctx)
	if err != nil || info.State.Msgs != 2 {
		t.Errorf("stream INCIDENTS after restarts: %v messages, %v; want 2, nil", info.State.Msgs, err)
	}
}

func TestNATSServerOptions(t *testing.T) {
	n := StartNATS(t, WithNATSServerOptions(func(o *server.Options) {
		o.JetStream = false
		o.Port = 1 // overridden by testenv
	}))
	if n.Server().JetStreamEnabled() {
		t.Error("JetStreamEnabled() with JetStream turned off = true, want false")
	}
	nc, err := nats.Connect(n.URL())
	if err != nil {
		t.Fatalf("nats.Connect(%q) = %v", n.URL(), err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream.New = %v", err)
	}
	if _, err := js.AccountInfo(t.Context()); !errors.Is(err, jetstream.ErrJetStreamNotEnabled) {
		t.Errorf("AccountInfo without JetStream = %v, want %v", err, jetstream.ErrJetStreamNotEnabled)
	}
}
