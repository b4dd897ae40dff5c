package geo

import (
	"cmp"
	"fmt"
	"math"
	"slices"

	"github.com/uber/h3-go/v4"
)

// Seeding defaults.
const (
	// DefaultCut is the cumulative fraction of an ISRID profile seeded as
	// cells: the 95 % ring, the last published quartile.
	DefaultCut = 0.95
	// DefaultFixRestOfWorld is the rest-of-world probability kept when a
	// caller's fix collapses the area: the fix may be stale or wrong.
	DefaultFixRestOfWorld = 0.05
	// DefaultMaxCells bounds the cells one seeding may create.
	DefaultMaxCells = 500_000
	// fixTruncation is the share of the fix's normal distribution kept
	// before it is cut (the radius where the 2-D normal reaches 99 %, about
	// 2 × the 68 % accuracy).
	fixTruncation = 0.99
	// pointSeedCells: areas estimated below this many cells are seeded by
	// mapping quadrature points of the distribution to cells with H3, which
	// is exact about cell boundaries when the area is small against a cell.
	pointSeedCells = 64
)

type seedConfig struct {
	res      int
	cut      float64
	rest     float64
	maxCells int
	err      error
}

// SeedOption configures Seed and SeedFix.
type SeedOption func(*seedConfig)

// WithResolution sets the H3 resolution of the grid (default
// DefaultResolution).
func WithResolution(res int) SeedOption {
	return func(c *seedConfig) {
		if !ValidResolution(res) {
			c.err = fmt.Errorf("%w: %d", ErrInvalidResolution, res)
		}
		c.res = res
	}
}

// WithCut sets the cumulative fraction of an ISRID profile kept as cells
// (Seed only; default DefaultCut, at most 0.95 since the published figures
// end there). The remainder becomes the rest of world.
func WithCut(fraction float64) SeedOption {
	return func(c *seedConfig) {
		if !finite(fraction) || fraction <= 0 || fraction > ProfileFractions[3] {
			c.err = fmt.Errorf("%w: cut %v outside (0, %v]", ErrInvalidArgument, fraction, ProfileFractions[3])
		}
		c.cut = fraction
	}
}

// WithRestOfWorld sets the rest-of-world probability of a fix (SeedFix only;
// default DefaultFixRestOfWorld), in [0, 1).
func WithRestOfWorld(p float64) SeedOption {
	return func(c *seedConfig) {
		if !finite(p) || p < 0 || p >= 1 {
			c.err = fmt.Errorf("%w: rest of world %v outside [0, 1)", ErrInvalidArgument, p)
		}
		c.rest = p
	}
}

// WithMaxCells bounds the number of cells a seeding may create (default
// DefaultMaxCells); a larger area fails with ErrTooManyCells.
func WithMaxCells(n int) SeedOption {
	return func(c *seedConfig) {
		if n < 1 {
			c.err = fmt.Errorf("%w: max cells %d", ErrInvalidArgument, n)
		}
		c.maxCells = n
	}
}

func newSeedConfig(opts []SeedOption) (seedConfig, error) {
	c := seedConfig{res: DefaultResolution, cut: DefaultCut, rest: DefaultFixRestOfWorld, maxCells: DefaultMaxCells}
	for _, o := range opts {
		if o == nil {
			continue
		}
		o(&c)
		if c.err != nil {
			return c, c.err
		}
	}
	return c, nil
}

// Seed returns the probability-of-area grid of a subject last seen at the
// IPP lat/lng with the given lost-person profile. The distance from the IPP
// follows the profile's quartiles, interpolated linearly in distance from 0
// at the IPP (so the share inside each ISRID ring is the table's), uniform
// in bearing. Cells covering the disk out to the cut ring (default 95 %)
// get the mass of the distribution over their area; the remainder is the
// rest of world. Several subjects with one profile share one grid.
func Seed(lat, lng float64, p Profile, opts ...SeedOption) (*Grid, error) {
	if !ValidPoint(lat, lng) {
		return nil, fmt.Errorf("%w: lat=%v lng=%v", ErrInvalidPoint, lat, lng)
	}
	cfg, err := newSeedConfig(opts)
	if err != nil {
		return nil, err
	}
	pw, err := profileCDF(p, cfg.cut)
	if err != nil {
		return nil, err
	}
	return seedRadial(lat, lng, pw, pw.knots(), 0, cfg.cut, cfg)
}

