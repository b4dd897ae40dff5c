package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/types/known/timestamppb"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/sar"
	"github.com/mountain-sar/sar/internal/testenv"
)

// pipelineRecorder is a go-redis hook that records the size of every
// pipeline of scripts and holds the first few: pipeline k, for k below
// len(gates), says so on held and waits until gates[k] is closed.
type pipelineRecorder struct {
	mu    sync.Mutex
	sizes []int
	gates []chan struct{}
	held  chan int
}

func newPipelineRecorder(hold int) *pipelineRecorder {
	h := &pipelineRecorder{gates: make([]chan struct{}, hold), held: make(chan int, hold)}
	for k := range h.gates {
		h.gates[k] = make(chan struct{})
	}
	return h
}

func (h *pipelineRecorder) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h *pipelineRecorder) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h *pipelineRecorder) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if name := cmds[0].Name(); name != "evalsha" && name != "eval" {
			return next(ctx, cmds)
		}
		h.mu.Lock()
		k := len(h.sizes)
		h.sizes = append(h.sizes, len(cmds))
		h.mu.Unlock()
		if k < len(h.gates) {
			h.held <- k
			<-h.gates[k]
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
// group, each batch re-run with its own arguments. Device i sends i+1
// fixes, so that an outcome given to the wrong batch shows.
func TestIngestBatchesShareAPipeline(t *testing.T) {
	for _, wait := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "waiting for a replica"}[wait], func(t *testing.T) {
			testIngestBatchesShareAPipeline(t, wait)
		})
	}
}

