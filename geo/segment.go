package geo

import (
	"cmp"
	"container/heap"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/uber/h3-go/v4"
)

// Segment is a compact, contiguous group of grid cells sized for one team's
// task.
type Segment struct {
	// ID numbers the segments 1…n in the order Segments returned them
	// (highest density first when made); it does not change afterwards.
	ID int
	// Cells are the segment's cells, sorted.
	Cells []uint64
	// AreaM2 is the segment's area.
	AreaM2 float64
	// POA is the probability that the subject is in the segment, as of the
	// grid it was made or last ranked from (see RankSegments).
	POA float64
	// Lat, Lng is the area-weighted centroid of the cells' centres.
	Lat, Lng float64
}

// DensityPerKm2 returns the segment's POA per square kilometre.
func (s Segment) DensityPerKm2() float64 {
	if s.AreaM2 <= 0 {
		return 0
	}
	return s.POA / (s.AreaM2 / 1e6)
}

// SegmentOptions configures Segments.
type SegmentOptions struct {
	// TargetAreaM2 is the area one team can search in one task; see
	// Team.TaskAreaM2. Required.
	TargetAreaM2 float64
	// MinFill: a segment left smaller than MinFill × TargetAreaM2 (a pocket
	// between others, a ragged edge) is merged into its smallest neighbour.
	// 0 means the default 0.3; a negative value disables merging.
	MinFill float64
}

// Segments partitions the grid's cells into compact, contiguous segments of
// about TargetAreaM2 each. Segments grow one at a time from the densest cell
// not yet taken, adding the free neighbouring cell nearest to the seed
// until the target area is reached, so each is a connected blob around a
// high-density seed. Small leftovers are then merged (MinFill). The result
// is sorted by density, highest first, with IDs 1…n; it is deterministic
// for a given grid.
func Segments(g *Grid, opt SegmentOptions) ([]Segment, error) {
	if len(g.Cells) == 0 {
		return nil, ErrEmptyGrid
	}
	if !finite(opt.TargetAreaM2, opt.MinFill) || opt.TargetAreaM2 <= 0 {
		return nil, fmt.Errorf("%w: target area %v m², min fill %v", ErrInvalidArgument, opt.TargetAreaM2, opt.MinFill)
	}
	minFill := opt.MinFill
	if minFill == 0 {
		minFill = 0.3
	}
	n := len(g.Cells)
	// Cell centres in a plane around the densest cell.
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		da, db := g.Cells[a].POA/g.Cells[a].AreaM2, g.Cells[b].POA/g.Cells[b].AreaM2
		if c := cmp.Compare(db, da); c != 0 {
			return c
		}
		return cmp.Compare(g.Cells[a].ID, g.Cells[b].ID)
	})
	xs, ys := make([]float64, n), make([]float64, n)
	ll0, err := h3.CellToLatLng(h3.Cell(g.Cells[order[0]].ID))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidCell, err)
	}
	ae := newAzimuthal(ll0.Lat, ll0.Lng)
	for i, c := range g.Cells {
		ll, err := h3.CellToLatLng(h3.Cell(c.ID))
		if err != nil {
			return nil, fmt.Errorf("%w: centre of %x: %v", ErrInvalidCell, c.ID, err)
		}
		xs[i], ys[i] = ae.forward(ll.Lat, ll.Lng)
	}
	// Neighbours within the grid.
	nbr := make([][6]int32, n)
	for i, c := range g.Cells {
		for k := range nbr[i] {
			nbr[i][k] = -1
		}
		ring, err := h3.GridDisk(h3.Cell(c.ID), 1)
		if err != nil {
			return nil, fmt.Errorf("geo: neighbours of %x: %w", c.ID, err)
		}
		k := 0
		for _, r := range ring {
			if r == 0 || uint64(r) == c.ID || k == 6 {
				continue
			}
			if j, ok := g.Index(uint64(r)); ok {
				nbr[i][k] = int32(j)
				k++
			}
		}
	}
	// Grow.
	seg := make([]int32, n)
	for i := range seg {
		seg[i] = -1
	}
	var areas []float64
	var h candHeap
	for _, s := range order {
		if seg[s] >= 0 {
			continue
		}
		id := int32(len(areas))
		area := 0.0
		h = h[:0]
		heap.Push(&h, cand{i: s})
		for h.Len() > 0 && area < opt.TargetAreaM2 {
			c := heap.Pop(&h).(cand)
			if seg[c.i] >= 0 {
				continue
			}
			seg[c.i] = id
			area += g.Cells[c.i].AreaM2
			for _, j := range nbr[c.i] {
				if j >= 0 && seg[j] < 0 {
					dx, dy := xs[j]-xs[s], ys[j]-ys[s]
					heap.Push(&h, cand{i: int(j), d2: dx*dx + dy*dy, id: g.Cells[j].ID})
				}
			}
		}
		areas = append(areas, area)
	}
	// Merge small segments into their smallest neighbour, smallest first.
	if minFill > 0 {
		parent := make([]int32, len(areas))
		for i := range parent {
			parent[i] = int32(i)
		}
		find := func(a int32) int32 {
			for parent[a] != a {
				parent[a] = parent[parent[a]]
				a = parent[a]
			}
			return a
		}
		small := make([]int, 0)
		for i, a := range areas {
			if a < minFill*opt.TargetAreaM2 {
				small = append(small, i)
			}
		}
		slices.SortFunc(small, func(a, b int) int {
			if c := cmp.Compare(areas[a], areas[b]); c != 0 {
				return c
			}
			return cmp.Compare(a, b)
		})
		members := make([][]int, len(areas))
		for i, s := range seg {
			members[s] = append(members[s], i)
		}
		for _, s := range small {
			r := find(int32(s))
			if areas[r] >= minFill*opt.TargetAreaM2 {
				continue
			}
			best := int32(-1)
			for _, i := range members[r] {
				for _, j := range nbr[i] {
					if j < 0 {
						continue
					}
					o := find(seg[j])
					if o == r {
						continue
					}
					if best < 0 || areas[o] < areas[best] || (areas[o] == areas[best] && o < best) {
						best = o
					}
				}
			}
			if best < 0 {
				continue
			}
			parent[r] = best
			areas[best] += areas[r]
			members[best] = append(members[best], members[r]...)
			members[r] = nil
		}
		for i := range seg {
			seg[i] = find(seg[i])
		}
	}
	// Collect.
	byRoot := make(map[int32]*Segment)
	var out []Segment
	roots := make([]int32, 0)
	sx, sy := make(map[int32]float64), make(map[int32]float64)
	for i, s := range seg {
		sg, ok := byRoot[s]
		if !ok {
			sg = &Segment{}
			byRoot[s] = sg
			roots = append(roots, s)
		}
		c := g.Cells[i]
		sg.Cells = append(sg.Cells, c.ID)
		sg.AreaM2 += c.AreaM2
		sg.POA += c.POA
		sx[s] += xs[i] * c.AreaM2
		sy[s] += ys[i] * c.AreaM2
	}
	for _, r := range roots {
		sg := byRoot[r]
		sg.Lat, sg.Lng = ae.inverse(sx[r]/sg.AreaM2, sy[r]/sg.AreaM2)
		out = append(out, *sg)
	}
	slices.SortFunc(out, compareSegments)
	for i := range out {
		out[i].ID = i + 1
	}
	return out, nil
}