// SeedFix returns the grid of a subject whose own device reported a fix
// with the given horizontal accuracy (radius of 68 % confidence, metres).
// The position is modelled as a circular normal with σ from the accuracy,
// truncated at its 99 % radius; the rest of world keeps a small share
// (WithRestOfWorld) in case the fix is stale or wrong.
func SeedFix(lat, lng, accuracyM float64, opts ...SeedOption) (*Grid, error) {
	if !ValidPoint(lat, lng) {
		return nil, fmt.Errorf("%w: lat=%v lng=%v", ErrInvalidPoint, lat, lng)
	}
	if !finite(accuracyM) || accuracyM <= 0 || accuracyM > 1e6 {
		return nil, fmt.Errorf("%w: accuracy %v m", ErrInvalidArgument, accuracyM)
	}
	cfg, err := newSeedConfig(opts)
	if err != nil {
		return nil, err
	}
	mass := 1 - cfg.rest
	g := newGaussian(sigmaFrom68(accuracyM), fixTruncation, mass)
	return seedRadial(lat, lng, g, []float64{g.rc}, 3, mass, cfg)
}

// seedRadial builds a grid from a radial distribution around lat/lng whose
// total is mass; knots are radii where its density jumps; fixedN > 0 fixes
// the sub-sampling of every cell instead of choosing it from the knots.
func seedRadial(lat, lng float64, d radial, knots []float64, fixedN int, mass float64, cfg seedConfig) (*Grid, error) {
	c0, err := h3.LatLngToCell(h3.LatLng{Lat: lat, Lng: lng}, cfg.res)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidPoint, err)
	}
	a0, err := h3.CellAreaM2(c0)
	if err != nil {
		return nil, fmt.Errorf("geo: area of %s: %w", c0, err)
	}
	rc := d.inv(mass)
	spacing := math.Sqrt(2 * a0 / math.Sqrt(3)) // centre-to-centre distance of a regular hexagon grid
	est := math.Pi * (rc + spacing) * (rc + spacing) / a0
	if est > float64(cfg.maxCells) {
		return nil, fmt.Errorf("%w: about %.0f cells for a %.1f km radius at resolution %d (limit %d)", ErrTooManyCells, est, rc/1000, cfg.res, cfg.maxCells)
	}
	var cells []GridCell
	if est < pointSeedCells {
		cells, err = seedByPoints(lat, lng, d, mass, cfg.res)
	} else {
		cells, err = seedByCells(lat, lng, c0, a0, d, rc, knots, fixedN)
	}
	if err != nil {
		return nil, err
	}
	var s neumaier
	for _, c := range cells {
		s.add(c.POA)
	}
	if !(s.value() > 0) {
		return nil, fmt.Errorf("%w: seeded area holds no mass", ErrDegenerate)
	}
	k := mass / s.value()
	for i := range cells {
		cells[i].POA *= k
	}
	slices.SortFunc(cells, func(a, b GridCell) int { return cmp.Compare(a.ID, b.ID) })
	g := &Grid{Resolution: cfg.res, Cells: cells, RestOfWorld: 1 - mass}
	if err := g.normalize(); err != nil {
		return nil, err
	}
	return g, nil
}

// seedByPoints integrates the distribution by quadrature on its own polar
// grid — rings of equal mass, points evenly spaced in bearing and turned by
// the golden angle from ring to ring — and puts each point's mass in the H3
// cell that contains it.
func seedByPoints(lat, lng float64, d radial, mass float64, res int) ([]GridCell, error) {
	const rings, perRing = 64, 64
	ae := newAzimuthal(lat, lng)
	w := mass / (rings * perRing)
	acc := make(map[h3.Cell]float64)
	phi := (math.Sqrt(5) - 1) / 2
	for j := range rings {
		r := d.inv(mass * (float64(j) + 0.5) / rings)
		off := math.Mod(float64(j)*phi, 1)
		for m := range perRing {
			th := 2 * math.Pi * (float64(m) + off) / perRing
			plat, plng := ae.inverse(r*math.Sin(th), r*math.Cos(th))
			c, err := h3.LatLngToCell(h3.LatLng{Lat: plat, Lng: plng}, res)
			if err != nil {
				return nil, fmt.Errorf("%w: %v", ErrInvalidPoint, err)
			}
			acc[c] += w
		}
	}
	cells := make([]GridCell, 0, len(acc))
	for c, p := range acc {
		a, err := h3.CellAreaM2(c)
		if err != nil {
			return nil, fmt.Errorf("geo: area of %s: %w", c, err)
		}
		cells = append(cells, GridCell{ID: uint64(c), POA: p, AreaM2: a})
	}
	return cells, nil
}

// hexTemplate is the shape of one cell as offsets of its vertices from its
// centre in a local plane (metres), with the area share of each fan
// triangle (centre, vᵢ, vᵢ₊₁).
type hexTemplate struct {
	vx, vy  []float64
	share   []float64
	circumR float64
}

