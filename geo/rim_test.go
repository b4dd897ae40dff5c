package geo

import (
	"testing"

	"github.com/uber/h3-go/v4"
)

// Every cell whose centre lies within the cut radius must be in a seeded
// grid, wherever the IPP is and at every resolution: the disk of cells is
// filled by distance, not by a ring count estimated from the nominal cell
// spacing (which left 64–91 cells out near 18.1 km in a hiker grid at
// resolution 10, where neighbouring centres are up to 5.5 % further apart).
// The reference set is an independent, generous grid disk (1.3 × the
// nominal ring count) filtered by the haversine distance of H3's centres.
func TestSeedRimHasNoHoles(t *testing.T) {
	hiker := mustProfile(t, Hiker, Temperate, Mountainous)
	const rcM = 18_300.0 // hiker 95 % ring
	type place struct {
		name     string
		lat, lng float64
	}
	equator := place{"equator", 0.3, 20.1}
	rainier := place{"Rainier", ippLat, ippLng}
	oslo := place{"Oslo", 59.91, 10.75}
	arctic := place{"Svalbard", 78.22, 15.65}
	patagonia := place{"Patagonia", -50.94, -73.40}
	for _, tc := range []struct {
		p   place
		res int
	}{
		{equator, 8}, {equator, 9}, {rainier, 8}, {rainier, 9}, {rainier, 10},
		{oslo, 9}, {oslo, 10}, {arctic, 9}, {patagonia, 9},
	} {
		g, err := Seed(tc.p.lat, tc.p.lng, hiker, WithResolution(tc.res))
		if err != nil {
			t.Fatalf("%s res %d: Seed: %v", tc.p.name, tc.res, err)
		}
		in := make(map[uint64]bool, len(g.Cells))
		for _, c := range g.Cells {
			in[c.ID] = true
		}
		c0, err := h3.LatLngToCell(h3.LatLng{Lat: tc.p.lat, Lng: tc.p.lng}, tc.res)
		if err != nil {
			t.Fatal(err)
		}
		edge, err := h3.HexagonEdgeLengthAvgM(tc.res)
		if err != nil {
			t.Fatal(err)
		}
		disk, err := h3.GridDisk(c0, int(1.3*rcM/(1.5*edge))+2)
		if err != nil {
			t.Fatal(err)
		}
		missing, within := 0, 0
		for _, c := range disk {
			ll, err := h3.CellToLatLng(c)
			if err != nil {
				t.Fatal(err)
			}
			if DistanceM(tc.p.lat, tc.p.lng, ll.Lat, ll.Lng) > rcM {
				continue
			}
			within++
			if !in[uint64(c)] {
				missing++
				if missing <= 3 {
					t.Errorf("%s res %d: cell %s, %.0f m from the IPP, is not in the grid", tc.p.name, tc.res, c, DistanceM(tc.p.lat, tc.p.lng, ll.Lat, ll.Lng))
				}
			}
		}
		if missing > 0 {
			t.Errorf("%s res %d: %d of %d cells within %.1f km missing", tc.p.name, tc.res, missing, within, rcM/1000)
		}
		t.Logf("%s res %d: %d cells within %.1f km, grid %d cells", tc.p.name, tc.res, within, rcM/1000, len(g.Cells))
	}
}
