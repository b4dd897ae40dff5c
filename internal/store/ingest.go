package store

import (
	"context"
	"errors"
	"strconv"
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
	if s.waitReplicas > 0 {
		return s.ingestReplicated(ctx, keys, args)
	}
	res, err := ingestScript.Run(ctx, s.ingest, keys, args...).Result()
	if err != nil {
		return sar.IngestResult{}, fail(err, "incident")
	}
	return ingestReply(res)
}

// ingestReplicated runs the ingest script and WAIT in one pipeline on one
// connection to the incident's master (see WithWaitReplicas). A batch the
// script stored but fewer than waitReplicas replicas acknowledged in time
// returns its result with an Unavailable error, so that the caller can
// still start its search work.
//
// On a Redis Cluster the master is the one of the client's slot map, and
// this pipeline goes to it directly, past the Cluster client's hooks: so
// here too, when the master is unreachable or the cluster says the map
// moved (topologyChanged), the map is reloaded for the device's resend;
// after MOVED the batch is tried once more on the new master, when the
// map shows it within half a second.
func (s *Store) ingestReplicated(ctx context.Context, keys []string, args []any) (sar.IngestResult, error) {
	res, used, err := s.ingestReplicatedOnce(ctx, keys, args)
	cc, ok := s.rdb.(*redis.ClusterClient)
	if !ok || err == nil || !topologyChanged(ctx, errors.Unwrap(err)) {
		return res, err
	}
	cc.ReloadState(ctx) // asynchronous, and coalesced across batches
	if !redis.HasErrorPrefix(errors.Unwrap(err), "MOVED") {
		return res, err
	}
	for range 25 {
		if m, merr := cc.MasterForKey(ctx, keys[0]); merr == nil && m.Options().Addr != used {
			res, _, err = s.ingestReplicatedOnce(ctx, keys, args)
			return res, err
		}
		select {
		case <-ctx.Done():
			return res, err
		case <-time.After(20 * time.Millisecond):
		}
	}
	return res, err
}

// ingestReplicatedOnce is one try of ingestReplicated; used is the address
// of the master tried ("" for a single Redis).
func (s *Store) ingestReplicatedOnce(ctx context.Context, keys []string, args []any) (res sar.IngestResult, used string, err error) {
	var c *redis.Client
	switch r := s.rdb.(type) {
	case *redis.Client:
		c = r
	case *redis.ClusterClient:
		if c, err = r.MasterForKey(ctx, keys[0]); err != nil {
			return sar.IngestResult{}, "", fail(err, "incident")
		}
		used = c.Options().Addr
	default:
		return sar.IngestResult{}, "", sar.Errorf(sar.KindInternal, "waiting for Redis replicas needs a Redis client, not %T", s.rdb)
	}
	res, err = s.ingestOn(ctx, c, keys, args)
	return res, used, err
}

// ingestOn runs the ingest script and WAIT in one pipeline on c.
func (s *Store) ingestOn(ctx context.Context, c *redis.Client, keys []string, args []any) (sar.IngestResult, error) {
	run := func() (ev, wait *redis.Cmd, err error) {
		_, err = c.Pipelined(ctx, func(p redis.Pipeliner) error {
			ev = ingestScript.EvalSha(ctx, p, keys, args...)
			wait = p.Do(ctx, "wait", s.waitReplicas, s.waitTimeout.Milliseconds())
			return nil
		})
		return ev, wait, err
	}
	ev, wait, err := run()
	if err != nil && redis.HasErrorPrefix(ev.Err(), "NOSCRIPT") { // Redis restarted without its scripts
		if err := ingestScript.Load(ctx, c).Err(); err != nil {
			return sar.IngestResult{}, fail(err, "incident")
		}
		ev, wait, err = run()
	}
	if ev.Err() != nil {
		return sar.IngestResult{}, fail(ev.Err(), "incident")
	}
	out, rerr := ingestReply(ev.Val())
	if rerr != nil {
		return sar.IngestResult{}, rerr
	}
	if err != nil && wait.Err() != nil {
		return out, sar.Wrap(sar.KindUnavailable, wait.Err(), "the batch's copy to the Redis replicas could not be confirmed; resend it")
	}
	if n, _ := wait.Int64(); n < int64(s.waitReplicas) {
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