func newHexTemplate(c h3.Cell) (hexTemplate, error) {
	ctr, err := h3.CellToLatLng(c)
	if err != nil {
		return hexTemplate{}, fmt.Errorf("geo: centre of %s: %w", c, err)
	}
	b, err := h3.CellToBoundary(c)
	if err != nil {
		return hexTemplate{}, fmt.Errorf("geo: boundary of %s: %w", c, err)
	}
	ae := newAzimuthal(ctr.Lat, ctr.Lng)
	var t hexTemplate
	for _, v := range b {
		x, y := ae.forward(v.Lat, v.Lng)
		t.vx, t.vy = append(t.vx, x), append(t.vy, y)
		t.circumR = max(t.circumR, math.Hypot(x, y))
	}
	n := len(t.vx)
	total := 0.0
	for i := range n {
		j := (i + 1) % n
		a := math.Abs(t.vx[i]*t.vy[j]-t.vx[j]*t.vy[i]) / 2
		t.share = append(t.share, a)
		total += a
	}
	if !(total > 0) {
		return hexTemplate{}, fmt.Errorf("geo: degenerate boundary of %s", c)
	}
	for i := range t.share {
		t.share[i] /= total
	}
	return t, nil
}

// subTriangles lists, for a triangle (O, P, Q) cut into n² equal triangles,
// the centroid of each as coefficients (a, b) of O + a(P−O) + b(Q−O).
func subTriangles(n int) [][2]float64 {
	var out [][2]float64
	fn := float64(n)
	for i := range n {
		for j := 0; i+j <= n-1; j++ {
			out = append(out, [2]float64{(float64(i) + 1.0/3) / fn, (float64(j) + 1.0/3) / fn})
		}
		for j := 0; i+j <= n-2; j++ {
			out = append(out, [2]float64{(float64(i) + 2.0/3) / fn, (float64(j) + 2.0/3) / fn})
		}
	}
	return out
}

var (
	subTri1 = subTriangles(1)
	subTri3 = subTriangles(3)
	subTri8 = subTriangles(8)
)

// areaModel predicts cell area as a linear function of position, fitted to
// exact H3 areas of a few cells across the disk (H3 cell areas change
// smoothly, by about 0.5 % over 20 km).
type areaModel struct{ a, bx, by float64 }

func (m areaModel) at(x, y float64) float64 { return m.a + m.bx*x + m.by*y }

func fitAreas(ae azimuthal, a0 float64, reach float64, res int) areaModel {
	m := areaModel{a: a0}
	if reach < 2000 {
		return m
	}
	// Exact areas at the origin and four points on the axes; fit
	// A = a + bx·x + by·y by least squares on the symmetric design, where
	// the normal equations decouple.
	var sx, sxx, sy, syy, sxa, sya, sa float64
	n := 0.0
	for _, p := range [][2]float64{{0, 0}, {reach, 0}, {-reach, 0}, {0, reach}, {0, -reach}} {
		lat, lng := ae.inverse(p[0], p[1])
		c, err := h3.LatLngToCell(h3.LatLng{Lat: lat, Lng: lng}, res)
		if err != nil {
			return m
		}
		a, err := h3.CellAreaM2(c)
		if err != nil {
			return m
		}
		ctr, err := h3.CellToLatLng(c)
		if err != nil {
			return m
		}
		x, y := ae.forward(ctr.Lat, ctr.Lng)
		sx, sxx, sy, syy = sx+x, sxx+x*x, sy+y, syy+y*y
		sxa, sya, sa = sxa+x*a, sya+y*a, sa+a
		n++
	}
	mx, my, ma := sx/n, sy/n, sa/n
	vx, vy := sxx/n-mx*mx, syy/n-my*my
	if vx <= 0 || vy <= 0 {
		return m
	}
	m.bx = (sxa/n - mx*ma) / vx
	m.by = (sya/n - my*ma) / vy
	m.a = ma - m.bx*mx - m.by*my
	return m
}

