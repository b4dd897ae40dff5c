package store

import (
	"context"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/geo"
	"github.com/mountain-sar/sar/internal/sar"
)

// The search grid of an incident is kept so that a batch of track points
// costs two small script runs whatever the grid's size and however many
// searchers add coverage at once:
//
//   - grid (hash): the summary pb ("pb", static parts: profile, origin,
//     sweep widths, resolution), the version "ver", the version of the last
//     seeding "seedver", the rest of world's weight "row", the maintained
//     total weight "z", the probability of success at the last rebase
//     "posb", the count of seeds, rebases and settings updates "wver", the
//     count of the writes of z by seeds and rebases "zver", the count of
//     changes to gcov "cver", and the throttle of coverage events "evpos",
//     "evt" (last event) and "covt" (last coverage, for the trailing
//     event).
//   - gpri (hash): cell → prior weight wᵢ.
//   - gcov (hash): cell → cumulative coverage cᵢ (from tracks).
//   - gver (zset): cell → version at which it last changed.
//   - gtrk (hash): participant → the tracker state (JSON) of its searcher.
//
// The posterior is POAᵢ = wᵢ·e^(−cᵢ) / z with z = Σⱼ wⱼ·e^(−cⱼ) + row: the
// sequential Bayes update with PODᵢ = 1 − e^(−cᵢ) (e^(−a)·e^(−b) =
// e^(−(a+b)), so every batch of coverage is one more search). A batch only
// adds to gcov and moves z by Σ wᵢ(e^(−c′ᵢ) − e^(−cᵢ)) over the cells it
// touched. A rebase (adjustment, clue) writes wᵢ = POA′ᵢ·e^(cᵢ) and
// row = row′ so that z = 1 again, and posb = the probability of success at
// that moment; the probability of success is then 1 − (1 − posb)·z,
// i.e. 1 − Π(1 − POSₖ) over the searches since. Seeding writes the new
// prior (Σ = 1) with posb = 0 and z = Σ wᵢe^(−cᵢ) + row over the coverage
// kept, so searches already made count as evidence against the new prior.
//
// The detection model (wᵢ·e^(−cᵢ)) is computed in Go only, by
// geo.Undetected and geo.UndetectedDelta; the scripts store weights,
// coverage and totals that Go computed, and add. z is kept in Redis so
// that an incremental read (loadChanged) and the event throttle have it
// without reading every cell. It stays the total of the cells so:
//
//   - Coverage never waits for or loses to another writer. A batch is two
//     script runs (AddCoverage). lua/coverage.lua adds each cell's
//     coverage with HINCRBYFLOAT and answers, per cell, wᵢ and the coverage
//     before and after, read in the same atomic run, with zver; Go
//     computes Δz = Σ geo.UndetectedDelta(wᵢ, before, after), and
//     lua/coverage_total.lua adds Δz to z if zver has not moved since.
//     Racing batches' pairs chain up per cell (one's after is the next
//     one's before), so their Δz sum to the change of the cells' total in
//     whatever order they are added: no compare-and-set, no retry.
//   - Seeds and rebases compute z in Go from the cells and are
//     compare-and-set against cver (lua/put_grid.lua): the z they store is
//     the cells' total when they commit, and they count zver. A batch
//     incremented before that commit is in that z, so its Δz arriving
//     after is dropped (zver moved); one incremented after sees the new
//     zver and adds its Δz. Settings updates count wver only and do not
//     void a pending Δz.
//
// Between a batch's two runs z lags the cells by that batch's Δz; if the
// process dies between them (or Redis stays unreachable for the second,
// which runs even when the caller gives up) z stays off by it until the
// next seed or rebase. The coverage itself is stored by the first run.
// Full readers recompute z from the cells; the maintained z serves the
// incremental reads and the event throttle.

