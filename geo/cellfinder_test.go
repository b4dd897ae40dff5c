package geo

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/uber/h3-go/v4"
)

// finderSeeds are places to test the finder around: uniform on the
// sphere, the poles and the antimeridian, the pentagons of each
// resolution, and points along the icosahedron's edges (between
// neighbouring resolution-0 pentagons), where cells cross from one face
// to another and bend.
func finderSeeds(t *testing.T, rng *rand.Rand, resolutions []int) [][2]float64 {
	var seeds [][2]float64
	for range 80 {
		seeds = append(seeds, [2]float64{math.Asin(2*rng.Float64()-1) * 180 / math.Pi, 360*rng.Float64() - 180})
	}
	seeds = append(seeds, [2]float64{90, 0}, [2]float64{-90, 0}, [2]float64{0, 180}, [2]float64{10, -180},
		[2]float64{89.999, 45}, [2]float64{-45, 179.9999})
	for _, res := range append([]int{0}, resolutions...) {
		ps, err := h3.Pentagons(res)
		if err != nil {
			t.Fatalf("h3.Pentagons(%d): %v", res, err)
		}
		if res > 0 {
			for _, p := range ps {
				ll, _ := p.LatLng()
				seeds = append(seeds, [2]float64{ll.Lat, ll.Lng})
			}
			continue
		}
		// The 12 resolution-0 pentagons sit on the icosahedron's vertices;
		// neighbours are 63.4° apart.
		for i, a := range ps {
			for _, b := range ps[i+1:] {
				la, _ := a.LatLng()
				lb, _ := b.LatLng()
				va, vb := unitVector(la.Lat, la.Lng), unitVector(lb.Lat, lb.Lng)
				if math.Acos(va.dot(vb))*180/math.Pi > 64 {
					continue
				}
				for k := 1; k < 10; k++ {
					s := float64(k) / 10
					v := vec3{va.x*(1-s) + vb.x*s, va.y*(1-s) + vb.y*s, va.z*(1-s) + vb.z*s}
					v = v.scale(1 / v.norm())
					seeds = append(seeds, [2]float64{math.Asin(v.z) * 180 / math.Pi, math.Atan2(v.y, v.x) * 180 / math.Pi})
				}
			}
		}
	}
	return seeds
}

// offset moves lat/lng by north and east metres (wrapping longitude,
// clamping latitude).
func offset(lat, lng, north, east float64) (float64, float64) {
	const mPerDeg = 111_195.0
	lat2 := math.Max(-90, math.Min(90, lat+north/mPerDeg))
	lng2 := lng + east/(mPerDeg*math.Max(math.Cos(lat*math.Pi/180), 1e-3))
	lng2 = math.Mod(lng2+540, 360) - 180
	return lat2, lng2
}

