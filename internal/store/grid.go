package store

import (
	"context"
	"math"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/sar"
)

// The search grid of an incident is kept so that a batch of track points
// costs one script run whatever the grid's size:
//
//   - grid (hash): the summary pb ("pb", static parts: profile, origin,
//     sweep widths, resolution), the version "ver", the version of the last
//     seeding "seedver", the rest of world's weight "row", the maintained
//     total weight "z", the probability of success at the last rebase
//     "posb", the count of seeds, rebases and settings updates "wver", and
//     the throttle of coverage events "evpos", "evt" (last event) and
//     "covt" (last coverage, for the trailing event).
//   - gpri (hash): cell → prior weight wᵢ.
//   - gcov (hash): cell → cumulative coverage cᵢ (HINCRBYFLOAT from tracks).
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
// Readers recompute z from the cells; the maintained z only drives the
// event throttle.

func ffmt(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

func pfloat(v any) float64 {
	s, _ := v.(string)
	f, _ := strconv.ParseFloat(s, 64)
	return f
}

func pint(v any) int64 {
	s, _ := v.(string)
	return parseInt(s)
}

func (s *Store) gridMeta(ctx context.Context, p redis.Cmdable, id string) *redis.SliceCmd {
	return p.HMGet(ctx, kGrid(id), "pb", "ver", "seedver", "row", "z", "posb", "wver")
}

func decodeMeta(vals []any) (sar.GridMeta, bool, error) {
	pb, ok := vals[0].(string)
	if !ok {
		return sar.GridMeta{}, false, nil
	}
	m := sar.GridMeta{Summary: &sarv1.SearchGridSummary{}, Version: pint(vals[1]), SeedVersion: pint(vals[2]),
		RestOfWorld: pfloat(vals[3]), Z: pfloat(vals[4]), POSBase: pfloat(vals[5]), WriteVersion: pint(vals[6])}
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
			w, _ := strconv.ParseFloat(v, 64)
			g.Cells[c] = sar.GridCellState{Prior: w, InGrid: true}
		}
	}
	for k, v := range cov.Val() {
		if c, ok := sar.ParseCellHex(k); ok {
			st := g.Cells[c]
			st.Coverage, _ = strconv.ParseFloat(v, 64)
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
	res, err := loadChangedScript.Run(ctx, s.rdb, []string{kGrid(id), kGridPrior(id), kGridCov(id), kGridVer(id)}, since).Slice()
	if err != nil {
		return nil, fail(err, "search grid")
	}
	if len(res) < 7 {
		return nil, sar.NotFound("search grid")
	}
	m, ok, err := decodeMeta(res[:7])
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, sar.NotFound("search grid")
	}
	g := &sar.Grid{Meta: m, Cells: make(map[uint64]sar.GridCellState, (len(res)-7)/4)}
	for i := 7; i+3 < len(res); i += 4 {
		c, ok := sar.ParseCellHex(asString(res[i]))
		if !ok || res[i+1] == nil {
			continue // dropped by a re-seed
		}
		g.Cells[c] = sar.GridCellState{Prior: pfloat(res[i+1]), Coverage: pfloat(res[i+2]), Version: pint(res[i+3]), InGrid: true}
	}
	return g, nil
}

func asString(v any) string {
	s, _ := v.(string)
	return s
}

// loadChangedScript: see loadChanged. Read-only.
//
// KEYS: grid gpri gcov gver
// ARGV: since
//
// Returns {} without a grid, else {pb, ver, seedver, row, z, posb, wver}
// followed by (cell, prior, coverage, version) per changed cell, unless
// since is older than the last seed (then the meta alone).
var loadChangedScript = redis.NewScript(`
local m = redis.call('HMGET', KEYS[1], 'pb', 'ver', 'seedver', 'row', 'z', 'posb', 'wver')
if not m[1] then return {} end
-- Older than the seed: the caller reads the whole grid instead.
if tonumber(ARGV[1]) < tonumber(m[3] or '0') then return m end
local out = m
local z = redis.call('ZRANGEBYSCORE', KEYS[4], '(' .. ARGV[1], '+inf', 'WITHSCORES')
for i = 1, #z, 2 do
  out[#out + 1] = z[i]
  out[#out + 1] = redis.call('HGET', KEYS[2], z[i])
  out[#out + 1] = redis.call('HGET', KEYS[3], z[i])
  out[#out + 1] = z[i + 1]
end
return out
`)

// PutGrid writes a seeded or rebased grid atomically with its event. The
// new version is ExpectVersion + 1.
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
	args := make([]any, 0, 9+2*len(w.Prior))
	args = append(args, w.ExpectWriteVersion, w.ExpectVersion, flags, marshal(w.Summary), ffmt(w.RestOfWorld),
		ffmt(w.POSBase), w.Event.GetId(), marshal(w.Event), len(w.Prior))
	for c, p := range w.Prior {
		args = append(args, sar.CellHex(c), ffmt(p))
	}
	keys := []string{kInc(id), kGrid(id), kGridPrior(id), kGridCov(id), kGridVer(id), kGridTrk(id), kOutbox(id)}
	res, err := putGridScript.Run(ctx, s.rdb, keys, args...).Slice()
	if err != nil && strings.Contains(err.Error(), scriptConflict) {
		return sar.ErrGridConflict
	}
	if err != nil {
		return fail(err, "incident")
	}
	if res[0].(string) == "moved" {
		return &sar.VersionMovedError{Current: pint(res[1])}
	}
	return nil
}