func ffmt(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

func (s *Store) gridMeta(ctx context.Context, p redis.Cmdable, id string) *redis.SliceCmd {
	return p.HMGet(ctx, kGrid(id), "pb", "ver", "seedver", "row", "z", "posb", "wver")
}

func decodeMeta(vals []any) (sar.GridMeta, bool, error) {
	pb, ok := vals[0].(string)
	if !ok {
		return sar.GridMeta{}, false, nil
	}
	var f fields
	m := sar.GridMeta{Summary: &sarv1.SearchGridSummary{}, Version: f.int(vals[1]), SeedVersion: f.int(vals[2]),
		RestOfWorld: f.float(vals[3]), Z: f.float(vals[4]), POSBase: f.float(vals[5]), WriteVersion: f.int(vals[6])}
	if f.err != nil {
		return sar.GridMeta{}, false, f.err
	}
	if err := unmarshal(pb, m.Summary); err != nil {
		return sar.GridMeta{}, false, err
	}
	return m, true, nil
}

// sar.GridMeta returns a grid's meta, or NotFound if the incident has no grid.
func (s *Store) GridMeta(ctx context.Context, id string) (sar.GridMeta, error) {
	vals, err := s.gridMeta(ctx, s.rdb, id).Result()
	if err != nil {
		return sar.GridMeta{}, fail(err, "search grid")
	}
	m, ok, err := decodeMeta(vals)
	if err == nil && !ok {
		err = sar.NotFound("search grid")
	}
	return m, err
}

// LoadGrid reads a whole grid, or (since > 0) the meta and only the cells
// changed after version since, as one consistent snapshot: one pipeline of
// plain reads (a whole grid) or one read-only script (changed cells).
func (s *Store) LoadGrid(ctx context.Context, id string, since int64) (*sar.Grid, error) {
	if since > 0 {
		return s.loadChanged(ctx, id, since)
	}
	var meta *redis.SliceCmd
	var vers *redis.ZSliceCmd
	var pri, cov *redis.MapStringStringCmd
	// MULTI/EXEC: every key is in the incident's slot, and no script may
	// run between the reads.
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		meta = s.gridMeta(ctx, p, id)
		vers = p.ZRangeWithScores(ctx, kGridVer(id), 0, -1)
		pri = p.HGetAll(ctx, kGridPrior(id))
		cov = p.HGetAll(ctx, kGridCov(id))
		return nil
	})
	if err != nil {
		return nil, fail(err, "search grid")
	}
	m, ok, err := decodeMeta(meta.Val())
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, sar.NotFound("search grid")
	}
	g := &sar.Grid{Meta: m, Cells: make(map[uint64]sar.GridCellState, len(vers.Val()))}
	for k, v := range pri.Val() {
		if c, ok := sar.ParseCellHex(k); ok {
			w, err := parseFloat(v)
			if err != nil {
				return nil, err
			}
			g.Cells[c] = sar.GridCellState{Prior: w, InGrid: true}
		}
	}
	for k, v := range cov.Val() {
		if c, ok := sar.ParseCellHex(k); ok {
			st := g.Cells[c]
			if st.Coverage, err = parseFloat(v); err != nil {
				return nil, err
			}
			g.Cells[c] = st
		}
	}
	for _, z := range vers.Val() {
		if c, ok := sar.ParseCellHex(z.Member.(string)); ok {
			if st, ok := g.Cells[c]; ok {
				st.Version = int64(z.Score)
				g.Cells[c] = st
			}
		}
	}
	return g, nil
}

// loadChanged reads the meta and the cells changed after version since in
// one script run, so that weights, coverage and the total belong together
// even while tracks and rebases write.
func (s *Store) loadChanged(ctx context.Context, id string, since int64) (*sar.Grid, error) {
	res, err := loadChangedScript.RunRO(ctx, s.rdb, []string{kGrid(id), kGridPrior(id), kGridCov(id), kGridVer(id)}, since).Result()
	if err != nil {
		return nil, fail(err, "search grid")
	}
	return loadChangedReply(res)
}

// loadChangedReply reads the reply of lua/load_changed.lua.
func loadChangedReply(v any) (*sar.Grid, error) {
	r := newReply("load changed", v, 0)
	if r.err != nil {
		return nil, r.err
	}
	if r.len() == 0 {
		return nil, sar.NotFound("search grid")
	}
	if r.len() < 7 || (r.len()-7)%4 != 0 {
		return nil, replyError("load changed", "%d elements, want 7 + 4 per cell", r.len())
	}
	m, ok, err := decodeMeta(r.slice(0, 7))
	if r.err != nil {
		return nil, r.err
	}
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, sar.NotFound("search grid")
	}
	g := &sar.Grid{Meta: m, Cells: make(map[uint64]sar.GridCellState, (r.len()-7)/4)}
	for i := 7; i < r.len(); i += 4 {
		hex := r.str(i)
		prior, inGrid := r.optStr(i+1, true)
		cov, _ := r.optStr(i+2, true)
		ver := r.decimal(i + 3)
		if r.err != nil {
			return nil, r.err
		}
		c, ok := sar.ParseCellHex(hex)
		if !ok || !inGrid {
			continue // dropped by a re-seed
		}
		var f fields
		g.Cells[c] = sar.GridCellState{Prior: f.float(prior), Coverage: f.float(cov), Version: ver, InGrid: true}
		if f.err != nil {
			return nil, f.err
		}
	}
	return g, nil
}