// seedByCells integrates the distribution over every cell of a grid disk
// around the IPP that reaches within rc of it. Each cell is the template
// hexagon (the IPP cell's shape) scaled to its area and cut into fan
// triangles; the triangles' sub-centroids carry the mean density of a thin
// annulus around them. Cells far from the IPP and from any knot get one
// sample per fan triangle, cells near a knot 9, cells near the IPP 64.
func seedByCells(lat, lng float64, c0 h3.Cell, a0 float64, d radial, rc float64, knots []float64, fixedN int) ([]GridCell, error) {
	ae := newAzimuthal(lat, lng)
	t, err := newHexTemplate(c0)
	if err != nil {
		return nil, err
	}
	res := c0.Resolution()
	am := fitAreas(ae, a0, 0.7*rc, res)
	spacing := math.Sqrt(2 * a0 / math.Sqrt(3))
	// The disk is filled by distance, not by ring count: a grid disk sized
	// from the nominal spacing (a cell at grid distance k lies about
	// k·spacing·√3/2 from the origin cell's centre) holds most cells, and
	// every cell of its outer ring that still reaches the cut disk is
	// flooded outwards, neighbour by neighbour, until no cell reaches it.
	// H3 cells are not uniform: near the rim of a large disk the centres of
	// neighbouring cells can be over 5 % further apart than at the IPP, so
	// no fixed margin on k is safe. The cells reaching a disk (convex,
	// around the origin cell) form a connected set, and any of them beyond
	// ring k is reached from ring k through cells that reach it too, so the
	// flood misses none.
	k := int(math.Ceil((rc+2*t.circumR)/(spacing*math.Sqrt(3)/2)*1.03)) + 1
	disk, err := h3.GridDisk(c0, k)
	if err != nil {
		return nil, fmt.Errorf("geo: grid disk of %s, k=%d: %w", c0, k, err)
	}
	// The two outer rings: the only cells of the disk a neighbour of the
	// outer ring can be.
	outer := make(map[h3.Cell]bool)
	for _, kk := range []int{k - 1, k} {
		ring, err := h3.GridRing(c0, kk)
		if err != nil {
			return nil, fmt.Errorf("geo: grid ring of %s, k=%d: %w", c0, kk, err)
		}
		for _, c := range ring {
			outer[c] = kk == k
		}
	}
	cells := make([]GridCell, 0, int(math.Pi*(rc+spacing)*(rc+spacing)/a0)+16)
	// visit integrates the distribution over cell c and reports whether
	// the cell reaches the cut disk (its circumscribed circle, with 10 %
	// margin for cells shaped unlike the template, meets it).
	visit := func(c h3.Cell) (bool, error) {
		ctr, err := h3.CellToLatLng(c)
		if err != nil {
			return false, fmt.Errorf("geo: centre of %s: %w", c, err)
		}
		cx, cy := ae.forward(ctr.Lat, ctr.Lng)
		r := math.Hypot(cx, cy)
		area := am.at(cx, cy)
		if !(area > 0) {
			area = a0
		}
		s := math.Sqrt(area / a0)
		reach := t.circumR * s
		if r-1.1*reach > rc {
			return false, nil
		}
		sub := subTri1
		switch {
		case fixedN == 3:
			sub = subTri3
		case r < 3*reach:
			sub = subTri8
		default:
			for _, kn := range knots {
				if math.Abs(r-kn) < 1.5*reach {
					sub = subTri3
					break
				}
			}
		}
		n := len(t.vx)
		h := 0.6 * math.Sqrt(area/float64(n*len(sub)))
		var m float64
		for i := range n {
			j := (i + 1) % n
			px, py := t.vx[i]*s, t.vy[i]*s
			qx, qy := t.vx[j]*s, t.vy[j]*s
			var tm float64
			for _, ab := range sub {
				x := cx + ab[0]*px + ab[1]*qx
				y := cy + ab[0]*py + ab[1]*qy
				tm += meanDensity(d, math.Hypot(x, y), h)
			}
			m += tm * t.share[i] * area / float64(len(sub))
		}
		if m > 0 {
			cells = append(cells, GridCell{ID: uint64(c), POA: m, AreaM2: area})
		}
		return true, nil
	}
	var frontier []h3.Cell
	for _, c := range disk {
		if c == 0 {
			continue
		}
		in, err := visit(c)
		if err != nil {
			return nil, err
		}
		if in && outer[c] {
			frontier = append(frontier, c)
		}
	}
	if len(frontier) > 0 {
		seen := make(map[h3.Cell]bool, len(outer))
		for c := range outer {
			seen[c] = true
		}
		for len(frontier) > 0 {
			c := frontier[len(frontier)-1]
			frontier = frontier[:len(frontier)-1]
			nb, err := h3.GridDisk(c, 1)
			if err != nil {
				return nil, fmt.Errorf("geo: neighbours of %s: %w", c, err)
			}
			for _, n := range nb {
				if n == 0 || seen[n] {
					continue
				}
				seen[n] = true
				in, err := visit(n)
				if err != nil {
					return nil, err
				}
				if in {
					frontier = append(frontier, n)
				}
			}
		}
	}
	return cells, nil
}
