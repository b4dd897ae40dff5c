package geo

import (
	"math"
	"testing"

	"github.com/uber/h3-go/v4"
)

// The published quartiles make the density jump up at a ring for some rows
// (the next ring is narrower than the previous one): mountain bikers in
// temperate mountains are 25 % within 3.1 km but another 25 % within the
// next 0.9 km. The grid must reproduce the jump: the mean density of the
// cells whose centres lie in a band just inside and just outside the ring
// matches the analytic (F(b) − F(a)) / π(b² − a²) of the piecewise-linear
// distance distribution, to 5 %.
func TestSeedReproducesDensityJumps(t *testing.T) {
	for _, tc := range []struct {
		c    Category
		e    Ecoregion
		tr   Terrain
		ring int
		res  int
	}{
		{MountainBiker, Temperate, Mountainous, 0, 9},
		{Hiker, Dry, Flat, 0, 10},
		{Camper, Temperate, Mountainous, 1, 10},
		{Runner, Temperate, AllTerrains, 1, 10},
	} {
		p := mustProfile(t, tc.c, tc.e, tc.tr)
		g, err := Seed(ippLat, ippLng, p, WithResolution(tc.res))
		if err != nil {
			t.Fatal(err)
		}
		pw, _ := profileCDF(p, DefaultCut)
		R := p.DistanceKm[tc.ring] * 1000
		prev := 0.0
		if tc.ring > 0 {
			prev = p.DistanceKm[tc.ring-1] * 1000
		}
		w := 0.25 * min(R-prev, 1000*p.DistanceKm[tc.ring+1]-R) // bands of a quarter of the narrower ring
		var dens [2]float64
		for side, band := range [2][2]float64{{R - 2*w, R - w}, {R + w, R + 2*w}} {
			var m, a float64
			for _, c := range g.Cells {
				ll, _ := h3.CellToLatLng(h3.Cell(c.ID))
				if d := DistanceM(ippLat, ippLng, ll.Lat, ll.Lng); d >= band[0] && d < band[1] {
					m += c.POA
					a += c.AreaM2
				}
			}
			got := m / a
			want := (pw.cdf(band[1]) - pw.cdf(band[0])) / (math.Pi * (band[1]*band[1] - band[0]*band[0]))
			if math.Abs(got/want-1) > 0.05 {
				t.Errorf("%s: density %.0f–%.0f m = %.3g /m², want %.3g", p.Name(), band[0], band[1], got, want)
			}
			dens[side] = got
		}
		if !(dens[1] > dens[0]) {
			t.Errorf("%s: density %.3g inside the %.1f km ring, %.3g outside: want a jump up", p.Name(), dens[0], R/1000, dens[1])
		}
		t.Logf("%s: density ×%.2f across the %.1f km ring", p.Name(), dens[1]/dens[0], R/1000)
	}
}
