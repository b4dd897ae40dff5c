package geo

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// destination returns the point at distance d (m) and bearing b (rad) from
// lat/lng on the sphere.
func destination(lat, lng, d, b float64) (float64, float64) {
	p1, l1 := lat*degToRad, lng*degToRad
	a := d / EarthRadiusM
	p2 := math.Asin(math.Sin(p1)*math.Cos(a) + math.Cos(p1)*math.Sin(a)*math.Cos(b))
	l2 := l1 + math.Atan2(math.Sin(b)*math.Sin(a)*math.Cos(p1), math.Cos(a)-math.Sin(p1)*math.Sin(p2))
	return p2 / degToRad, wrapDeg(l2 / degToRad)
}

// Every point within the radius falls in one of the cells CellsNear
// returns, wherever on Earth (pentagons and the poles included) and for
// any radius up to the maximum.
func TestCellsNearContainsTheDisk(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	centres := [][2]float64{{46.59, 7.91}, {30.25, 120.17}, {89.5, 0}, {-89.9, 45}, {0, 179.99}, {64.7, 10.53} /* near a pentagon */}
	for range 40 {
		centres = append(centres, [2]float64{rng.Float64()*170 - 85, rng.Float64()*360 - 180})
	}
	for _, c := range centres {
		for _, r := range []float64{0, 1_000, 50_000, 120_000, MaxNearRadiusM} {
			cells, err := CellsNear(c[0], c[1], r)
			if err != nil {
				t.Fatalf("CellsNear(%v, %v) = %v", c, r, err)
			}
			slices.Sort(cells)
			for range 200 {
				d := r * math.Sqrt(rng.Float64())
				lat, lng := destination(c[0], c[1], d, rng.Float64()*2*math.Pi)
				if got := DistanceM(c[0], c[1], lat, lng); got > r+1 {
					t.Fatalf("test point %v m away, want within %v", got, r)
				}
				cell, err := IndexCell(lat, lng)
				if err != nil {
					t.Fatal(err)
				}
				if _, ok := slices.BinarySearch(cells, cell); !ok {
					t.Fatalf("CellsNear(%v, %v m) misses the cell of %v,%v at %.0f m", c, r, lat, lng, d)
				}
			}
		}
	}
}

func TestCellsNearRefuses(t *testing.T) {
	for _, r := range []float64{-1, math.NaN(), MaxNearRadiusM + 1, math.Inf(1)} {
		if _, err := CellsNear(46, 7, r); err == nil {
			t.Errorf("CellsNear(radius %v) = nil error, want refused", r)
		}
	}
	if _, err := CellsNear(91, 7, 10); err == nil {
		t.Errorf("CellsNear(lat 91) = nil error, want refused")
	}
}

func TestTravelSeconds(t *testing.T) {
	if got := TravelSeconds(1000, 10); math.Abs(got-130) > 1e-9 {
		t.Errorf("TravelSeconds(1000 m, 10 m/s) = %v, want 130", got)
	}
	if got := TravelSeconds(1000, 0); !math.IsInf(got, 1) {
		t.Errorf("TravelSeconds(1000 m, 0) = %v, want +Inf", got)
	}
}