// compareSegments orders by density, highest first, then by first cell.
func compareSegments(a, b Segment) int {
	if c := cmp.Compare(b.DensityPerKm2(), a.DensityPerKm2()); c != 0 {
		return c
	}
	if c := cmp.Compare(a.ID, b.ID); c != 0 {
		return c
	}
	return cmp.Compare(a.Cells[0], b.Cells[0])
}

type cand struct {
	i  int
	d2 float64
	id uint64
}

// candHeap orders growth candidates by distance to the seed, then cell ID.
type candHeap []cand

func (h candHeap) Len() int { return len(h) }
func (h candHeap) Less(a, b int) bool {
	if h[a].d2 != h[b].d2 {
		return h[a].d2 < h[b].d2
	}
	return h[a].id < h[b].id
}
func (h candHeap) Swap(a, b int) { h[a], h[b] = h[b], h[a] }
func (h *candHeap) Push(x any)   { *h = append(*h, x.(cand)) }
func (h *candHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// RankSegments returns a copy of the segments with their POA taken from the
// grid as it is now (after searches, clues and adjustments), sorted by
// density, highest first. IDs are kept.
func RankSegments(g *Grid, segs []Segment) []Segment {
	out := make([]Segment, len(segs))
	for i, s := range segs {
		s.POA = segmentPOA(g, s)
		out[i] = s
	}
	slices.SortStableFunc(out, compareSegments)
	return out
}

// seconds converts a time in seconds, capped at 100 years so that absurd
// inputs (a sweep width of a millimetre) cannot overflow a Duration.
func seconds(v float64) time.Duration {
	const maxSeconds = 100 * 365.25 * 24 * 3600
	return time.Duration(min(v, maxSeconds) * float64(time.Second))
}

func segmentPOA(g *Grid, s Segment) float64 {
	var p neumaier
	for _, id := range s.Cells {
		p.add(g.POA(id))
	}
	return p.value()
}

// Team describes a field team for task sizing and choice.
type Team struct {
	// Lat, Lng is where the team is now.
	Lat, Lng float64
	// Searchers is the number of people searching abreast.
	Searchers int
	// SweepWidthM is each searcher's effective sweep width.
	SweepWidthM float64
	// SearchSpeedMS is the walking speed while searching.
	SearchSpeedMS float64
	// TravelSpeedMS is the straight-line speed of approach to a segment
	// (slower than walking speed on winding trails).
	TravelSpeedMS float64
}

func (t Team) validate() error {
	if !ValidPoint(t.Lat, t.Lng) {
		return fmt.Errorf("%w: team at lat=%v lng=%v", ErrInvalidPoint, t.Lat, t.Lng)
	}
	if t.Searchers < 1 || !finite(t.SweepWidthM, t.SearchSpeedMS, t.TravelSpeedMS) ||
		t.SweepWidthM <= 0 || t.SearchSpeedMS <= 0 || t.TravelSpeedMS <= 0 {
		return fmt.Errorf("%w: team %+v", ErrInvalidArgument, t)
	}
	return nil
}

// sweepRate is the area the team sweeps per second at coverage 1 (m²/s).
func (t Team) sweepRate() float64 {
	return float64(t.Searchers) * t.SweepWidthM * t.SearchSpeedMS
}

// TaskAreaM2 returns the area the team can search in d to the given
// coverage: searchers × sweep width × speed × d / coverage. Coverage 1 gives
// a POD of 63 %, 1.5 gives 78 %.
func (t Team) TaskAreaM2(d time.Duration, coverage float64) (float64, error) {
	if d <= 0 || !finite(coverage) || coverage <= 0 {
		return 0, fmt.Errorf("%w: duration %v, coverage %v", ErrInvalidArgument, d, coverage)
	}
	if t.Searchers < 1 || !finite(t.SweepWidthM, t.SearchSpeedMS) || t.SweepWidthM <= 0 || t.SearchSpeedMS <= 0 {
		return 0, fmt.Errorf("%w: team %+v", ErrInvalidArgument, t)
	}
	return t.sweepRate() * d.Seconds() / coverage, nil
}

// Task is a proposed assignment of a segment to a team.
type Task struct {
	// Index is the segment's position in the slice given to NextTask; ID
	// its ID.
	Index, ID int
	// POA is the segment's current probability of area.
	POA float64
	// POS is the expected probability of success of the task:
	// POA × (1 − e^(−coverage)).
	POS float64
	// Travel and Search are the estimated times to reach the segment and to
	// search it to the coverage.
	Travel, Search time.Duration
	// Score is POS per hour of travel plus search, the quantity maximised.
	Score float64
}

// NextTask picks for a team the unassigned segment with the highest rate
// of success,
//
//	score = POA × (1 − e^(−c)) / (travel + search)   [per hour]
//
// where c is the coverage the team will give it, travel = distance from the
// team to the segment's edge (centroid distance less the radius of a disk
// of the segment's area) / TravelSpeedMS, and search = c × area / (searchers
// × sweep width × search speed). Without travel this ranks by density, as
// search theory's optimal allocation does; travel discounts far segments by
// the time lost reaching them. POA is read from the grid as it is now.
// assigned holds the IDs of segments already taken (may be nil). Ties go to
// the lower ID.
func NextTask(g *Grid, segs []Segment, team Team, coverage float64, assigned map[int]bool) (Task, error) {
	if err := team.validate(); err != nil {
		return Task{}, err
	}
	if !finite(coverage) || coverage <= 0 {
		return Task{}, fmt.Errorf("%w: coverage %v", ErrInvalidArgument, coverage)
	}
	pod := PODFromCoverage(coverage)
	best := Task{Index: -1}
	for i, s := range segs {
		if assigned[s.ID] || s.AreaM2 <= 0 || len(s.Cells) == 0 {
			continue
		}
		poa := segmentPOA(g, s)
		if !(poa > 0) {
			continue
		}
		d := DistanceM(team.Lat, team.Lng, s.Lat, s.Lng) - math.Sqrt(s.AreaM2/math.Pi)
		travel := max(0, d) / team.TravelSpeedMS
		search := coverage * s.AreaM2 / team.sweepRate()
		score := poa * pod / ((travel + search) / 3600)
		if best.Index < 0 || score > best.Score || (score == best.Score && s.ID < best.ID) {
			best = Task{
				Index: i, ID: s.ID, POA: poa, POS: poa * pod, Score: score,
				Travel: seconds(travel),
				Search: seconds(search),
			}
		}
	}
	if best.Index < 0 {
		return Task{}, ErrNoSegment
	}
	return best, nil
}