// TrackerState returns a grid's meta, a searcher's stored tracker state and
// searcher type in one round trip.
func (s *Store) TrackerState(ctx context.Context, id, participantID string) (sar.Searcher, error) {
	var meta *redis.SliceCmd
	var trk, typ *redis.StringCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		meta = s.gridMeta(ctx, p, id)
		trk = p.HGet(ctx, kGridTrk(id), participantID)
		typ = p.HGet(ctx, kSearcher(id), participantID)
		return nil
	})
	if err != nil && err != redis.Nil {
		return sar.Searcher{}, fail(err, "search grid")
	}
	m, ok, err := decodeMeta(meta.Val())
	return sar.Searcher{Meta: m, HasGrid: ok, Tracker: trk.Val(), Type: typ.Val()}, err
}

// AddCoverage adds a batch of coverage to a grid and saves the searcher's
// tracker state, in one script run.
func (s *Store) AddCoverage(ctx context.Context, a sar.CoverageArgs) (sar.CoverageResult, error) {
	id := a.IncidentID
	args := make([]any, 0, 8+2*len(a.Coverage))
	args = append(args, a.ParticipantID, a.TrackerBefore, a.TrackerAfter, ffmt(a.EventDelta), a.EventEveryMs, a.NowMs, len(a.Coverage))
	for c, v := range a.Coverage {
		args = append(args, sar.CellHex(c), ffmt(v))
	}
	keys := []string{kInc(id), kGrid(id), kGridPrior(id), kGridCov(id), kGridVer(id), kGridTrk(id)}
	res, err := coverageScript.Run(ctx, s.rdb, keys, args...).Slice()
	if err != nil {
		return sar.CoverageResult{}, fail(err, "incident")
	}
	switch res[0].(string) {
	case "nogrid":
		return sar.CoverageResult{NoGrid: true}, nil
	case "stale":
		return sar.CoverageResult{TrackerStale: true}, nil
	}
	z, posb, row := pfloat(res[2]), pfloat(res[3]), pfloat(res[4])
	out := sar.CoverageResult{Version: pint(res[1]), Changed: int(res[5].(int64)), EventDue: res[6].(int64) == 1,
		POS: 1 - (1-posb)*z}
	if z > 0 {
		out.RestOfWorld = row / z
	}
	out.POS = math.Min(1, math.Max(0, out.POS))
	return out, nil
}

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
	res, err := flushGridEventScript.Run(ctx, s.rdb, []string{kInc(id), kGrid(id)}, ffmt(minDelta), everyMs, nowMs).Slice()
	if err != nil {
		return sar.TrailingEvent{}, fail(err, "search grid")
	}
	switch res[0].(string) {
	case "nogrid", "quiet":
		return sar.TrailingEvent{}, nil
	case "wait":
		return sar.TrailingEvent{WaitMs: res[1].(int64)}, nil
	}
	m, ok, err := decodeMeta(res[1:8])
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

// flushGridEventScript: see FlushGridEvent.
//
// KEYS: inc grid
// ARGV: minDelta everyMs nowMs
//
// Returns {'nogrid'}, {'quiet'} (nothing to announce), {'wait', ms} or
// {'due', pb, ver, seedver, row, z, posb, wver}.
var flushGridEventScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'state') ~= 'open' then return {'nogrid'} end
local m = redis.call('HMGET', KEYS[2], 'pb', 'ver', 'seedver', 'row', 'z', 'posb', 'wver', 'evpos', 'evt', 'covt')
if not m[1] then return {'nogrid'} end
local pos = 1 - (1 - tonumber(m[6])) * tonumber(m[5])
if math.abs(pos - tonumber(m[8] or '0')) < tonumber(ARGV[1]) then return {'quiet'} end
local last = math.max(tonumber(m[9] or '0'), tonumber(m[10] or '0'))
local wait = last + tonumber(ARGV[2]) - tonumber(ARGV[3])
if wait > 0 then return {'wait', wait} end
redis.call('HSET', KEYS[2], 'evpos', string.format('%.17g', pos), 'evt', ARGV[3])
return {'due', m[1], m[2], m[3], m[4], m[5], m[6], m[7]}
`)

// UpdateGridSummary replaces the static summary of a grid (sweep widths,
// settings) if no seed, rebase or other update happened since the meta was
// read (sar.ErrGridConflict otherwise); it counts as a write (WriteVersion).
func (s *Store) UpdateGridSummary(ctx context.Context, id string, expectWriteVersion int64, sm *sarv1.SearchGridSummary) error {
	err := updateGridSummaryScript.Run(ctx, s.rdb, []string{kInc(id), kGrid(id)}, expectWriteVersion, marshal(sm)).Err()
	if err != nil && strings.Contains(err.Error(), scriptConflict) {
		return sar.ErrGridConflict
	}
	return fail(err, "search grid")
}

// updateGridSummaryScript: see UpdateGridSummary.
//
// KEYS: inc grid
// ARGV: expectWver summaryPb
var updateGridSummaryScript = redis.NewScript(`
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return redis.error_reply('SAR_NOTFOUND') end
if state ~= 'open' then return redis.error_reply('SAR_CLOSED') end
local wver = redis.call('HGET', KEYS[2], 'wver')
if not wver then return redis.error_reply('SAR_NOTFOUND') end
if tonumber(wver) ~= tonumber(ARGV[1]) then return redis.error_reply('SAR_CONFLICT') end
-- A write like a seed or rebase: a rebase prepared before it must not
-- write its older summary over this one.
redis.call('HSET', KEYS[2], 'pb', ARGV[2], 'wver', tonumber(wver) + 1)
return 1
`)
