package store

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/sar"
)

// Ingest stores a batch in one atomic script run: one round trip whatever
// the batch size.
func (s *Store) Ingest(ctx context.Context, a sar.IngestArgs) (sar.IngestResult, error) {
	id := a.IncidentID
	keys := []string{kInc(id), kSeq(id), kDev(id), kLast(id), kTrack(id, a.ParticipantID), kCells(id), kCellTime(id), kGrid(id),
		kWork(id), kWorkTime(id), kGridThrough(id)}
	if a.SkippedThrough > sar.MaxSequence { // Lua numbers are doubles: never round a sequence
		return sar.IngestResult{}, sar.Invalid("invalid batch", sar.Field("batch.skipped_through", "OUT_OF_RANGE",
			"skipped_through must be at most 2^53-1"))
	}
	mark := ""
	if a.Queue != sar.WorkNone {
		mark = string(a.Queue)
	}
	args := make([]any, 0, 8+4*len(a.Fixes))
	args = append(args, a.DeviceID, a.ParticipantID, s.trackMax, strconv.FormatUint(a.SkippedThrough, 10), len(a.Fixes))
	for _, f := range a.Fixes {
		if f.Sequence > sar.MaxSequence { // checked by the caller; never round one in Lua
			return sar.IngestResult{}, sar.Invalid("invalid batch", sar.Field("batch.fixes", "OUT_OF_RANGE",
				"sequences must be at most 2^53-1"))
		}
		seq := int64(f.Sequence) // exact (at most 2^53-1); written as its decimal, like FormatUint, without a string
		if f.Fix == nil {
			args = append(args, seq, 0, "", "")
			continue
		}
		pb := f.Pb // encoded once by the caller (the same bytes go to the positions event)
		if len(pb) == 0 {
			pb = marshalBytes(f.Fix)
		}
		args = append(args, seq, f.TimeMs, f.Fix.GetCell(), pb)
	}
	args = append(args, sar.MaxSkip, mark, a.NowMs)
	return s.pipeFor(ctx, keys[0]).do(ctx, keys, args)
}

// pipeFor returns the ingest pipe for a key: on a Redis Cluster, its
// master's own (made on first use), so that a master that is slow or gone
// holds back only the batches of its own incidents; else the one pipe.
func (s *Store) pipeFor(ctx context.Context, key string) *ingestPipe {
	cc, ok := s.rdb.(*redis.ClusterClient)
	if !ok {
		return s.pipe
	}
	m, err := cc.MasterForKey(ctx, key)
	if err != nil {
		return s.pipe // no slot map: the group's own routing reports why
	}
	addr := m.Options().Addr
	s.pipesMu.Lock()
	defer s.pipesMu.Unlock()
	p := s.pipes[addr]
	if p == nil {
		p = s.newPipe()
		s.pipes[addr] = p
	}
	return p
}

// ingestGroup runs a group of ingest calls (ingestPipe) as one pipeline
// of their scripts, followed, with WithWaitReplicas, by one WAIT that
// confirms all of them (ingestVia). On a Redis Cluster the client splits
// the pipeline by master and follows MOVED and ASK itself; WAIT, though,
// must follow the scripts on the connection to their master, so there the
// replicated ingest goes to the masters directly (ingestReplicatedCluster).
func (s *Store) ingestGroup(ctx context.Context, calls []*ingestCall) {
	if cc, ok := s.rdb.(*redis.ClusterClient); ok && s.waitReplicas > 0 {
		s.ingestReplicatedCluster(ctx, cc, calls)
		return
	}
	s.ingestVia(ctx, s.rdb, calls)
}

// pipeliner is a Redis client that runs pipelines: a single Redis (one
// connection per pipeline), a Cluster, or one of its masters.
type pipeliner interface {
	Pipelined(ctx context.Context, fn func(redis.Pipeliner) error) ([]redis.Cmder, error)
}

// ingestVia runs calls through via (sendScripts) and sets each call's
// outcome.
func (s *Store) ingestVia(ctx context.Context, via pipeliner, calls []*ingestCall) {
	s.sendScripts(ctx, via, calls)
	for _, c := range calls {
		c.res, c.err = s.callReply(c)
	}
}