// gridStageChunk is how many cells one command stages; gridStageTTL is
// how long staged cells wait for the swap before Redis drops them.
const (
	gridStageChunk = 5000
	gridStageTTL   = 10 * time.Minute
)

// gridCASTries bounds PutGrid's reads again when coverage moved between
// its coverage snapshot and its script.
const gridCASTries = 20

// PutGrid writes a seeded or rebased grid atomically with its event. The
// new version is ExpectVersion + 1.
//
// The cells are staged first, gridStageChunk at a time, in two keys of the
// incident's slot that expire after gridStageTTL; then one small script
// (lua/put_grid.lua) checks the versions and swaps them in. The total z is
// computed here (geo.Undetected) from the coverage read at a coverage
// version the script checks.
func (s *Store) PutGrid(ctx context.Context, w sar.GridWrite) error {
	id := w.IncidentID
	if _, err := s.rdb.SAdd(ctx, kIdxOutbox, id).Result(); err != nil {
		return fail(err, "incident")
	}
	flags := ""
	if w.Seed {
		flags += "s"
	}
	if w.ResetCoverage {
		flags += "r"
	}
	if w.ClearCoverage {
		flags += "c"
	}
	token := sar.NewID()
	stage, stagev := kGridStage(id, token), kGridStageVer(id, token)
	if err := s.stageGrid(ctx, stage, stagev, w.Prior); err != nil {
		return err
	}
	done := false
	defer func() {
		if !done { // the script renamed or dropped them when it wrote
			_ = s.rdb.Unlink(context.WithoutCancel(ctx), stage, stagev).Err()
		}
	}()
	// With reset or clear the written cells end with no coverage whatever
	// tracks add meanwhile: z needs no coverage read and no check.
	needCoverage := !(w.Seed && w.ResetCoverage) && !w.ClearCoverage
	keys := []string{kInc(id), kGrid(id), kGridPrior(id), kGridCov(id), kGridVer(id), kGridTrk(id), kOutbox(id), stage, stagev}
	for range gridCASTries {
		z, cver := w.RestOfWorld, ""
		if needCoverage {
			v, cov, err := s.coverageSnapshot(ctx, id)
			if err != nil {
				return err
			}
			cver = strconv.FormatInt(v, 10)
			for c, p := range w.Prior {
				z += geo.Undetected(p, cov[sar.CellHex(c)])
			}
		} else {
			for _, p := range w.Prior {
				z += p
			}
		}
		res, err := putGridScript.Run(ctx, s.rdb, keys, w.ExpectWriteVersion, w.ExpectVersion, cver, flags, len(w.Prior),
			marshal(w.Summary), ffmt(w.RestOfWorld), ffmt(w.POSBase), ffmt(z), ffmt(1-(1-w.POSBase)*z),
			w.Event.GetId(), marshal(w.Event)).Result()
		if scriptCode(err) == codeConflict {
			return sar.ErrGridConflict
		}
		if err != nil {
			return fail(err, "incident")
		}
		r := newReply("put grid", res, 1)
		switch r.word(0, "ok", "moved", "coverage") {
		case "ok":
			done = true
			return nil
		case "moved":
			if cur := r.decimal(1); r.err == nil {
				return &sar.VersionMovedError{Current: cur}
			}
		}
		if r.err != nil {
			return r.err
		}
	}
	return sar.ErrGridConflict
}

