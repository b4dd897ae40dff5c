package geo

import (
	"cmp"
	"fmt"
	"math"
	"slices"

	"github.com/uber/h3-go/v4"
)

// Clue is evidence found at a place: a footprint, a dropped glove, a
// sighting.
type Clue struct {
	Lat, Lng float64
	// RadiusM is how far from the clue the subject is likely to be now, as
	// the σ of a circular normal (metres, > 0).
	RadiusM float64
	// Weight is the likelihood ratio at the clue: how many times likelier
	// the clue is if the subject is right there than if they are far away.
	// Above 1 draws probability towards the clue; below 1 (but above 0)
	// pushes it away, for evidence that the subject is not there.
	Weight float64
}

// clueReach is how many σ around a clue the kernel is applied.
const clueReach = 4.0

// maxClueCells bounds the cells a clue may add to a grid.
const maxClueCells = 200_000

// ApplyClue re-weights the grid around a clue: every cell's POA is
// multiplied by the likelihood
//
//	Kᵢ = 1 + (Weight − 1) · (σ²/σᵢ²) · e^(−dᵢ²/2σᵢ²),  σᵢ² = σ² + Aᵢ/4π
//
// where dᵢ is the distance from the clue to the cell's centre and σᵢ widens
// the kernel by the cell's own extent (the kernel averaged over the cell),
// and the rest of world by 1; then everything is renormalised. A clue
// beyond the grid's edge re-seeds around itself: the cells within reach of
// it (4σ) that the grid lacks are first added with the grid's lowest
// density as their prior, taken from the rest of world. On error the grid
// is unchanged.
func (g *Grid) ApplyClue(c Clue) error {
	if !ValidPoint(c.Lat, c.Lng) {
		return fmt.Errorf("%w: clue at lat=%v lng=%v", ErrInvalidPoint, c.Lat, c.Lng)
	}
	if !finite(c.RadiusM, c.Weight) || c.RadiusM <= 0 || c.RadiusM > 1e6 || c.Weight <= 0 {
		return fmt.Errorf("%w: clue radius %v m, weight %v", ErrInvalidArgument, c.RadiusM, c.Weight)
	}
	if len(g.Cells) == 0 {
		return ErrEmptyGrid
	}
	work := g.Clone()
	if c.Weight > 1 {
		if err := work.extendAround(c); err != nil {
			return err
		}
	}
	ae := newAzimuthal(c.Lat, c.Lng)
	s2 := c.RadiusM * c.RadiusM
	reach := clueReach * c.RadiusM
	for i := range work.Cells {
		cell := &work.Cells[i]
		ll, err := h3.CellToLatLng(h3.Cell(cell.ID))
		if err != nil {
			return fmt.Errorf("%w: centre of %x: %v", ErrInvalidCell, cell.ID, err)
		}
		// Cheap reject before the projection: a degree of latitude is
		// 111 km, so anything further in latitude alone is out of reach.
		ext := math.Sqrt(cell.AreaM2)
		if math.Abs(ll.Lat-c.Lat)*degToRad*EarthRadiusM > reach+ext {
			continue
		}
		x, y := ae.forward(ll.Lat, ll.Lng)
		d2 := x*x + y*y
		si2 := s2 + cell.AreaM2/(4*math.Pi)
		if d2 > (reach+ext)*(reach+ext) {
			continue
		}
		cell.POA *= 1 + (c.Weight-1)*(s2/si2)*math.Exp(-d2/(2*si2))
	}
	if err := work.normalize(); err != nil {
		return err
	}
	*g = *work
	return nil
}

// extendAround adds the cells within reach of the clue that the grid lacks,
// with the lowest density among the grid's cells as prior, paid for from
// the rest of world.
func (g *Grid) extendAround(c Clue) error {
	center, err := h3.LatLngToCell(h3.LatLng{Lat: c.Lat, Lng: c.Lng}, g.Resolution)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidPoint, err)
	}
	a0, err := h3.CellAreaM2(center)
	if err != nil {
		return fmt.Errorf("geo: area of %s: %w", center, err)
	}
	reach := clueReach * c.RadiusM
	spacing := math.Sqrt(2 * a0 / math.Sqrt(3))
	k := int(math.Ceil(reach/(spacing*math.Sqrt(3)/2)*1.03)) + 1
	if n := 3*k*(k+1) + 1; n > maxClueCells {
		return fmt.Errorf("%w: a clue radius of %.0f m needs %d cells at resolution %d", ErrTooManyCells, c.RadiusM, n, g.Resolution)
	}
	disk, err := h3.GridDisk(center, k)
	if err != nil {
		return fmt.Errorf("geo: grid disk of %s: %w", center, err)
	}
	minDensity := math.Inf(1)
	for _, cell := range g.Cells {
		if cell.POA > 0 {
			minDensity = min(minDensity, cell.POA/cell.AreaM2)
		}
	}
	if math.IsInf(minDensity, 1) {
		minDensity = 0
	}
	var added []GridCell
	var addedMass float64
	for _, cell := range disk {
		if cell == 0 {
			continue
		}
		if _, ok := g.Index(uint64(cell)); ok {
			continue
		}
		ll, err := h3.CellToLatLng(cell)
		if err != nil {
			return fmt.Errorf("geo: centre of %s: %w", cell, err)
		}
		if DistanceM(c.Lat, c.Lng, ll.Lat, ll.Lng) > reach+spacing {
			continue
		}
		a, err := h3.CellAreaM2(cell)
		if err != nil {
			return fmt.Errorf("geo: area of %s: %w", cell, err)
		}
		added = append(added, GridCell{ID: uint64(cell), POA: minDensity * a, AreaM2: a})
		addedMass += minDensity * a
	}
	if len(added) == 0 {
		return nil
	}
	if addedMass > g.RestOfWorld {
		k := 0.0
		if addedMass > 0 {
			k = g.RestOfWorld / addedMass
		}
		for i := range added {
			added[i].POA *= k
		}
		addedMass = g.RestOfWorld
	}
	g.RestOfWorld -= addedMass
	g.Cells = append(g.Cells, added...)
	slices.SortFunc(g.Cells, func(a, b GridCell) int { return cmp.Compare(a.ID, b.ID) })
	return nil
}