// TestCellFinderAgreesWithH3: around every seed, at three resolutions,
// the finder gives H3's cell for points scattered over a few cells, for
// points a walk apart, and for points on and a hair off every vertex and
// edge midpoint of the seed's cell; and walks are mostly answered
// without H3.
func TestCellFinderAgreesWithH3(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 9))
	resolutions := []int{7, 8, 9, 10, 15} // class III and II; 15: cells smaller than the margin, all to H3
	seeds := finderSeeds(t, rng, resolutions)
	walked, fast := 0, 0
	for _, res := range resolutions {
		edgeM, err := h3.HexagonEdgeLengthAvgM(res)
		if err != nil {
			t.Fatalf("h3.HexagonEdgeLengthAvgM(%d): %v", res, err)
		}
		for _, s := range seeds {
			var f CellFinder
			check := func(lat, lng float64, what string) {
				t.Helper()
				got, err := f.CellAt(lat, lng, res)
				want, werr := CellAt(lat, lng, res)
				if got != want || (err == nil) != (werr == nil) {
					t.Fatalf("res %d, %s at %.12f,%.12f (seed %v): finder %x (%v), H3 %x (%v)", res, what, lat, lng, s, got, err, want, werr)
				}
			}
			check(s[0], s[1], "seed")
			for range 60 { // scattered over the seed's cell and its neighbours
				r, a := 2.5*edgeM*math.Sqrt(rng.Float64()), 2*math.Pi*rng.Float64()
				lat, lng := offset(s[0], s[1], r*math.Cos(a), r*math.Sin(a))
				check(lat, lng, "scattered point")
			}
			lat, lng := s[0], s[1]
			for range 60 { // a walk, a twentieth of an edge a step
				a := 2 * math.Pi * rng.Float64()
				lat, lng = offset(lat, lng, edgeM/20*math.Cos(a), edgeM/20*math.Sin(a))
				if f.res == res && len(f.edges) > 0 && f.inside(unitVector(lat, lng)) {
					fast++
				}
				walked++
				check(lat, lng, "walk")
			}
			c, _ := CellAt(s[0], s[1], res)
			b, err := h3.Cell(c).Boundary()
			if err != nil {
				t.Fatalf("boundary of %x: %v", c, err)
			}
			for i, v := range b {
				w := b[(i+1)%len(b)]
				// The vertex, and the edge's midpoint on its great circle.
				m := unitVector(v.Lat, v.Lng)
				n := unitVector(w.Lat, w.Lng)
				m = vec3{m.x + n.x, m.y + n.y, m.z + n.z}
				m = m.scale(1 / m.norm())
				mid := [2]float64{math.Asin(m.z) * 180 / math.Pi, math.Atan2(m.y, m.x) * 180 / math.Pi}
				for _, p := range [][2]float64{{v.Lat, v.Lng}, mid} {
					for _, d := range []float64{0, 1e-9, 1e-7, 1e-5} {
						for _, dir := range [][2]float64{{1, 0}, {-1, 0}, {1, 1}, {-1, -1}} {
							lng := math.Mod(p[1]+d*dir[1]+540, 360) - 180
							check(math.Max(-90, math.Min(90, p[0]+d*dir[0])), lng, "near a vertex or an edge")
							if f.cell != c || f.res != res {
								f.learn(c, res) // back to the seed's cell, to test its edges
							}
						}
					}
				}
			}
		}
	}
	if frac := float64(fast) / float64(walked); frac < 0.7 {
		t.Errorf("walks: %d of %d points answered without H3 (%.2f), want most", fast, walked, frac)
	}
}

func TestCellFinderRefusesWhatCellAtRefuses(t *testing.T) {
	var f CellFinder
	if _, err := f.CellAt(46.5, 8, 9); err != nil {
		t.Fatalf("CellAt: %v", err)
	}
	for _, p := range [][2]float64{{math.NaN(), 8}, {91, 8}, {46.5, 181}, {46.5, math.Inf(1)}} {
		if _, err := f.CellAt(p[0], p[1], 9); err == nil {
			t.Errorf("finder.CellAt(%v, %v) = nil error, want ErrInvalidPoint", p[0], p[1])
		}
	}
	if _, err := f.CellAt(46.5, 8, 16); err == nil {
		t.Errorf("finder.CellAt(res 16) = nil error, want ErrInvalidResolution")
	}
	// Another resolution is another cell.
	c9, _ := f.CellAt(46.5, 8, 9)
	c8, _ := f.CellAt(46.5, 8, 8)
	if want, _ := CellAt(46.5, 8, 8); c8 != want || c8 == c9 {
		t.Errorf("finder at res 8 after res 9 = %x, want %x", c8, want)
	}
}

// BenchmarkCellAtWalk: a batch of 10 fixes a second apart from a walking
// phone, through CellAt and through a CellFinder per batch.
func BenchmarkCellAtWalk(b *testing.B) {
	pts := make([][2]float64, 10)
	lat, lng := 46.5, 8.0
	for i := range pts {
		lat, lng = offset(lat, lng, 1.0, 1.0)
		pts[i] = [2]float64{lat, lng}
	}
	b.Run("CellAt", func(b *testing.B) {
		for b.Loop() {
			for _, p := range pts {
				if _, err := CellAt(p[0], p[1], 9); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("CellFinder per batch", func(b *testing.B) {
		for b.Loop() {
			var f CellFinder
			for _, p := range pts {
				if _, err := f.CellAt(p[0], p[1], 9); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
