package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// replyErr is an error reply of Redis, as go-redis returns one.
type replyErr string

func (r replyErr) Error() string { return string(r) }
func (replyErr) RedisError()     {}

func TestTopologyChanged(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	// A dial that times out: its error also matches context.DeadlineExceeded.
	_, timedOut := (&net.Dialer{Timeout: time.Nanosecond}).Dial("tcp", "127.0.0.1:1")
	if timedOut == nil || !errors.Is(timedOut, context.DeadlineExceeded) {
		t.Fatalf("a dial with a 1 ns timeout gave %v, want a timeout that matches context.DeadlineExceeded", timedOut)
	}
	for _, c := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{context.Canceled, false},
		{fmt.Errorf("ingest: %w", context.DeadlineExceeded), false},
		{redis.Nil, false},
		{replyErr("ERR SAR_CLOSED incident is closed"), false},
		{replyErr("NOSCRIPT No matching script"), false},
		{replyErr("NOREPLICAS Not enough good replicas to write"), false},
		{refused, true},
		{timedOut, true},
		{io.EOF, true},
		{redis.ErrPoolTimeout, false},
		{redis.ErrClosed, false},
		{fmt.Errorf("incident: %w", refused), true},
		{replyErr("MOVED 3999 127.0.0.1:6381"), true},
		{replyErr("ASK 3999 127.0.0.1:6381"), true},
		{replyErr("CLUSTERDOWN The cluster is down"), true},
		{replyErr("TRYAGAIN Multiple keys request during rehashing of slot"), true},
	} {
		if got := topologyChanged(context.Background(), c.err); got != c.want {
			t.Errorf("topologyChanged(%v) = %v, want %v", c.err, got, c.want)
		}
	}
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	if topologyChanged(ended, refused) {
		t.Errorf("topologyChanged with the caller's context ended = true, want false: the caller gave up")
	}
}
