package testenv

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestNATSClusterR3SurvivesANode: on a 3-node cluster, an R3 stream keeps
// every acknowledged message when a node is killed, goes on acknowledging
// publishes on the two left, and the killed node rejoins as the same peer.
func TestNATSClusterR3SurvivesANode(t *testing.T) {
	c := StartNATSCluster(t, 3)
	if got := len(strings.Split(c.URL(), ",")); got != 3 {
		t.Fatalf("URL() = %q, want 3 URLs", c.URL())
	}
	nc, err := nats.Connect(c.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatalf("nats.Connect(%q) = %v", c.URL(), err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream.New = %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "R3", Subjects: []string{"r3.>"}, Replicas: 3, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatalf("CreateStream(R3) = %v", err)
	}
	if got := s.CachedInfo().Config.Replicas; got != 3 {
		t.Fatalf("stream replicas = %d, want 3", got)
	}
	publish := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			// A publish may fail while the stream elects a new leader:
			// retry with the same message id, as a client does.
			for {
				pctx, cancel := context.WithTimeout(ctx, time.Second) // a lost reply must not hold the rest
				_, err := js.Publish(pctx, "r3.x", []byte(strconv.Itoa(i)), jetstream.WithMsgID(strconv.Itoa(i)))
				cancel()
				if err == nil {
					break
				}
				if ctx.Err() != nil {
					t.Fatalf("publish %d: %v (%v)", i, err, ctx.Err())
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	publish(0, 50)

	// Kill the node this client is on, so that it must move as well.
	killed := -1
	for i, u := range c.URLs() {
		if u == nc.ConnectedUrl() {
			killed = i
		}
	}
	if killed < 0 {
		t.Fatalf("connected to %q, which is none of %v", nc.ConnectedUrl(), c.URLs())
	}
	c.Kill(killed)
	if c.Server(killed) != nil {
		t.Fatalf("Server(%d) after Kill is not nil", killed)
	}
	publish(50, 100) // also redelivered ids: duplicates dropped

	c.Restart(killed)
	publish(90, 120)
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	if info.State.Msgs != 120 {
		t.Fatalf("stream holds %d messages, want 120 (each acknowledged publish once)", info.State.Msgs)
	}
	// The restarted node catches up: read the stream from it alone.
	nc2, err := nats.Connect(c.NodeURL(killed))
	if err != nil {
		t.Fatalf("nats.Connect(restarted node) = %v", err)
	}
	t.Cleanup(nc2.Close)
	if nc2.ConnectedClusterName() != "sar-test" {
		t.Errorf("cluster name = %q, want sar-test", nc2.ConnectedClusterName())
	}
}