// stageGrid writes the cells of a grid write into stage (cell → weight)
// and stagev (cell → 1), gridStageChunk cells per transaction, each with
// the keys' expiry, so that a crash leaves nothing that lasts.
func (s *Store) stageGrid(ctx context.Context, stage, stagev string, prior map[uint64]float64) error {
	h := make([]any, 0, 2*min(len(prior), gridStageChunk))
	zs := make([]redis.Z, 0, min(len(prior), gridStageChunk))
	flush := func() error {
		if len(zs) == 0 {
			return nil
		}
		_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.HSet(ctx, stage, h...)
			p.ZAdd(ctx, stagev, zs...)
			p.Expire(ctx, stage, gridStageTTL)
			p.Expire(ctx, stagev, gridStageTTL)
			return nil
		})
		h, zs = h[:0], zs[:0]
		return fail(err, "search grid")
	}
	for c, p := range prior {
		hex := sar.CellHex(c)
		h = append(h, hex, ffmt(p))
		zs = append(zs, redis.Z{Score: 1, Member: hex})
		if len(zs) == gridStageChunk {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// coverageSnapshot reads a grid's coverage version and every cell's
// coverage, as one snapshot.
func (s *Store) coverageSnapshot(ctx context.Context, id string) (int64, map[string]float64, error) {
	var cver *redis.StringCmd
	var cov *redis.MapStringStringCmd
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		cver = p.HGet(ctx, kGrid(id), "cver")
		cov = p.HGetAll(ctx, kGridCov(id))
		return nil
	})
	if err != nil && err != redis.Nil {
		return 0, nil, fail(err, "search grid")
	}
	out := make(map[string]float64, len(cov.Val()))
	for k, v := range cov.Val() {
		if out[k], err = parseFloat(v); err != nil {
			return 0, nil, err
		}
	}
	ver, err := parseInt(cver.Val())
	return ver, out, err
}

// AddCoverage adds a batch of coverage to a grid and saves the searcher's
// tracker state, in two script runs and no retry, however many batches
// race on the same cells. lua/coverage.lua increments each cell's coverage
// atomically and answers, per cell, its weight and its coverage before and
// after; the change of the total, Σ geo.UndetectedDelta over those pairs,
// is computed here and added by lua/coverage_total.lua unless a seed or
// rebase recomputed the total in between (then it already holds this
// batch). The deltas of racing batches commute, so the total stays the sum
// over the cells. The queue entry of the batch's search work (a.Member)
// ends in the last of the two runs, so that a reader who sees no search
// work pending sees a total that has followed the cells. (Not always with
// several replicas: another replica's worker, stepping the same entry in
// between and finding nothing new to credit, ends it in its first run;
// nor after a failed second run, whose change of the total is lost until
// a rebase, as before.)
func (s *Store) AddCoverage(ctx context.Context, a sar.CoverageArgs) (sar.CoverageResult, error) {
	id := a.IncidentID
	cells := make([]uint64, 0, len(a.Coverage))
	for c, v := range a.Coverage {
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			return sar.CoverageResult{}, sar.Errorf(sar.KindInternal, "coverage of cell %s is %v", sar.CellHex(c), v)
		}
		cells = append(cells, c)
	}
	slices.Sort(cells) // a total independent of map order
	args := make([]any, 0, 8+2*len(cells))
	args = append(args, a.ParticipantID, a.TrackerBefore, a.TrackerAfter, a.NowMs, len(cells))
	for _, c := range cells {
		args = append(args, sar.CellHex(c), ffmt(a.Coverage[c]))
	}
	args = append(args, a.ThroughMs, a.Member, a.Gen)
	res, err := coverageScript.Run(ctx, s.rdb, []string{kInc(id), kGrid(id), kGridPrior(id), kGridCov(id), kGridVer(id), kGridTrk(id),
		kGridThrough(id), kWork(id), kWorkTime(id)}, args...).Result()
	if err != nil {
		return sar.CoverageResult{}, fail(err, "incident")
	}
	r := newReply("coverage", res, 1)
	switch r.word(0, "nogrid", "stale", "ok") {
	case "nogrid":
		return sar.CoverageResult{NoGrid: true}, nil
	case "stale":
		return sar.CoverageResult{TrackerStale: true}, nil
	}
	if r.err == nil && r.len() != 8+3*len(cells) {
		r.failf("%d elements, want 8 + 3 per cell (%d cells)", r.len(), len(cells))
	}
	out := sar.CoverageResult{Version: r.decimal(1), Changed: int(r.int(2)), Done: r.flag(7)}
	zver := r.str(3)
	z, posb, row := r.float(4), r.float(5), r.float(6)
	dz, changed := 0.0, 0
	for i := range cells {
		prior, _ := r.optStr(8+3*i, false)
		before, after := r.float(9+3*i), r.float(10+3*i)
		if r.err != nil {
			return sar.CoverageResult{}, r.err
		}
		if prior == "" {
			continue // not in the grid: coverage kept, no weight
		}
		w, err := strconv.ParseFloat(prior, 64)
		if err != nil {
			return sar.CoverageResult{}, replyError("coverage", "prior of cell %s is %q", sar.CellHex(cells[i]), prior)
		}
		dz += geo.UndetectedDelta(w, before, after)
		changed++
	}
	if r.err != nil {
		return sar.CoverageResult{}, r.err
	}
	if out.Changed != changed {
		return sar.CoverageResult{}, replyError("coverage", "%d cells changed, want %d", out.Changed, changed)
	}
	if s.betweenCoverageSteps != nil {
		s.betweenCoverageSteps()
	}
	if changed > 0 {
		// The coverage is stored: the total must follow even if the
		// caller gives up now.
		tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), coverageTotalTimeout)
		res, err := coverageTotalScript.Run(tctx, s.rdb, []string{kInc(id), kGrid(id), kWork(id), kWorkTime(id)}, zver, ffmt(dz),
			ffmt(a.EventDelta), a.EventEveryMs, a.NowMs, a.Member, a.Gen).Result()
		cancel()
		if err != nil {
			return sar.CoverageResult{}, fail(err, "search grid")
		}
		r := newReply("coverage total", res, 1)
		switch r.word(0, "nogrid", "moved", "ok") {
		case "nogrid": // dropped meanwhile: report from the first step
			z += dz
			out.Done = r.flag(1)
		case "moved":
			z, posb, row = r.float(1), r.float(2), r.float(3)
			out.Done = r.flag(4)
		case "ok":
			z, posb, row = r.float(1), r.float(2), r.float(3)
			out.EventDue, out.Done = r.flag(4), r.flag(5)
		}
		if r.err != nil {
			return sar.CoverageResult{}, r.err
		}
	}
	out.POS = math.Min(1, math.Max(0, 1-(1-posb)*z))
	if z > 0 {
		out.RestOfWorld = row / z
	}
	return out, nil
}

