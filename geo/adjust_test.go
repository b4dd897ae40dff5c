package geo

import (
	"errors"
	"math"
	"testing"

	"github.com/uber/h3-go/v4"
)

func TestApplyClueDrawsProbability(t *testing.T) {
	p := mustProfile(t, Hiker, Temperate, Mountainous)
	g, err := Seed(ippLat, ippLng, p)
	if err != nil {
		t.Fatal(err)
	}
	// A clue 4 km north of the IPP.
	clat := ippLat + 4000/EarthRadiusM/degToRad
	cc, _ := CellAt(clat, ippLng, 9)
	before := g.POA(cc)
	ipp, _ := CellAt(ippLat, ippLng, 9)
	beforeIPP, beforeRest := g.POA(ipp), g.RestOfWorld
	if err := g.ApplyClue(Clue{Lat: clat, Lng: ippLng, RadiusM: 300, Weight: 20}); err != nil {
		t.Fatal(err)
	}
	checkNormal(t, g, "ApplyClue")
	if after := g.POA(cc); after < 10*before {
		t.Errorf("POA of the clue's cell = %v after, %v before; want ≥ 10× (weight 20)", after, before)
	}
	if g.POA(ipp) >= beforeIPP || g.RestOfWorld >= beforeRest {
		t.Errorf("far cells and rest of world did not lose: IPP %v → %v, rest %v → %v", beforeIPP, g.POA(ipp), beforeRest, g.RestOfWorld)
	}
}

// A clue beyond the grid re-seeds around itself: cells are added there and
// end up with a share of the probability.
func TestApplyClueOutsideGrid(t *testing.T) {
	g, err := SeedFix(ippLat, ippLng, 50)
	if err != nil {
		t.Fatal(err)
	}
	clat := ippLat + 3000/EarthRadiusM/degToRad
	cc, _ := CellAt(clat, ippLng, 9)
	if g.POA(cc) != 0 {
		t.Fatalf("clue cell already in the fix's grid")
	}
	n := len(g.Cells)
	if err := g.ApplyClue(Clue{Lat: clat, Lng: ippLng, RadiusM: 200, Weight: 50}); err != nil {
		t.Fatal(err)
	}
	checkNormal(t, g, "ApplyClue")
	if len(g.Cells) <= n || !(g.POA(cc) > 0) {
		t.Errorf("ApplyClue(outside) left %d cells (was %d), POA(clue cell) = %v; want cells added with probability", len(g.Cells), n, g.POA(cc))
	}
}

func TestSetAndScalePOA(t *testing.T) {
	a, b, c := threeCells(t)
	g := mustGrid(t, map[uint64]float64{a: 0.5, b: 0.3, c: 0.1}, 0.1)
	// Operator: "the gorge in C holds 40 %". The others (0.5, 0.3, 0.1)
	// share the remaining 0.6 in proportion: ×(0.6/0.9).
	if err := g.SetPOA(map[uint64]float64{c: 0.4}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		got, want float64
	}{
		{"A", g.POA(a), 0.5 * 0.6 / 0.9}, {"B", g.POA(b), 0.3 * 0.6 / 0.9},
		{"C", g.POA(c), 0.4}, {"rest", g.RestOfWorld, 0.1 * 0.6 / 0.9},
	} {
		if math.Abs(tc.got-tc.want) > 1e-12 {
			t.Errorf("after SetPOA(C=0.4): POA(%s) = %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	// Doubling A: A′ = 2A/(1 + A).
	pa := g.POA(a)
	if err := g.ScaleCells([]uint64{a}, 2); err != nil {
		t.Fatal(err)
	}
	if got, want := g.POA(a), 2*pa/(1+pa); math.Abs(got-want) > 1e-12 {
		t.Errorf("ScaleCells(A, 2): POA(A) = %v, want %v", got, want)
	}
	checkNormal(t, g, "ScaleCells")
	// A new cell set by the operator is added to the grid.
	ring, _ := h3.GridRing(h3.Cell(a), 2)
	d := uint64(ring[0])
	if err := g.SetPOA(map[uint64]float64{d: 0.05}); err != nil {
		t.Fatal(err)
	}
	if got := g.POA(d); math.Abs(got-0.05) > 1e-12 {
		t.Errorf("SetPOA(new cell 0.05): POA = %v", got)
	}
	checkNormal(t, g, "SetPOA(new)")
	if err := g.SetRestOfWorld(0.2); err != nil || math.Abs(g.RestOfWorld-0.2) > 1e-15 {
		t.Errorf("SetRestOfWorld(0.2) = %v, rest %v", err, g.RestOfWorld)
	}
	checkNormal(t, g, "SetRestOfWorld")
}

func TestAdjustRejects(t *testing.T) {
	a, b, _ := threeCells(t)
	g := mustGrid(t, map[uint64]float64{a: 0.9}, 0.1)
	res8, _ := CellAt(ippLat, ippLng, 8)
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"clue NaN", g.ApplyClue(Clue{Lat: math.NaN(), RadiusM: 10, Weight: 2}), ErrInvalidPoint},
		{"clue radius 0", g.ApplyClue(Clue{Lat: ippLat, Lng: ippLng, Weight: 2}), ErrInvalidArgument},
		{"clue weight 0", g.ApplyClue(Clue{Lat: ippLat, Lng: ippLng, RadiusM: 10}), ErrInvalidArgument},
		{"clue huge", g.ApplyClue(Clue{Lat: ippLat, Lng: ippLng, RadiusM: 900e3, Weight: 2}), ErrTooManyCells},
		{"set >1", g.SetPOA(map[uint64]float64{a: 0.7, b: 0.7}), ErrInvalidArgument},
		{"set NaN", g.SetPOA(map[uint64]float64{a: math.NaN()}), ErrInvalidArgument},
		{"set res 8", g.SetPOA(map[uint64]float64{res8: 0.1}), ErrInvalidCell},
		{"set junk", g.SetPOA(map[uint64]float64{42: 0.1}), ErrInvalidCell},
		{"scale absent", g.ScaleCells([]uint64{b}, 2), ErrCellNotInGrid},
		{"scale -1", g.ScaleCells([]uint64{a}, -1), ErrInvalidArgument},
		{"scale to nothing", func() error { h := mustGrid(t, map[uint64]float64{a: 1}, 0); return h.ScaleCells([]uint64{a}, 0) }(), ErrDegenerate},
		{"rest 1", g.SetRestOfWorld(1), ErrInvalidArgument},
		{"new grid empty", func() error { _, err := NewGrid(9, nil, 1); return err }(), ErrEmptyGrid},
		{"new grid zero", func() error { _, err := NewGrid(9, map[uint64]float64{a: 0}, 0); return err }(), ErrDegenerate},
		{"new grid res", func() error { _, err := NewGrid(8, map[uint64]float64{a: 1}, 0); return err }(), ErrInvalidCell},
	} {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: error = %v, want %v", tc.name, tc.err, tc.want)
		}
	}
	if math.Abs(g.POA(a)-0.9) > 1e-15 {
		t.Errorf("failed adjustments changed the grid: POA(A) = %v, want 0.9", g.POA(a))
	}
}
