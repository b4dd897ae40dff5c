package geo

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/uber/h3-go/v4"
)

func mustCenter(tb testing.TB, c h3.Cell) h3.LatLng {
	tb.Helper()
	ll, err := h3.CellToLatLng(c)
	if err != nil {
		tb.Fatalf("CellToLatLng(%s): %v", c, err)
	}
	return ll
}

// Plane geometry of a hexagon tiling: the line joining the centres of two
// adjacent cells crosses their shared edge at its midpoint, so a segment
// from the centre of A through neighbour B to the centre of C (the next
// cell on the same line) lies d/2 in A, d in B and d/2 in C, d being the
// centre-to-centre distance. H3 cells are close to, not exactly, regular
// hexagons: tolerance 1 % of d.
func TestSegmentLengthsAcrossNeighbours(t *testing.T) {
	a, err := h3.LatLngToCell(h3.LatLng{Lat: ippLat, Lng: ippLng}, 9)
	if err != nil {
		t.Fatal(err)
	}
	ring, err := h3.GridRing(a, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range ring {
		ija, err := h3.CellToLocalIJ(a, a)
		if err != nil {
			t.Fatal(err)
		}
		ijb, err := h3.CellToLocalIJ(a, b)
		if err != nil {
			t.Fatal(err)
		}
		c, err := h3.LocalIJToCell(a, h3.CoordIJ{I: 2*ijb.I - ija.I, J: 2*ijb.J - ija.J})
		if err != nil {
			t.Fatal(err)
		}
		pa, pb, pc := mustCenter(t, a), mustCenter(t, b), mustCenter(t, c)
		lengths := map[uint64]float64{}
		total, err := SegmentLengths(pa.Lat, pa.Lng, pc.Lat, pc.Lng, 9, lengths)
		if err != nil {
			t.Fatal(err)
		}
		if want := DistanceM(pa.Lat, pa.Lng, pc.Lat, pc.Lng); math.Abs(total-want) > 1e-9*want {
			t.Errorf("SegmentLengths total = %v, want haversine %v", total, want)
		}
		dab := DistanceM(pa.Lat, pa.Lng, pb.Lat, pb.Lng)
		dbc := DistanceM(pb.Lat, pb.Lng, pc.Lat, pc.Lng)
		d := (dab + dbc) / 2
		want := map[uint64]float64{uint64(a): dab / 2, uint64(b): (dab + dbc) / 2, uint64(c): dbc / 2}
		if len(lengths) != 3 {
			t.Errorf("A→C via %s crosses %d cells, want 3: %v", b, len(lengths), lengths)
		}
		for id, w := range want {
			if got := lengths[id]; math.Abs(got-w) > 0.01*d {
				t.Errorf("length in %s = %.2f m, want %.2f m ± %.2f", CellString(id), got, w, 0.01*d)
			}
		}
	}
}

// slerp returns the point a fraction f along the great circle from a to b,
// by interpolating unit vectors: independent of the projections in geo.
func slerp(lat1, lng1, lat2, lng2, f float64) (float64, float64) {
	toV := func(lat, lng float64) [3]float64 {
		la, lo := lat*math.Pi/180, lng*math.Pi/180
		return [3]float64{math.Cos(la) * math.Cos(lo), math.Cos(la) * math.Sin(lo), math.Sin(la)}
	}
	va, vb := toV(lat1, lng1), toV(lat2, lng2)
	dot := va[0]*vb[0] + va[1]*vb[1] + va[2]*vb[2]
	om := math.Acos(math.Min(1, dot))
	s := math.Sin(om)
	ka, kb := math.Sin((1-f)*om)/s, math.Sin(f*om)/s
	v := [3]float64{ka*va[0] + kb*vb[0], ka*va[1] + kb*vb[1], ka*va[2] + kb*vb[2]}
	return math.Asin(v[2]) * 180 / math.Pi, math.Atan2(v[1], v[0]) * 180 / math.Pi
}

// Brute force reference: drop 20,000 points evenly along the great circle
// into cells with H3 and count. The per-cell lengths from the exact
// boundary intersection must agree to within two sample steps.
func TestSegmentLengthsMatchDenseSampling(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 9))
	for k := range 20 {
		lat1 := ippLat + (r.Float64()-0.5)*0.02
		lng1 := ippLng + (r.Float64()-0.5)*0.02
		dist := 200 + r.Float64()*2800
		brg := r.Float64() * 2 * math.Pi
		lat2 := lat1 + dist*math.Cos(brg)/EarthRadiusM/degToRad
		lng2 := lng1 + dist*math.Sin(brg)/(EarthRadiusM*math.Cos(lat1*degToRad))/degToRad
		got := map[uint64]float64{}
		total, err := SegmentLengths(lat1, lng1, lat2, lng2, 9, got)
		if err != nil {
			t.Fatal(err)
		}
		const n = 20000
		step := total / n
		want := map[uint64]float64{}
		for i := range n {
			la, lo := slerp(lat1, lng1, lat2, lng2, (float64(i)+0.5)/n)
			c, err := h3.LatLngToCell(h3.LatLng{Lat: la, Lng: lo}, 9)
			if err != nil {
				t.Fatal(err)
			}
			want[uint64(c)] += step
		}
		sum := 0.0
		for id, w := range want {
			if g := got[id]; math.Abs(g-w) > 2*step+1e-6 {
				t.Errorf("segment %d (%.0f m): length in %s = %.3f m, want %.3f m ± %.3f", k, total, CellString(id), g, w, 2*step)
			}
		}
		for id, g := range got {
			sum += g
			if _, ok := want[id]; !ok && g > 2*step {
				t.Errorf("segment %d: %.3f m in %s, which no sample hit", k, g, CellString(id))
			}
		}
		hav := DistanceM(lat1, lng1, lat2, lng2)
		if math.Abs(sum-hav) > 0.005*hav {
			t.Errorf("segment %d: Σ per-cell lengths = %.3f m, want haversine %.3f m ± 0.5 %%", k, sum, hav)
		}
	}
}