// coverageTotalTimeout bounds the second step of AddCoverage, which runs
// even when the caller's context ends.
const coverageTotalTimeout = 5 * time.Second

// PutEvent writes an event to an incident's outbox (for the relay) before
// it is delivered.
func (s *Store) PutEvent(ctx context.Context, ev *sarv1.Event) error {
	id := ev.GetIncidentId()
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.SAdd(ctx, kIdxOutbox, id)
		p.HSet(ctx, kOutbox(id), ev.GetId(), marshal(ev))
		return nil
	})
	return fail(err, "outbox")
}

// FlushGridEvent decides whether coverage that moved the probability of
// success since the last grid event (by at least minDelta, but less than
// the throttle's delta) is due for a trailing event: tracks have paused
// for everyMs (no coverage since) and everyMs have passed since the last
// event. It claims the event if so.
func (s *Store) FlushGridEvent(ctx context.Context, id string, minDelta float64, everyMs, nowMs int64) (sar.TrailingEvent, error) {
	res, err := flushGridEventScript.Run(ctx, s.rdb, []string{kInc(id), kGrid(id)}, ffmt(minDelta), everyMs, nowMs).Result()
	if err != nil {
		return sar.TrailingEvent{}, fail(err, "search grid")
	}
	return flushReply(res)
}

// flushReply reads the reply of lua/flush_grid_event.lua.
func flushReply(v any) (sar.TrailingEvent, error) {
	r := newReply("flush grid event", v, 1)
	switch r.word(0, "nogrid", "quiet", "wait", "due") {
	case "nogrid", "quiet":
		return sar.TrailingEvent{}, r.err
	case "wait":
		ms := r.int(1)
		return sar.TrailingEvent{WaitMs: ms}, r.err
	}
	vals := r.slice(1, 8)
	if r.err != nil {
		return sar.TrailingEvent{}, r.err
	}
	m, ok, err := decodeMeta(vals)
	if err != nil || !ok {
		return sar.TrailingEvent{}, err
	}
	out := sar.TrailingEvent{Meta: m, Due: true, POS: 1 - (1-m.POSBase)*m.Z}
	if m.Z > 0 {
		out.ROW = m.RestOfWorld / m.Z
	}
	out.POS = math.Min(1, math.Max(0, out.POS))
	return out, nil
}

// UpdateGridSummary replaces the static summary of a grid (sweep widths,
// settings) if no seed, rebase or other update happened since the meta was
// read (sar.ErrGridConflict otherwise); it counts as a write (WriteVersion).
func (s *Store) UpdateGridSummary(ctx context.Context, id string, expectWriteVersion int64, sm *sarv1.SearchGridSummary) error {
	res, err := updateGridSummaryScript.Run(ctx, s.rdb, []string{kInc(id), kGrid(id)}, expectWriteVersion, marshal(sm)).Result()
	if scriptCode(err) == codeConflict {
		return sar.ErrGridConflict
	}
	if err != nil {
		return fail(err, "search grid")
	}
	_, err = intReply("update grid summary", res)
	return err
}
