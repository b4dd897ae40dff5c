package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/types/known/timestamppb"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/sar"
)

// pipelineRecorder is a go-redis hook that records the size of every
// pipeline of scripts and holds the first one until release is closed.
type pipelineRecorder struct {
	mu      sync.Mutex
	sizes   []int
	held    chan struct{} // closed when the first pipeline is held
	release chan struct{}
}

func newPipelineRecorder() *pipelineRecorder {
	return &pipelineRecorder{held: make(chan struct{}), release: make(chan struct{})}
}

func (h *pipelineRecorder) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h *pipelineRecorder) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h *pipelineRecorder) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if name := cmds[0].Name(); name != "evalsha" && name != "eval" {
			return next(ctx, cmds)
		}
		h.mu.Lock()
		h.sizes = append(h.sizes, len(cmds))
		first := len(h.sizes) == 1
		h.mu.Unlock()
		if first {
			close(h.held)
			<-h.release
		}
		return next(ctx, cmds)
	}
}

func (h *pipelineRecorder) recorded() []int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]int(nil), h.sizes...)
}

// joinedDevices adds n caller participants with a device each to an
// incident and returns their participant ids (device "d<i>").
func joinedDevices(t *testing.T, s *Store, id string, n int) []string {
	t.Helper()
	ctx := context.Background()
	ids := make([]string, n)
	for i := range n {
		p := &sarv1.Participant{Id: sar.NewID(), IncidentId: id, Kind: sarv1.ParticipantKind_PARTICIPANT_KIND_CALLER}
		if err := s.AddParticipant(ctx, p, &sarv1.Event{Id: sar.NewID(), IncidentId: id, Time: timestamppb.Now()}); err != nil {
			t.Fatalf("AddParticipant: %v", err)
		}
		if _, err := s.Join(ctx, sar.JoinArgs{IncidentID: id, DeviceID: fmt.Sprintf("d%d", i), CallerPartID: p.GetId()}); err != nil {
			t.Fatalf("Join: %v", err)
		}
		ids[i] = p.GetId()
	}
	return ids
}

// queued waits until the pipe holds n calls not yet sent.
func queued(t *testing.T, p *ingestPipe, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		p.mu.Lock()
		got := len(p.queue)
		p.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d calls queued, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestIngestBatchesShareAPipeline: batches that arrive while a group is
// out go together in the next one, each with its own outcome; a batch
// whose caller gave up before its group left is not sent; a Redis that
// lost its scripts (restart, SCRIPT FLUSH) gets them again within the
// group.
func TestIngestBatchesShareAPipeline(t *testing.T) {
	s, rdb := newStore(t)
	s.pipe = newIngestPipe(s.ingestGroup, 1, 64) // one group in flight: what waits, waits for it
	ctx := context.Background()
	inc := openIncident(t, s)
	const n = 12
	parts := joinedDevices(t, s, inc.GetId(), n+1)
	rec := newPipelineRecorder()
	rdb.AddHook(rec)
	now := time.Now()
	ingest := func(ctx context.Context, i int, first uint64) (sar.IngestResult, error) {
		return s.Ingest(ctx, sar.IngestArgs{IncidentID: inc.GetId(), ParticipantID: parts[i], DeviceID: fmt.Sprintf("d%d", i),
			Fixes: batch(first, 10, now, time.Second)})
	}

	type outcome struct {
		res sar.IngestResult
		err error
	}
	out := make([]outcome, n+1)
	var wg sync.WaitGroup
	wg.Go(func() { out[0].res, out[0].err = ingest(ctx, 0, 1) })
	<-rec.held // device 0's group is out (held in the hook)
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		wg.Go(func() { out[i].res, out[i].err = ingest(ctx, i, 1) })
	}
	gone, cancel := context.WithCancel(ctx)
	lost := make(chan error, 1)
	go func() { _, err := ingest(gone, n, 11); lost <- err }() // device n's second batch, given up below
	queued(t, s.pipe, n+1)
	cancel()
	if err := <-lost; !errors.Is(err, context.Canceled) {
		t.Errorf("given-up batch: err = %v, want context.Canceled", err)
	}
	close(rec.release)
	wg.Wait()

	for i, o := range out {
		if o.err != nil || o.res.Stored != 10 || o.res.AckedThrough != 10 || o.res.AckedBefore != 0 {
			t.Errorf("device %d: %+v, %v; want 10 stored, acked through 10", i, o.res, o.err)
		}
		if got := rdb.ZCard(ctx, kTrack(inc.GetId(), parts[i])).Val(); got != 10 {
			t.Errorf("device %d: %d fixes in the track, want 10 (the given-up batch is not sent)", i, got)
		}
	}
	// The first group held device 0 alone, and its EVALSHA met the flushed
	// script cache (NOSCRIPT): it ran again as EVAL, in a pipeline of its
	// own, which loaded the script. The next group held the twelve others
	// together. The given-up batch is in none.
	if got, want := fmt.Sprint(rec.recorded()), fmt.Sprint([]int{1, 1, n}); got != want {
		t.Errorf("pipelines of %s commands, want %s", got, want)
	}

	// A resent batch is answered as duplicates, whatever group it is in.
	res, err := ingest(ctx, 3, 1)
	if err != nil || res.Stored != 0 || res.AckedBefore != 10 {
		t.Errorf("resent batch: %+v, %v; want nothing stored, acked before 10", res, err)
	}
}

// TestIngestPipeFailsTheGroupOnAPanic: a bug while handling a group's
// replies fails that group's batches as internal errors; the process and
// the pipe go on.
func TestIngestPipeFailsTheGroupOnAPanic(t *testing.T) {
	calls := 0
	p := newIngestPipe(func(_ context.Context, cs []*ingestCall) {
		calls++
		if calls == 1 {
			panic("reply handling bug")
		}
		for _, c := range cs {
			c.res.Stored = len(c.args)
		}
	}, 1, 8)
	if _, err := p.do(context.Background(), nil, []any{1}); sar.KindOf(err) != sar.KindInternal {
		t.Fatalf("err = %v, want an internal error", err)
	}
	if res, err := p.do(context.Background(), nil, []any{1, 2}); err != nil || res.Stored != 2 {
		t.Fatalf("after the panic: %+v, %v", res, err)
	}
}