func testIngestBatchesShareAPipeline(t *testing.T, wait bool) {
	var opts []Option
	if wait { // no replica answers: every batch is stored, and refused as unconfirmed
		opts = append(opts, WithWaitReplicas(1, 20*time.Millisecond))
	}
	s, rdb := newStore(t, opts...)
	s.pipe = newIngestPipe(s.ingestGroup, 1, 64) // one group in flight: what waits, waits for it
	ctx := context.Background()
	inc := openIncident(t, s)
	const n = 12
	parts := joinedDevices(t, s, inc.GetId(), n+1)
	if err := ingestScript.Load(ctx, rdb).Err(); err != nil {
		t.Fatal(err)
	}
	rec := newPipelineRecorder(2)
	rdb.AddHook(rec)
	now := time.Now()
	ingest := func(ctx context.Context, i int, first uint64) (sar.IngestResult, error) {
		return s.Ingest(ctx, sar.IngestArgs{IncidentID: inc.GetId(), ParticipantID: parts[i], DeviceID: fmt.Sprintf("d%d", i),
			Fixes: batch(first, i+1, now, time.Second)})
	}

	type outcome struct {
		res sar.IngestResult
		err error
	}
	out := make([]outcome, n+1)
	var wg sync.WaitGroup
	wg.Go(func() { out[0].res, out[0].err = ingest(ctx, 0, 1) })
	<-rec.held // device 0's group is out (held in the hook)
	for i := 1; i <= n; i++ {
		wg.Go(func() { out[i].res, out[i].err = ingest(ctx, i, 1) })
	}
	gone, cancel := context.WithCancel(ctx)
	lost := make(chan error, 1)
	go func() { _, err := ingest(gone, n, uint64(n)+2); lost <- err }() // device n's second batch, given up below
	queued(t, s.pipe, n+1)
	cancel()
	if err := <-lost; !errors.Is(err, context.Canceled) {
		t.Errorf("given-up batch: err = %v, want context.Canceled", err)
	}
	close(rec.gates[0])
	<-rec.held // the group of twelve: the scripts are flushed while it is held
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	close(rec.gates[1])
	wg.Wait()

	for i, o := range out {
		want := i + 1
		if o.res.Stored != want || o.res.AckedThrough != uint64(want) || o.res.AckedBefore != 0 {
			t.Errorf("device %d: %+v; want %d stored, acked through %d", i, o.res, want, want)
		}
		if got := rdb.ZCard(ctx, kTrack(inc.GetId(), parts[i])).Val(); got != int64(want) {
			t.Errorf("device %d: %d fixes in the track, want %d (the given-up batch is not sent)", i, got, want)
		}
		if wait {
			if sar.KindOf(o.err) != sar.KindUnavailable {
				t.Errorf("device %d: err = %v, want unavailable (no replica confirmed it)", i, o.err)
			}
		} else if o.err != nil {
			t.Errorf("device %d: err = %v", i, o.err)
		}
	}
	// Device 0 alone; the twelve others together, refused with NOSCRIPT
	// after the flush, and together again as EVAL. The given-up batch is
	// in none. (With WAIT, one more command in each.)
	extra := 0
	if wait {
		extra = 1
	}
	if got, want := fmt.Sprint(rec.recorded()), fmt.Sprint([]int{1 + extra, n + extra, n + extra}); got != want {
		t.Errorf("pipelines of %s commands, want %s", got, want)
	}

	// A resent batch is answered as duplicates, whatever group it is in.
	res, _ := ingest(ctx, 3, 1)
	if res.Stored != 0 || res.AckedBefore != 4 {
		t.Errorf("resent batch: %+v; want nothing stored, acked before 4", res)
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

// TestIngestPipePerClusterMaster: on a Redis Cluster each master has its
// own pipe, so a master that holds its groups (slow, or gone until its
// socket timeouts) does not hold back the batches of incidents on the
// other masters.
func TestIngestPipePerClusterMaster(t *testing.T) {
	cluster := testenv.StartRedisCluster(t, 3)
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cluster.Addrs()})
	t.Cleanup(func() { _ = cc.Close() })
	s := New(cc)
	ctx := context.Background()
	if err := s.LoadScripts(ctx); err != nil {
		t.Fatalf("LoadScripts: %v", err)
	}
	master := func(id string) string {
		m, err := cc.MasterForKey(ctx, kInc(id))
		if err != nil {
			t.Fatalf("MasterForKey: %v", err)
		}
		return m.Options().Addr
	}
	slow := openIncident(t, s).GetId()
	other := openIncident(t, s).GetId()
	for i := 0; master(other) == master(slow); i++ {
		if i == 40 {
			t.Fatal("40 incidents on one master of three")
		}
		other = openIncident(t, s).GetId()
	}
	slowParts := joinedDevices(t, s, slow, ingestLanes+1)
	otherParts := joinedDevices(t, s, other, 1)

	// Hold the groups that go to the slow incident's master: as many as
	// its pipe has lanes, one batch each (each is sent once the one before
	// is held, so that none joins another's group), and one batch more
	// waits in its queue.
	gate := make(chan struct{})
	held := make(chan struct{}, ingestLanes)
	cc.AddHook(holdPipelinesOf{key: kInc(slow), held: held, gate: gate})
	var wg sync.WaitGroup
	for i := range ingestLanes + 1 {
		wg.Go(func() {
			if r, err := s.Ingest(ctx, sar.IngestArgs{IncidentID: slow, ParticipantID: slowParts[i], DeviceID: fmt.Sprintf("d%d", i),
				Fixes: batch(1, 2, time.Now(), time.Second)}); err != nil || r.Stored != 2 {
				t.Errorf("batch on the held master: %+v, %v; want 2 stored once released", r, err)
			}
		})
		if i < ingestLanes {
			select {
			case <-held:
			case <-time.After(10 * time.Second):
				t.Fatalf("batch %d on the slow master was never sent", i)
			}
		}
	}
	queued(t, s.pipeFor(ctx, kInc(slow)), 1)
	quick, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	r, err := s.Ingest(quick, sar.IngestArgs{IncidentID: other, ParticipantID: otherParts[0], DeviceID: "d0",
		Fixes: batch(1, 3, time.Now(), time.Second)})
	if err != nil || r.Stored != 3 {
		t.Errorf("batch on another master while one is held: %+v, %v; want 3 stored at once", r, err)
	}
	close(gate)
	wg.Wait()
}

// holdPipelinesOf is a go-redis hook that holds the pipelines that hold a
// command naming key until gate is closed, saying so on held.
type holdPipelinesOf struct {
	key        string
	held, gate chan struct{}
}

func (h holdPipelinesOf) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h holdPipelinesOf) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h holdPipelinesOf) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if slices.ContainsFunc(cmds, func(c redis.Cmder) bool { return slices.Contains(c.Args(), any(h.key)) }) {
			h.held <- struct{}{}
			<-h.gate
		}
		return next(ctx, cmds)
	}
}