// A segment wholly inside one cell credits exactly its length to it.
func TestSegmentLengthsInsideOneCell(t *testing.T) {
	c, _ := h3.LatLngToCell(h3.LatLng{Lat: ippLat, Lng: ippLng}, 9)
	p := mustCenter(t, c)
	lat2, lng2 := p.Lat+40/EarthRadiusM/degToRad, p.Lng+25/(EarthRadiusM*math.Cos(p.Lat*degToRad))/degToRad
	lengths := map[uint64]float64{}
	if _, err := SegmentLengths(p.Lat, p.Lng, lat2, lng2, 9, lengths); err != nil {
		t.Fatal(err)
	}
	want := DistanceM(p.Lat, p.Lng, lat2, lng2)
	if got := lengths[uint64(c)]; got != want || len(lengths) != 1 {
		t.Errorf("SegmentLengths(inside %s) = %v, want {%s: %v}", c, lengths, c, want)
	}
}

func TestSegmentLengthsRejects(t *testing.T) {
	m := map[uint64]float64{}
	for _, tc := range []struct {
		lat1, lng1, lat2, lng2 float64
		res                    int
		lengths                map[uint64]float64
		want                   error
	}{
		{math.NaN(), 0, 0, 0, 9, m, ErrInvalidPoint},
		{0, 0, 0, math.Inf(-1), 9, m, ErrInvalidPoint},
		{0, 0, 0, 0.001, 16, m, ErrInvalidResolution},
		{0, 0, 0, 0.001, 9, nil, ErrInvalidArgument},
		{0, 0, 0, 90, 9, m, ErrInvalidArgument}, // 10,000 km in one step
	} {
		if _, err := SegmentLengths(tc.lat1, tc.lng1, tc.lat2, tc.lng2, tc.res, tc.lengths); !errors.Is(err, tc.want) {
			t.Errorf("SegmentLengths(%v,%v → %v,%v, %d) error = %v, want %v", tc.lat1, tc.lng1, tc.lat2, tc.lng2, tc.res, err, tc.want)
		}
	}
}

func TestCoverageAndPOD(t *testing.T) {
	c, _ := h3.LatLngToCell(h3.LatLng{Lat: ippLat, Lng: ippLng}, 9)
	area, _ := h3.CellAreaM2(c)
	// Sweeping a cell once over its whole area: length = area / width
	// gives coverage 1 and POD 1 − 1/e.
	cov, err := Coverage(map[uint64]float64{uint64(c): area / 20}, 20)
	if err != nil {
		t.Fatal(err)
	}
	if got := cov[uint64(c)]; math.Abs(got-1) > 1e-12 {
		t.Errorf("Coverage(area/W, W) = %v, want 1", got)
	}
	if got, want := PODFromCoverage(1), 1-1/math.E; math.Abs(got-want) > 1e-15 {
		t.Errorf("PODFromCoverage(1) = %v, want %v", got, want)
	}
	// Two searches of POD 0.5 and 0.6: 1 − 0.5·0.4 = 0.8; the same as
	// adding their coverages.
	got, err := CumulativePOD(0.5, 0.6)
	if err != nil || math.Abs(got-0.8) > 1e-15 {
		t.Errorf("CumulativePOD(0.5, 0.6) = %v, %v, want 0.8", got, err)
	}
	sum := PODFromCoverage(-math.Log(0.5) - math.Log(0.4))
	if math.Abs(sum-0.8) > 1e-15 {
		t.Errorf("PODFromCoverage(c₁+c₂) = %v, want 0.8", sum)
	}
	if _, err := CumulativePOD(0.5, 1.5); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("CumulativePOD(1.5) error = %v, want %v", err, ErrInvalidArgument)
	}
	if _, err := Coverage(map[uint64]float64{uint64(c): 1}, 0); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("Coverage(W=0) error = %v, want %v", err, ErrInvalidArgument)
	}
	if _, err := Coverage(map[uint64]float64{12345: 1}, 10); !errors.Is(err, ErrInvalidCell) {
		t.Errorf("Coverage(bad cell) error = %v, want %v", err, ErrInvalidCell)
	}
	if _, err := Coverage(map[uint64]float64{uint64(c): math.NaN()}, 10); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("Coverage(NaN length) error = %v, want %v", err, ErrInvalidArgument)
	}
	sw := SweepWidths{"foot": 15}
	if w, err := sw.Of("foot"); err != nil || w != 15 {
		t.Errorf("SweepWidths.Of(foot) = %v, %v, want 15", w, err)
	}
	if _, err := sw.Of("drone"); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("SweepWidths.Of(drone) error = %v, want %v", err, ErrInvalidArgument)
	}
}