// ingestReplicatedCluster runs the replicated ingest of calls on a Redis
// Cluster: one pipeline per master of the client's slot map, ending with
// its WAIT (ingestOnMasters). These pipelines go past the Cluster
// client's hooks and redirections: so here too, when a master is
// unreachable or the cluster says the map moved (topologyChanged), the
// map is reloaded for the devices' resends; the calls refused with MOVED
// are tried once more on their new master, when the map shows it within
// half a second.
func (s *Store) ingestReplicatedCluster(ctx context.Context, cc *redis.ClusterClient, calls []*ingestCall) {
	s.ingestOnMasters(ctx, cc, calls)
	var moved []*ingestCall
	reload := false
	for _, c := range calls {
		if cause := errors.Unwrap(c.err); c.err != nil && topologyChanged(ctx, cause) {
			reload = true
			if redis.HasErrorPrefix(cause, "MOVED") {
				moved = append(moved, c)
			}
		}
	}
	if reload {
		cc.ReloadState(ctx) // asynchronous, and coalesced across groups
	}
	for try := 0; len(moved) > 0 && try < 25; try++ {
		if try > 0 {
			time.Sleep(20 * time.Millisecond)
		}
		var ready []*ingestCall
		moved = slices.DeleteFunc(moved, func(c *ingestCall) bool {
			m, err := cc.MasterForKey(ctx, c.keys[0])
			if err == nil && m.Options().Addr != c.used {
				ready = append(ready, c)
				return true
			}
			return false
		})
		s.ingestOnMasters(ctx, cc, ready)
	}
}

// ingestOnMasters runs calls on their masters of a Cluster's slot map (one,
// but for a map that changed since the calls were queued), the masters'
// pipelines in parallel, and sets each call's outcome.
func (s *Store) ingestOnMasters(ctx context.Context, cc *redis.ClusterClient, calls []*ingestCall) {
	by := map[*redis.Client][]*ingestCall{}
	for _, c := range calls {
		c.ev, c.wait = nil, nil
		m, err := cc.MasterForKey(ctx, c.keys[0])
		if err != nil {
			c.res, c.err, c.used = sar.IngestResult{}, fail(err, "incident"), ""
			continue
		}
		c.used = m.Options().Addr
		by[m] = append(by[m], c)
	}
	var wg sync.WaitGroup
	for m, cs := range by {
		wg.Go(func() { s.sendScripts(ctx, m, cs) })
	}
	wg.Wait()
	for _, c := range calls { // the replies are read here, not in the goroutines above: a panic stays in the pipe's flusher
		if c.ev != nil {
			c.res, c.err = s.callReply(c)
		}
	}
}

// sendScripts sends calls through via as one pipeline of their scripts,
// followed, with WithWaitReplicas, by WAIT, which confirms every write of
// the connection before it; it sets each call's ev and wait. A Redis that
// restarted has lost its scripts: the calls refused with NOSCRIPT did not
// run, and run again, in a second pipeline, as EVAL, which loads it.
func (s *Store) sendScripts(ctx context.Context, via pipeliner, calls []*ingestCall) {
	run := func(cs []*ingestCall, eval bool) {
		var wait *redis.Cmd
		_, _ = via.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, x := range cs {
				if eval {
					x.ev = ingestScript.Eval(ctx, p, x.keys, x.args...)
				} else {
					x.ev = ingestScript.EvalSha(ctx, p, x.keys, x.args...)
				}
			}
			if s.waitReplicas > 0 {
				wait = p.Do(ctx, "wait", s.waitReplicas, s.waitTimeout.Milliseconds())
			}
			return nil
		})
		for _, x := range cs {
			x.wait = wait
		}
	}
	run(calls, false)
	var again []*ingestCall
	for _, x := range calls {
		if redis.HasErrorPrefix(x.ev.Err(), "NOSCRIPT") {
			again = append(again, x)
		}
	}
	if len(again) > 0 {
		run(again, true)
	}
}

