package geo

import (
	"math"

	"github.com/uber/h3-go/v4"
)

// CellFinder finds the H3 cells of points that mostly lie near each other,
// such as the fixes of one batch from a walking phone. H3's latLngToCell
// is a cgo call of about a microsecond, most of the CPU a fix costs in
// validation; a phone walking at 1.4 m/s stays minutes in a 0.1 km² cell.
// So the finder keeps the last cell it found with the great circles of
// its edges, and a point inside every edge's half of the sphere, by more
// than a margin, is in that cell: a few products of unit vectors.
//
// This is exact, not an approximation: H3 cell edges are great-circle
// arcs (straight lines in the gnomonic projection of an icosahedron face,
// with an extra vertex where an edge crosses from one face to another),
// and a point inside the half-spheres of all the edges is inside the
// polygon (their intersection, the polygon's kernel, lies in it even if a
// face crossing bends it). The margin (about 0.6 m on the ground) keeps
// floating-point rounding at the edges, H3's or ours, from mattering:
// points that near an edge are looked up by H3. Other points are looked
// up as CellAt does, with the same errors.
//
// The zero value is ready. A CellFinder is not safe for concurrent use.
type CellFinder struct {
	res   int
	cell  uint64
	edges []vec3 // inward unit normals of the cell's edges; none: no cell yet
}

// insideMargin is the least sine of the angle between a point and an
// edge's great circle for the point to count as inside (1e-7 rad ≈ 0.64 m).
const insideMargin = 1e-7

type vec3 struct{ x, y, z float64 }

func (a vec3) dot(b vec3) float64 { return a.x*b.x + a.y*b.y + a.z*b.z }

func (a vec3) cross(b vec3) vec3 {
	return vec3{a.y*b.z - a.z*b.y, a.z*b.x - a.x*b.z, a.x*b.y - a.y*b.x}
}

func (a vec3) norm() float64 { return math.Sqrt(a.dot(a)) }

func (a vec3) scale(k float64) vec3 { return vec3{a.x * k, a.y * k, a.z * k} }

// unitVector is the point on the unit sphere at lat/lng degrees.
func unitVector(lat, lng float64) vec3 {
	sinLat, cosLat := math.Sincos(lat * math.Pi / 180)
	sinLng, cosLng := math.Sincos(lng * math.Pi / 180)
	return vec3{cosLat * cosLng, cosLat * sinLng, sinLat}
}

// CellAt returns the H3 cell at resolution res that contains the point,
// as the function CellAt does.
func (f *CellFinder) CellAt(lat, lng float64, res int) (uint64, error) {
	if len(f.edges) > 0 && res == f.res && ValidPoint(lat, lng) && f.inside(unitVector(lat, lng)) {
		return f.cell, nil
	}
	c, err := CellAt(lat, lng, res)
	if err != nil {
		return 0, err
	}
	if c != f.cell || res != f.res || len(f.edges) == 0 {
		f.learn(c, res)
	}
	return c, nil
}

func (f *CellFinder) inside(p vec3) bool {
	for _, n := range f.edges {
		if n.dot(p) <= insideMargin {
			return false
		}
	}
	return true
}

// learn keeps cell c's edges; if its boundary cannot be had, none (every
// point is then looked up by H3).
func (f *CellFinder) learn(c uint64, res int) {
	f.cell, f.res, f.edges = c, res, f.edges[:0]
	b, err := h3.Cell(c).Boundary()
	if err != nil || len(b) < 3 {
		return
	}
	vs := make([]vec3, len(b))
	var mid vec3
	for i, v := range b {
		vs[i] = unitVector(v.Lat, v.Lng)
		mid = vec3{mid.x + vs[i].x, mid.y + vs[i].y, mid.z + vs[i].z}
	}
	turn := 0.0 // > 0: the normals point inward (H3 lists vertices counter-clockwise)
	for i, a := range vs {
		n := a.cross(vs[(i+1)%len(vs)])
		l := n.norm()
		if l < 1e-15 { // a repeated vertex: no edge
			continue
		}
		n = n.scale(1 / l)
		turn += n.dot(mid)
		f.edges = append(f.edges, n)
	}
	switch {
	case len(f.edges) < 3:
		f.edges = f.edges[:0]
	case turn < 0: // one orientation for all edges, never one by one (a bent cell)
		for i, n := range f.edges {
			f.edges[i] = n.scale(-1)
		}
	}
}
