package geo

import (
	"cmp"
	"fmt"
	"math"
	"slices"

	"github.com/uber/h3-go/v4"
)

// NormTolerance is how far from 1 the total probability of a grid may drift
// before Validate rejects it. Every operation renormalises with a
// compensated sum, so real drift stays many orders of magnitude below it.
const NormTolerance = 1e-9

// GridCell is one H3 cell of a probability grid.
type GridCell struct {
	// ID is the H3 cell index.
	ID uint64
	// POA is the probability that the subject is in this cell.
	POA float64
	// Coverage is the cumulative search coverage of the cell (sum over
	// searches of sweep width × track length / area); see POD.
	Coverage float64
	// AreaM2 is the cell's area in square metres.
	AreaM2 float64
}

// POD returns the cumulative probability of detection of the cell,
// 1 − e^(−coverage) (the exponential detection function), which equals
// 1 − Π(1 − PODₖ) over the individual searches.
func (c GridCell) POD() float64 { return PODFromCoverage(c.Coverage) }

// DensityPerKm2 returns the cell's POA per square kilometre.
func (c GridCell) DensityPerKm2() float64 {
	if c.AreaM2 <= 0 {
		return 0
	}
	return c.POA / (c.AreaM2 / 1e6)
}

// Grid is a probability-of-area map over H3 cells at one resolution, plus
// the probability that the subject is somewhere outside them. It is a plain
// value for the server to store; keeping a version counter is the caller's
// job. The methods that change it keep POA + RestOfWorld = 1 and leave it
// unchanged when they fail. A Grid is not safe for concurrent use.
type Grid struct {
	// Resolution is the H3 resolution of every cell.
	Resolution int
	// Cells are sorted by ID, without duplicates.
	Cells []GridCell
	// RestOfWorld is the probability that the subject is in none of the
	// cells. Searches never reduce it directly (its POD is 0).
	RestOfWorld float64
	// CumulativePOS is the probability that the searches applied so far
	// would have found the subject: 1 − Π(1 − POSₖ).
	CumulativePOS float64
}

// NewGrid builds a grid from probabilities per cell and a rest of world.
// The values need not sum to 1 (they are scaled so that they do) but must
// be finite, non-negative and not all zero. Cell areas come from H3.
func NewGrid(res int, poa map[uint64]float64, restOfWorld float64) (*Grid, error) {
	if !ValidResolution(res) {
		return nil, fmt.Errorf("%w: %d", ErrInvalidResolution, res)
	}
	if len(poa) == 0 {
		return nil, ErrEmptyGrid
	}
	if !finite(restOfWorld) || restOfWorld < 0 {
		return nil, fmt.Errorf("%w: rest of world %v", ErrInvalidArgument, restOfWorld)
	}
	g := &Grid{Resolution: res, RestOfWorld: restOfWorld, Cells: make([]GridCell, 0, len(poa))}
	for id, p := range poa {
		if !finite(p) || p < 0 {
			return nil, fmt.Errorf("%w: POA %v for cell %s", ErrInvalidArgument, p, CellString(id))
		}
		a, err := cellArea(id, res)
		if err != nil {
			return nil, err
		}
		g.Cells = append(g.Cells, GridCell{ID: id, POA: p, AreaM2: a})
	}
	slices.SortFunc(g.Cells, func(a, b GridCell) int { return cmp.Compare(a.ID, b.ID) })
	if err := g.normalize(); err != nil {
		return nil, err
	}
	return g, nil
}

// checkCell reports whether id is a valid H3 cell at resolution res.
func checkCell(id uint64, res int) error {
	c := h3.Cell(id)
	if !(knownCell(c) || c.IsValid()) || c.Resolution() != res {
		return fmt.Errorf("%w: %x at resolution %d", ErrInvalidCell, id, res)
	}
	return nil
}

// cellArea returns the exact area of a cell from H3 after checking it.
func cellArea(id uint64, res int) (float64, error) {
	if err := checkCell(id, res); err != nil {
		return 0, err
	}
	a, err := cellAreaM2(h3.Cell(id))
	if err != nil {
		return 0, fmt.Errorf("%w: area of %s: %v", ErrInvalidCell, CellString(id), err)
	}
	return a, nil
}

// Index returns the position of cell id in g.Cells and whether it is there.
func (g *Grid) Index(id uint64) (int, bool) {
	return slices.BinarySearchFunc(g.Cells, id, func(c GridCell, id uint64) int { return cmp.Compare(c.ID, id) })
}

// POA returns the probability of area of a cell, 0 for a cell not in the
// grid.
func (g *Grid) POA(id uint64) float64 {
	if i, ok := g.Index(id); ok {
		return g.Cells[i].POA
	}
	return 0
}

