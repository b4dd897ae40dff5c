package store

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/mountain-sar/sar/internal/sar"
)

// Group commit of the ingest script.
//
// Every batch of every device is one ingest script run. Sent on its own,
// each costs a write and a read on a Redis connection, and on loopback or
// a LAN the write is the dear part: the kernel does the receiving side's
// TCP work inside the sender's write(2). Measured at the maximum on the
// 2-core bench box, that write was a fifth of sard's CPU, and Redis paid a
// read and a write per batch as well (docs/bench.md, "Group commit").
//
// An ingestPipe sends the batches waiting at the same moment together, as
// one pipeline (and, with WithWaitReplicas, one WAIT for all of them): the
// batches that arrive while the pipelines in flight are out wait for the
// next one, so a lone batch goes out at once, as before, and under load
// the groups grow by themselves. Nothing is held back for a timer. Each
// batch keeps its own script run, reply and error: a pipeline is only
// transport, and an ingest script is atomic on its own.
//
// On a Redis Cluster there is one pipe per master (Store.pipeFor), so
// that a master that is slow or gone holds back only its own incidents'
// batches.
//
// A lost reply is what it was for a batch on its own: go-redis sends a
// pipeline again after a connection error on it, and a script that had
// run answers the second time that its fixes are stored already (the
// device is told they are duplicates: stored, not to be sent again; only
// their live positions event is skipped). The device's resend would get
// the same answer.
//
// go-redis has an automatic pipeliner too (experimental in v9), but it
// cannot carry WAIT (it holds the connection), and the replicated ingest
// is where sharing a round trip saves most: one WAIT per group instead of
// one per batch.
type ingestPipe struct {
	// run runs a group: it sets each call's res and err. It must not keep
	// the calls after it returns.
	run func(ctx context.Context, calls []*ingestCall)
	// lanes is how many groups are in flight at most, maxCalls how many
	// batches a group holds at most.
	lanes, maxCalls int
	// sizes, if set, observes how many batches each group sent.
	sizes prometheus.Observer

	mu      sync.Mutex
	queue   []*ingestCall
	running int // flushers started and not ended, at most lanes
}

// ingestCall is one batch in an ingestPipe.
type ingestCall struct {
	ctx  context.Context // the caller's: a call whose ctx ended before its group went out is not sent
	keys []string
	args []any
	res  sar.IngestResult
	err  error
	// ev is its script's command, wait its pipeline's WAIT (nil without
	// WithWaitReplicas), used the address of the Redis master it last went
	// to directly (the replicated ingest on a Cluster).
	ev, wait *redis.Cmd
	used     string
	done     chan struct{}
}

// ingestCallTimeout bounds a batch's wait for its group: Redis's socket
// timeouts bound each try, but a group that a failing master keeps busy
// must not hold a device for longer than it would wait for its ack
// anyway. The batch may still be stored after it (a lost reply).
const ingestCallTimeout = 10 * time.Second

func newIngestPipe(run func(context.Context, []*ingestCall), lanes, maxCalls int) *ingestPipe {
	return &ingestPipe{run: run, lanes: lanes, maxCalls: maxCalls}
}

// do runs one batch's script in the next group and returns its outcome.
// When ctx ends first it returns ctx's error at once; the batch may still
// be stored by its group, like a batch whose reply was lost (the device
// resends it, and the resend is answered as duplicates).
func (p *ingestPipe) do(ctx context.Context, keys []string, args []any) (sar.IngestResult, error) {
	c := &ingestCall{ctx: ctx, keys: keys, args: args, done: make(chan struct{})}
	p.mu.Lock()
	p.queue = append(p.queue, c)
	start := p.running < p.lanes
	if start {
		p.running++
	}
	p.mu.Unlock()
	if start {
		go p.flush()
	}
	t := time.NewTimer(ingestCallTimeout)
	defer t.Stop()
	select {
	case <-c.done:
		return c.res, c.err
	case <-ctx.Done():
		return sar.IngestResult{}, fail(ctx.Err(), "incident")
	case <-t.C:
		return sar.IngestResult{}, sar.Errorf(sar.KindUnavailable, "Redis did not store the batch within %v; resend it", ingestCallTimeout)
	}
}

// flush sends groups from the queue until it is empty. A group runs with
// its first batch's context without its cancellation (bounded by the
// Redis client's socket timeouts): one caller giving up does not cancel
// the others' batches.
func (p *ingestPipe) flush() {
	var group []*ingestCall
	defer func() {
		if v := recover(); v != nil { // a bug in a reply's handling: fail the group's batches, not the process
			for _, c := range group {
				if !isDone(c.done) {
					c.res, c.err = sar.IngestResult{}, sar.Errorf(sar.KindInternal, "ingest pipeline: %v", v)
					close(c.done)
				}
			}
			p.mu.Lock()
			p.running--
			restart := len(p.queue) > 0 && p.running < p.lanes
			if restart {
				p.running++
			}
			p.mu.Unlock()
			if restart {
				go p.flush()
			}
		}
	}()
	for {
		p.mu.Lock()
		n := min(len(p.queue), p.maxCalls)
		if n == 0 {
			p.running--
			p.mu.Unlock()
			return
		}
		group = append(group[:0], p.queue[:n]...)
		clear(p.queue[:n])
		if n == len(p.queue) {
			p.queue = p.queue[:0]
		} else {
			p.queue = p.queue[n:]
		}
		p.mu.Unlock()
		live := group[:0]
		for _, c := range group {
			if err := c.ctx.Err(); err != nil {
				c.err = fail(err, "incident")
				close(c.done)
				continue
			}
			live = append(live, c)
		}
		group = live
		if len(group) > 0 {
			if p.sizes != nil {
				p.sizes.Observe(float64(len(group)))
			}
			// The values of the first batch's context (a trace, say), not
			// its cancellation: one caller giving up must not fail the rest.
			p.run(context.WithoutCancel(group[0].ctx), group)
		}
		for _, c := range group {
			close(c.done)
		}
		clear(group)
		group = group[:0]
	}
}

func isDone(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