// SetPOA sets the POA of chosen cells to exact values, for local knowledge
// (a gorge, a river, a known trap trail), and scales every other cell and
// the rest of world so that the total stays 1. Cells the grid lacks are
// added. The values must sum to at most 1; if nothing else holds any
// probability, the remainder goes to the rest of world. On error the grid
// is unchanged.
func (g *Grid) SetPOA(values map[uint64]float64) error {
	var set neumaier
	for id, p := range values {
		if !finite(p) || p < 0 || p > 1 {
			return fmt.Errorf("%w: POA %v for cell %x", ErrInvalidArgument, p, id)
		}
		if err := checkCell(id, g.Resolution); err != nil {
			return err
		}
		set.add(p)
	}
	if set.value() > 1+NormTolerance {
		return fmt.Errorf("%w: POA set sums to %v > 1", ErrInvalidArgument, set.value())
	}
	work := g.Clone()
	var others neumaier
	for _, c := range work.Cells {
		if _, ok := values[c.ID]; !ok {
			others.add(c.POA)
		}
	}
	others.add(work.RestOfWorld)
	left := max(0, 1-set.value())
	k := 0.0
	if others.value() > 0 {
		k = left / others.value()
	} else {
		work.RestOfWorld = left
	}
	for i := range work.Cells {
		if _, ok := values[work.Cells[i].ID]; !ok {
			work.Cells[i].POA *= k
		}
	}
	if others.value() > 0 {
		work.RestOfWorld *= k
	}
	ids := make([]uint64, 0, len(values))
	for id := range values {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		// Look up in g: work's tail of added cells is not sorted yet, and
		// g's indices are work's for the cells it holds.
		if i, ok := g.Index(id); ok {
			work.Cells[i].POA = values[id]
			continue
		}
		a, err := cellArea(id, work.Resolution)
		if err != nil {
			return err
		}
		work.Cells = append(work.Cells, GridCell{ID: id, POA: values[id], AreaM2: a})
	}
	slices.SortFunc(work.Cells, func(a, b GridCell) int { return cmp.Compare(a.ID, b.ID) })
	if err := work.normalize(); err != nil {
		return err
	}
	*g = *work
	return nil
}

// ScaleCells multiplies the POA of the given cells, which must be in the
// grid, by factor (≥ 0) and renormalises everything. On error the grid is
// unchanged.
func (g *Grid) ScaleCells(cells []uint64, factor float64) error {
	if !finite(factor) || factor < 0 {
		return fmt.Errorf("%w: factor %v", ErrInvalidArgument, factor)
	}
	idx := make([]int, 0, len(cells))
	seen := make(map[uint64]bool, len(cells))
	for _, id := range cells {
		i, ok := g.Index(id)
		if !ok {
			return fmt.Errorf("%w: %x", ErrCellNotInGrid, id)
		}
		if !seen[id] {
			seen[id] = true
			idx = append(idx, i)
		}
	}
	work := g.Clone()
	for _, i := range idx {
		work.Cells[i].POA *= factor
	}
	if err := work.normalize(); err != nil {
		return err
	}
	*g = *work
	return nil
}

// SetRestOfWorld sets the rest-of-world probability to p in [0, 1) and
// scales the cells to share 1 − p. On error the grid is unchanged.
func (g *Grid) SetRestOfWorld(p float64) error {
	if !finite(p) || p < 0 || p >= 1 {
		return fmt.Errorf("%w: rest of world %v", ErrInvalidArgument, p)
	}
	var s neumaier
	for _, c := range g.Cells {
		s.add(c.POA)
	}
	if !(s.value() > 0) {
		return fmt.Errorf("%w: no cell holds probability", ErrDegenerate)
	}
	k := (1 - p) / s.value()
	for i := range g.Cells {
		g.Cells[i].POA *= k
	}
	g.RestOfWorld = p
	return nil
}
