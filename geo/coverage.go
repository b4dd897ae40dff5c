package geo

import (
	"fmt"
	"math"

	"github.com/uber/h3-go/v4"
)

// SegmentLengths adds to lengths, for every H3 cell at resolution res that
// the great-circle segment from (lat1, lng1) to (lat2, lng2) crosses, the
// length in metres of the part inside it, and returns the segment's length.
// The crossings are exact intersections with the cell boundaries in a
// gnomonic projection centred on the segment's start, where both the
// segment and the cell edges are straight lines; the parts sum to the
// haversine length of the segment.
func SegmentLengths(lat1, lng1, lat2, lng2 float64, res int, lengths map[uint64]float64) (float64, error) {
	if !ValidPoint(lat1, lng1) || !ValidPoint(lat2, lng2) {
		return 0, fmt.Errorf("%w: segment %v,%v → %v,%v", ErrInvalidPoint, lat1, lng1, lat2, lng2)
	}
	if !ValidResolution(res) {
		return 0, fmt.Errorf("%w: %d", ErrInvalidResolution, res)
	}
	if lengths == nil {
		return 0, fmt.Errorf("%w: nil lengths map", ErrInvalidArgument)
	}
	w := walker{res: res}
	return w.walk(Fix{Lat: lat1, Lng: lng1}, Fix{Lat: lat2, Lng: lng2}, lengths)
}

// maxSegmentM bounds one segment: far beyond any plausible step of a
// searcher, and well inside the gnomonic projection's reach.
const maxSegmentM = 500_000

// walker walks segments across cells, caching cell boundaries (a searcher
// stays in one cell for many fixes) and the cell where the last walk ended.
type walker struct {
	res      int
	bounds   map[h3.Cell]h3.CellBoundary
	lastCell h3.Cell
	lastLat  float64
	lastLng  float64
	px, py   []float64
}

func (w *walker) boundary(c h3.Cell) (h3.CellBoundary, error) {
	if b, ok := w.bounds[c]; ok {
		return b, nil
	}
	b, err := h3.CellToBoundary(c)
	if err != nil {
		return nil, fmt.Errorf("geo: boundary of %s: %w", c, err)
	}
	if w.bounds == nil || len(w.bounds) >= 256 {
		w.bounds = make(map[h3.Cell]h3.CellBoundary, 16)
	}
	w.bounds[c] = b
	return b, nil
}

func (w *walker) cellOf(lat, lng float64) (h3.Cell, error) {
	if w.lastCell != 0 && lat == w.lastLat && lng == w.lastLng && w.lastCell.Resolution() == w.res {
		return w.lastCell, nil
	}
	c, err := h3.LatLngToCell(h3.LatLng{Lat: lat, Lng: lng}, w.res)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrInvalidPoint, err)
	}
	return c, nil
}

// walk credits the segment a→b to the cells it crosses and returns its
// length.
func (w *walker) walk(a, b Fix, lengths map[uint64]float64) (float64, error) {
	total := DistanceM(a.Lat, a.Lng, b.Lat, b.Lng)
	if total > maxSegmentM {
		return 0, fmt.Errorf("%w: segment of %.0f m", ErrInvalidArgument, total)
	}
	cur, err := w.cellOf(a.Lat, a.Lng)
	if err != nil {
		return 0, err
	}
	if total == 0 {
		return 0, nil
	}
	g := newGnomonic(a.Lat, a.Lng)
	qx, qy, ok := g.forward(b.Lat, b.Lng)
	rhoQ := math.Hypot(qx, qy)
	if !ok || rhoQ == 0 {
		return 0, fmt.Errorf("%w: segment cannot be projected", ErrInvalidArgument)
	}
	arcQ := g.arc(rhoQ)
	// frac maps the line parameter t ∈ [0, 1] to the share of the arc.
	frac := func(t float64) float64 { return g.arc(t*rhoQ) / arcQ }
	t, done := 0.0, 0.0
	for iter := 0; ; iter++ {
		bd, err := w.boundary(cur)
		if err != nil {
			return 0, err
		}
		tExit := w.exit(g, bd, qx, qy)
		if tExit >= 1 || iter > 10_000 {
			lengths[uint64(cur)] += total * (1 - done)
			break
		}
		tExit = max(tExit, t)
		// Step just past the boundary to find the next cell; grow the step
		// if rounding leaves the point in the same cell.
		next := cur
		for nudge := 1e-3; nudge < 1 && next == cur; nudge *= 10 {
			tn := tExit + nudge/rhoQ
			if tn >= 1 {
				break
			}
			lat, lng := g.inverse(tn*qx, tn*qy)
			next, err = h3.LatLngToCell(h3.LatLng{Lat: lat, Lng: lng}, w.res)
			if err != nil {
				return 0, fmt.Errorf("%w: %v", ErrInvalidPoint, err)
			}
		}
		if next == cur {
			lengths[uint64(cur)] += total * (1 - done)
			break
		}
		f := frac(tExit)
		lengths[uint64(cur)] += total * (f - done)
		done, t, cur = f, tExit, next
	}
	// The walk ended inside cur's boundary: that is b's cell, and the next
	// segment of a track starts at b.
	w.lastCell, w.lastLat, w.lastLng = cur, b.Lat, b.Lng
	return total, nil
}

