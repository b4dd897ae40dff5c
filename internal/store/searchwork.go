package store

import (
	"context"
	"strconv"

	"github.com/redis/go-redis/v9"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/sar"
)

// Search work is what follows from acknowledged fixes but that the device
// does not wait for: a rescuer's track credited to the search grid as
// coverage, a caller's moved position applied to it. The ingest script
// queues it in the same atomic run as the batch (lua/ingest.lua), per
// incident:
//
//   - work (hash): "<kind>:<participant>" → a generation, counted up by
//     every batch that queues work for that participant;
//   - workt (zset): the same members, scored by the time of their oldest
//     unfinished batch, moved to the time of the worker's last progress;
//   - gthr (hash): participant → the fix time through which its track was
//     credited as coverage (the checkpoint).
//
// A worker reads an entry and what it needs in one run (lua/cover_read.lua:
// the track after the checkpoint, not the batches: the acknowledged fixes
// are the record), does the work, and ends the entry if its generation did
// not move meanwhile (lua/coverage.lua moves the checkpoint and ends the
// entry with the coverage it adds, atomically; lua/work_done.lua ends
// other work). An entry whose worker died stays, and grows stale: every
// replica looks for stale entries of open incidents (StaleWork) and does
// them. Two processes doing one entry at once is safe: coverage is
// compare-and-set on the tracker state, a caller's fix is applied by
// compare-and-set on the grid's versions.

// SearchWork returns an incident's queued search work, oldest first.
func (s *Store) SearchWork(ctx context.Context, incidentID string) ([]sar.WorkItem, error) {
	zs, err := s.rdb.ZRangeWithScores(ctx, kWorkTime(incidentID), 0, -1).Result()
	if err != nil {
		return nil, fail(err, "search work")
	}
	out := make([]sar.WorkItem, 0, len(zs))
	for _, z := range zs {
		m, _ := z.Member.(string)
		it, ok := sar.ParseWorkMember(m)
		if !ok {
			return nil, replyError("search work", "malformed queue entry %q", m)
		}
		it.SinceMs = int64(z.Score)
		out = append(out, it)
	}
	return out, nil
}

// StaleWork returns the open incidents with queued search work older than
// beforeMs: work whose process died or fell far behind.
func (s *Store) StaleWork(ctx context.Context, beforeMs int64) ([]string, error) {
	open, err := s.rdb.SMembers(ctx, kIdxOpen).Result()
	if err != nil {
		return nil, fail(err, "search work")
	}
	if len(open) == 0 {
		return nil, nil
	}
	cmds := make([]*redis.StringSliceCmd, len(open))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range open {
			cmds[i] = p.ZRangeByScore(ctx, kWorkTime(id), &redis.ZRangeBy{Min: "-inf", Max: strconv.FormatInt(beforeMs, 10), Count: 1})
		}
		return nil
	})
	if err != nil {
		return nil, fail(err, "search work")
	}
	var out []string
	for i, c := range cmds {
		if len(c.Val()) > 0 {
			out = append(out, open[i])
		}
	}
	return out, nil
}

// CoverWork reads, in one round trip, what crediting a rescuer's queued
// fixes needs: the queue entry, the grid's meta, the searcher's tracker
// state, type and checkpoint, and at most limit fixes of its track after
// the checkpoint, oldest first.
func (s *Store) CoverWork(ctx context.Context, incidentID, participantID string, limit int) (sar.CoverWork, error) {
	id := incidentID
	member := sar.WorkMember(sar.WorkCoverage, participantID)
	res, err := coverReadScript.RunRO(ctx, s.rdb, []string{kInc(id), kGrid(id), kGridTrk(id), kSearcher(id), kGridThrough(id),
		kWork(id), kWorkTime(id), kTrack(id, participantID)}, participantID, member, limit).Result()
	if err != nil {
		return sar.CoverWork{}, fail(err, "search work")
	}
	return coverReadReply(res)
}

// coverReadReply reads lua/cover_read.lua's reply.
func coverReadReply(v any) (sar.CoverWork, error) {
	r := newReply("cover read", v, 1)
	switch r.word(0, "none", "nogrid", "ok") {
	case "none":
		return sar.CoverWork{}, r.err
	case "nogrid":
		return sar.CoverWork{Queued: true, Gen: r.str(1)}, r.err
	}
	out := sar.CoverWork{Queued: true, Gen: r.str(1), SinceMs: int64(r.float(2)), ThroughMs: r.decimal(5)} // scores as Redis formats them
	out.Searcher.Tracker, out.Searcher.Type = r.str(3), r.str(4)
	meta := r.slice(6, 13)
	if r.err == nil && (r.len()-13)%2 != 0 {
		r.failf("%d elements, want 13 and a pair per fix", r.len())
	}
	if r.err != nil {
		return sar.CoverWork{}, r.err
	}
	m, ok, err := decodeMeta(meta)
	if err != nil {
		return sar.CoverWork{}, err
	}
	if !ok {
		return sar.CoverWork{}, replyError("cover read", "grid meta without its summary")
	}
	out.Searcher.Meta, out.Searcher.HasGrid = m, true
	out.Fixes = make([]sar.TrackFix, 0, (r.len()-13)/2)
	for i := 13; i < r.len(); i += 2 {
		pb, ms := r.str(i), int64(r.float(i+1))
		if r.err != nil {
			return sar.CoverWork{}, r.err
		}
		f := &sarv1.LocationFix{}
		if err := unmarshal(pb, f); err != nil {
			return sar.CoverWork{}, err
		}
		out.Fixes = append(out.Fixes, sar.TrackFix{Fix: f, TimeMs: ms})
	}
	return out, nil
}

// FollowWork reads a caller's queue entry and last known position in one
// round trip.
func (s *Store) FollowWork(ctx context.Context, incidentID, participantID string) (sar.FollowWork, error) {
	id := incidentID
	member := sar.WorkMember(sar.WorkFollow, participantID)
	var gen, last *redis.StringCmd
	var since *redis.FloatCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		gen = p.HGet(ctx, kWork(id), member)
		since = p.ZScore(ctx, kWorkTime(id), member)
		last = p.HGet(ctx, kLast(id), participantID)
		return nil
	})
	if err != nil && err != redis.Nil {
		return sar.FollowWork{}, fail(err, "search work")
	}
	if gen.Err() == redis.Nil {
		return sar.FollowWork{}, nil
	}
	out := sar.FollowWork{Queued: true, Gen: gen.Val(), SinceMs: int64(since.Val())}
	if v := last.Val(); v != "" {
		if out.Last, err = decodeLast(v); err != nil {
			return sar.FollowWork{}, err
		}
	}
	return out, nil
}

// WorkDone ends a queue entry if its generation is still gen; false when
// more was queued meanwhile (the entry stays, marked as progressing).
func (s *Store) WorkDone(ctx context.Context, incidentID, member, gen string, nowMs int64) (bool, error) {
	n, err := workDoneScript.Run(ctx, s.rdb, []string{kWork(incidentID), kWorkTime(incidentID)}, member, gen, nowMs).Int()
	if err != nil {
		return false, fail(err, "search work")
	}
	return n == 1, nil
}