// callReply is a call's outcome from its script's reply and, with
// WithWaitReplicas, its pipeline's WAIT: a batch the script stored but
// fewer than waitReplicas replicas acknowledged in time gets its result
// with an Unavailable error, so that the caller can still start its
// search work.
func (s *Store) callReply(c *ingestCall) (sar.IngestResult, error) {
	if err := c.ev.Err(); err != nil {
		return sar.IngestResult{}, fail(err, "incident")
	}
	out, err := ingestReply(c.ev.Val())
	if err != nil || c.wait == nil {
		return out, err
	}
	if err := c.wait.Err(); err != nil {
		return out, sar.Wrap(sar.KindUnavailable, err, "the batch's copy to the Redis replicas could not be confirmed; resend it")
	}
	if n, _ := c.wait.Int64(); n < int64(s.waitReplicas) {
		return out, sar.Errorf(sar.KindUnavailable,
			"the batch is stored but only %d of %d Redis replicas confirmed it within %v; resend it", n, s.waitReplicas, s.waitTimeout)
	}
	return out, nil
}

// ingestReply reads the ingest script's reply (see lua/ingest.lua).
func ingestReply(v any) (sar.IngestResult, error) {
	r := newReply("ingest", v, 7)
	out := sar.IngestResult{
		AckedBefore:  r.udecimal(0),
		AckedThrough: r.udecimal(1),
		Stored:       int(r.int(2)),
		LastChanged:  r.flag(3),
		HasGrid:      r.flag(5),
		Queued:       r.flag(6),
	}
	last := r.str(4)
	if r.err == nil && r.len() != 7 {
		r.failf("%d elements, want 7", r.len())
	}
	if r.err != nil {
		return sar.IngestResult{}, r.err
	}
	if last != "" {
		var err error
		if out.Last, err = decodeLast(last); err != nil {
			return sar.IngestResult{}, err
		}
	}
	return out, nil
}

// Track returns a participant's breadcrumbs taken at or after sinceMs, the
// newest limit of them, oldest first.
func (s *Store) Track(ctx context.Context, incidentID, participantID string, sinceMs int64, limit int) ([]*sarv1.LocationFix, error) {
	vals, err := s.rdb.ZRevRangeByScore(ctx, kTrack(incidentID, participantID), &redis.ZRangeBy{
		Max: "+inf", Min: strconv.FormatInt(sinceMs, 10), Count: int64(limit),
	}).Result()
	if err != nil {
		return nil, fail(err, "track")
	}
	out := make([]*sarv1.LocationFix, len(vals))
	for i, v := range vals {
		f := &sarv1.LocationFix{}
		if err := unmarshal(v, f); err != nil {
			return nil, err
		}
		out[len(vals)-1-i] = f
	}
	return out, nil
}

// CellVisits returns the visited cells of an incident.
func (s *Store) CellVisits(ctx context.Context, incidentID string) ([]sar.CellVisit, error) {
	var counts *redis.MapStringStringCmd
	var times *redis.ZSliceCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		counts = p.HGetAll(ctx, kCells(incidentID))
		times = p.ZRangeWithScores(ctx, kCellTime(incidentID), 0, -1)
		return nil
	})
	if err != nil {
		return nil, fail(err, "incident")
	}
	out := make([]sar.CellVisit, 0, len(times.Val()))
	for _, z := range times.Val() {
		c := z.Member.(string)
		n, err := parseInt(counts.Val()[c])
		if err != nil {
			return nil, err
		}
		out = append(out, sar.CellVisit{Cell: c, Fixes: n, LastTimeMs: int64(z.Score)})
	}
	return out, nil
}

// AckedThrough returns a device's acked-through sequence in an incident.
func (s *Store) AckedThrough(ctx context.Context, incidentID, deviceID string) (uint64, error) {
	v, err := s.rdb.HGet(ctx, kSeq(incidentID), deviceID).Result()
	if err == redis.Nil {
		return 0, nil
	}
	if err != nil {
		return 0, fail(err, "incident")
	}
	return parseUint(v)
}