// exit returns the line parameter t at which the ray from the projection
// centre towards (qx, qy) leaves the convex cell boundary bd (Cyrus–Beck):
// for every edge whose outward normal n faces the ray, t ≤ n·v / n·q.
func (w *walker) exit(g gnomonic, bd h3.CellBoundary, qx, qy float64) float64 {
	n := len(bd)
	w.px, w.py = w.px[:0], w.py[:0]
	area2 := 0.0
	for _, v := range bd {
		x, y, ok := g.forward(v.Lat, v.Lng)
		if !ok {
			return math.Inf(1)
		}
		w.px, w.py = append(w.px, x), append(w.py, y)
	}
	for i := range n {
		j := (i + 1) % n
		area2 += w.px[i]*w.py[j] - w.px[j]*w.py[i]
	}
	sign := 1.0 // outward normal of a counter-clockwise edge e is (e.y, −e.x)
	if area2 < 0 {
		sign = -1
	}
	tExit := math.Inf(1)
	for i := range n {
		j := (i + 1) % n
		nx, ny := sign*(w.py[j]-w.py[i]), -sign*(w.px[j]-w.px[i])
		den := nx*qx + ny*qy
		if den <= 0 {
			continue
		}
		tExit = min(tExit, (nx*w.px[i]+ny*w.py[i])/den)
	}
	return tExit
}

// SweepWidths maps searcher types, as an incident configures them ("foot",
// "dog", "drone" …), to effective sweep widths in metres. Sweep width
// depends on the searcher, the terrain, the vegetation and what is sought,
// so no defaults are shipped: set them per incident.
type SweepWidths map[string]float64

// Of returns the sweep width of a searcher type.
func (s SweepWidths) Of(searcherType string) (float64, error) {
	w, ok := s[searcherType]
	if !ok || !finite(w) || w <= 0 {
		return 0, fmt.Errorf("%w: no sweep width for searcher type %q", ErrInvalidArgument, searcherType)
	}
	return w, nil
}

// Coverage converts swept lengths per cell (metres) into coverage per cell:
// sweep width × length / cell area, with the cell areas from H3. The POD of
// a cell for that effort is PODFromCoverage(coverage).
func Coverage(lengthsM map[uint64]float64, sweepWidthM float64) (map[uint64]float64, error) {
	if !finite(sweepWidthM) || sweepWidthM <= 0 {
		return nil, fmt.Errorf("%w: sweep width %v", ErrInvalidArgument, sweepWidthM)
	}
	out := make(map[uint64]float64, len(lengthsM))
	for id, l := range lengthsM {
		if !finite(l) || l < 0 {
			return nil, fmt.Errorf("%w: length %v in cell %x", ErrInvalidArgument, l, id)
		}
		c := h3.Cell(id)
		if !knownCell(c) && !c.IsValid() {
			return nil, fmt.Errorf("%w: %x", ErrInvalidCell, id)
		}
		a, err := cellAreaM2(c)
		if err != nil || !(a > 0) {
			return nil, fmt.Errorf("%w: area of %x: %v", ErrInvalidCell, id, err)
		}
		out[id] = sweepWidthM * l / a
	}
	return out, nil
}