// Total returns Σ POA + RestOfWorld, which is 1 within NormTolerance for a
// valid grid.
func (g *Grid) Total() float64 {
	var s neumaier
	for i := 0; i < len(g.Cells); i += 64 {
		var b float64
		for _, c := range g.Cells[i:min(i+64, len(g.Cells))] {
			b += c.POA
		}
		s.add(b)
	}
	s.add(g.RestOfWorld)
	return s.value()
}

// Clone returns a deep copy of the grid.
func (g *Grid) Clone() *Grid {
	c := *g
	c.Cells = slices.Clone(g.Cells)
	return &c
}

// Validate checks the grid's invariants: a valid resolution, at least one
// cell, cells sorted and unique, every probability, coverage and area finite
// and non-negative, and the total within NormTolerance of 1. It does not
// call H3 for every cell; use it on grids read back from storage.
func (g *Grid) Validate() error {
	if !ValidResolution(g.Resolution) {
		return fmt.Errorf("%w: %w: %d", ErrInvalidGrid, ErrInvalidResolution, g.Resolution)
	}
	if len(g.Cells) == 0 {
		return fmt.Errorf("%w: %w", ErrInvalidGrid, ErrEmptyGrid)
	}
	for i, c := range g.Cells {
		if i > 0 && c.ID <= g.Cells[i-1].ID {
			return fmt.Errorf("%w: cells not sorted or duplicated at %d", ErrInvalidGrid, i)
		}
		if !finite(c.POA, c.Coverage, c.AreaM2) || c.POA < 0 || c.Coverage < 0 || c.AreaM2 <= 0 {
			return fmt.Errorf("%w: cell %s has POA %v coverage %v area %v", ErrInvalidGrid, CellString(c.ID), c.POA, c.Coverage, c.AreaM2)
		}
	}
	if !finite(g.RestOfWorld, g.CumulativePOS) || g.RestOfWorld < 0 || g.CumulativePOS < 0 || g.CumulativePOS > 1 {
		return fmt.Errorf("%w: rest of world %v, cumulative POS %v", ErrInvalidGrid, g.RestOfWorld, g.CumulativePOS)
	}
	if t := g.Total(); math.Abs(t-1) > NormTolerance {
		return fmt.Errorf("%w: total probability %v", ErrInvalidGrid, t)
	}
	return nil
}

// normalize scales POA and RestOfWorld so that they sum to 1; it leaves the
// grid unchanged and returns ErrDegenerate if they sum to 0.
func (g *Grid) normalize() error {
	t := g.Total()
	if !(t > 0) || math.IsInf(t, 0) {
		return fmt.Errorf("%w: total %v", ErrDegenerate, t)
	}
	if t == 1 {
		return nil
	}
	k := 1 / t
	for i := range g.Cells {
		g.Cells[i].POA *= k
	}
	g.RestOfWorld *= k
	return nil
}

// PODFromCoverage returns the probability of detection for a coverage under
// the exponential detection function: 1 − e^(−coverage).
func PODFromCoverage(coverage float64) float64 {
	if !(coverage > 0) {
		return 0
	}
	return -math.Expm1(-coverage)
}

// Undetected returns the share of a prior weight that a search of the
// given coverage leaves undetected: prior·e^(−coverage). It is the one
// place the exponential detection model turns coverage into remaining
// probability: the grid's cells, the store's totals and the domain's
// summaries all call it, so a full read and an incremental read agree.
func Undetected(prior, coverage float64) float64 {
	if !(coverage > 0) {
		return prior
	}
	return prior * math.Exp(-coverage)
}

// UndetectedDelta is the change of Undetected(prior, ·) when a cell's
// coverage grows from before to after: what an incremental total adds.
func UndetectedDelta(prior, before, after float64) float64 {
	return Undetected(prior, after) - Undetected(prior, before)
}

// PriorOf inverts Undetected: the prior weight that a cell of weight w
// had before a search of the given coverage. The coverage is bounded by
// MaxCoverage so that the inverse stays finite.
func PriorOf(w, coverage float64) float64 {
	return w * math.Exp(min(max(coverage, 0), MaxCoverage))
}

// MaxCoverage bounds the coverage that PriorOf folds back into a weight
// (wᵢ = POAᵢ·e^(cᵢ)) so it stays finite; beyond it POAᵢ is ~0 anyway.
const MaxCoverage = 700.0

// CumulativePOD combines the PODs of independent searches of one area:
// 1 − Π(1 − PODₖ). Each POD must be within 0..1.
func CumulativePOD(pods ...float64) (float64, error) {
	miss := 1.0
	for _, p := range pods {
		if !finite(p) || p < 0 || p > 1 {
			return 0, fmt.Errorf("%w: POD %v", ErrInvalidArgument, p)
		}
		miss *= 1 - p
	}
	return 1 - miss, nil
}
