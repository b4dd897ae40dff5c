package geo

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/uber/h3-go/v4"
)

// threeCells returns three neighbouring res-9 cells near the IPP.
func threeCells(tb testing.TB) (a, b, c uint64) {
	tb.Helper()
	ca, err := h3.LatLngToCell(h3.LatLng{Lat: ippLat, Lng: ippLng}, 9)
	if err != nil {
		tb.Fatal(err)
	}
	ring, err := h3.GridRing(ca, 1)
	if err != nil {
		tb.Fatal(err)
	}
	return uint64(ca), uint64(ring[0]), uint64(ring[1])
}

func mustGrid(tb testing.TB, poa map[uint64]float64, rest float64) *Grid {
	tb.Helper()
	g, err := NewGrid(9, poa, rest)
	if err != nil {
		tb.Fatalf("NewGrid: %v", err)
	}
	return g
}

// A Bayes update worked by hand.
//
//	prior:  A 0.5, B 0.3, C 0.1, rest of world 0.1
//	search: coverage ln 2 in A (POD 1 − ½ = 0.5), ln 4 in B (POD 0.75),
//	        nothing in C; the rest of world has POD 0
//	POS   = 0.5·0.5 + 0.3·0.75 = 0.25 + 0.225 = 0.475
//	missed: A 0.5·0.5 = 0.25, B 0.3·0.25 = 0.075, C 0.1, rest 0.1
//	Σ     = 0.525 (= 1 − POS)
//	after:  A 0.25/0.525 = 10/21, B 0.075/0.525 = 1/7 = 3/21,
//	        C 0.1/0.525 = 4/21, rest 4/21
//
// A second search of A with POD 0.5 (coverage ln 2 again) then gives
//
//	POS₂  = 10/21 · 0.5 = 5/21
//	after:  A (5/21)/(16/21) = 5/16, B 3/16, C 4/16, rest 4/16
//	cumulative POS = 1 − (1 − 0.475)(1 − 5/21) = 1 − 0.525·16/21 = 0.6
//	A's coverage 2 ln 2, cumulative POD 1 − ¼ = 0.75 = 1 − (1−0.5)(1−0.5)
func TestApplySearchHandWorked(t *testing.T) {
	a, b, c := threeCells(t)
	g := mustGrid(t, map[uint64]float64{a: 0.5, b: 0.3, c: 0.1}, 0.1)
	res, err := g.ApplySearch(map[uint64]float64{a: math.Ln2, b: 2 * math.Ln2})
	if err != nil {
		t.Fatal(err)
	}
	const tol = 1e-12
	check := func(name string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > tol {
			t.Errorf("%s = %.15f, want %.15f", name, got, want)
		}
	}
	check("POS", res.POS, 0.475)
	check("POA(A)", g.POA(a), 10.0/21)
	check("POA(B)", g.POA(b), 3.0/21)
	check("POA(C)", g.POA(c), 4.0/21)
	check("RestOfWorld", g.RestOfWorld, 4.0/21)
	if res.Cells != 2 || res.Outside != 0 {
		t.Errorf("ApplySearch cells/outside = %d/%d, want 2/0", res.Cells, res.Outside)
	}
	res, err = g.ApplySearch(map[uint64]float64{a: math.Ln2})
	if err != nil {
		t.Fatal(err)
	}
	check("POS₂", res.POS, 5.0/21)
	check("POA(A)₂", g.POA(a), 5.0/16)
	check("POA(B)₂", g.POA(b), 3.0/16)
	check("POA(C)₂", g.POA(c), 4.0/16)
	check("RestOfWorld₂", g.RestOfWorld, 4.0/16)
	check("CumulativePOS", res.CumulativePOS, 0.6)
	i, _ := g.Index(a)
	check("POD(A)", g.Cells[i].POD(), 0.75)
	if err := g.Validate(); err != nil {
		t.Errorf("Validate() = %v", err)
	}
}

// Applying two searches in turn equals applying their summed coverage.
func TestApplySearchComposes(t *testing.T) {
	a, b, c := threeCells(t)
	g1 := mustGrid(t, map[uint64]float64{a: 0.2, b: 0.5, c: 0.2}, 0.1)
	g2 := g1.Clone()
	if _, err := g1.ApplySearch(map[uint64]float64{a: 0.3, b: 1.1}); err != nil {
		t.Fatal(err)
	}
	if _, err := g1.ApplySearch(map[uint64]float64{b: 0.4, c: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := g2.ApplySearch(map[uint64]float64{a: 0.3, b: 1.5, c: 2}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []uint64{a, b, c} {
		if math.Abs(g1.POA(id)-g2.POA(id)) > 1e-14 {
			t.Errorf("POA(%s): two searches %v, one summed %v", CellString(id), g1.POA(id), g2.POA(id))
		}
	}
	if math.Abs(g1.CumulativePOS-g2.CumulativePOS) > 1e-14 {
		t.Errorf("CumulativePOS: two searches %v, one summed %v", g1.CumulativePOS, g2.CumulativePOS)
	}
}

func TestApplySearchRejects(t *testing.T) {
	a, b, _ := threeCells(t)
	g := mustGrid(t, map[uint64]float64{a: 1}, 0)
	before := g.Clone()
	for _, cov := range []map[uint64]float64{{a: math.NaN()}, {a: -1}, {a: math.Inf(1)}} {
		if _, err := g.ApplySearch(cov); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("ApplySearch(%v) error = %v, want %v", cov, err, ErrInvalidArgument)
		}
	}
	// Everything in one cell, no rest of world, searched with coverage so
	// large that nothing is left in floating point.
	if _, err := g.ApplySearch(map[uint64]float64{a: 1e6}); !errors.Is(err, ErrDegenerate) {
		t.Errorf("ApplySearch(total search) error = %v, want %v", err, ErrDegenerate)
	}
	if g.POA(a) != before.POA(a) || g.Cells[0].Coverage != 0 {
		t.Errorf("failed ApplySearch changed the grid: %+v", g.Cells)
	}
	res, err := g.ApplySearch(map[uint64]float64{b: 3})
	if err != nil || res.Outside != 1 || res.POS != 0 {
		t.Errorf("ApplySearch(outside) = %+v, %v; want POS 0, 1 outside", res, err)
	}
}

// checkNormal fails unless the grid is valid: probabilities finite,
// non-negative, summing to 1 within NormTolerance.
func checkNormal(tb testing.TB, g *Grid, step string) {
	tb.Helper()
	if err := g.Validate(); err != nil {
		tb.Fatalf("after %s: Validate() = %v (total %v)", step, err, g.Total())
	}
}

// randomOps applies n random operations (searches, clues, operator
// settings and scalings) drawn from r to g, checking normalisation after
// each.
func randomOps(tb testing.TB, g *Grid, r *rand.Rand, n int) {
	tb.Helper()
	for k := range n {
		switch op := r.IntN(10); {
		case op < 6:
			cov := map[uint64]float64{}
			for range 1 + r.IntN(8) {
				cov[g.Cells[r.IntN(len(g.Cells))].ID] = r.ExpFloat64() * 0.8
			}
			if _, err := g.ApplySearch(cov); err != nil && !errors.Is(err, ErrDegenerate) {
				tb.Fatalf("op %d ApplySearch: %v", k, err)
			}
			checkNormal(tb, g, "ApplySearch")
		case op < 7:
			c := g.Cells[r.IntN(len(g.Cells))]
			ll, _ := h3.CellToLatLng(h3.Cell(c.ID))
			clue := Clue{Lat: ll.Lat, Lng: ll.Lng, RadiusM: 50 + r.Float64()*400, Weight: 0.2 + r.Float64()*10}
			if err := g.ApplyClue(clue); err != nil && !errors.Is(err, ErrDegenerate) {
				tb.Fatalf("op %d ApplyClue(%+v): %v", k, clue, err)
			}
			checkNormal(tb, g, "ApplyClue")
		case op < 8:
			cells := []uint64{g.Cells[r.IntN(len(g.Cells))].ID, g.Cells[r.IntN(len(g.Cells))].ID}
			if err := g.ScaleCells(cells, r.Float64()*3); err != nil && !errors.Is(err, ErrDegenerate) {
				tb.Fatalf("op %d ScaleCells: %v", k, err)
			}
			checkNormal(tb, g, "ScaleCells")
		case op < 9:
			v := map[uint64]float64{g.Cells[r.IntN(len(g.Cells))].ID: r.Float64() * 0.3}
			if err := g.SetPOA(v); err != nil {
				tb.Fatalf("op %d SetPOA(%v): %v", k, v, err)
			}
			checkNormal(tb, g, "SetPOA")
		default:
			if err := g.SetRestOfWorld(r.Float64() * 0.2); err != nil && !errors.Is(err, ErrDegenerate) {
				tb.Fatalf("op %d SetRestOfWorld: %v", k, err)
			}
			checkNormal(tb, g, "SetRestOfWorld")
		}
	}
}

// Normalisation holds after thousands of random updates (fixed seeds).
func TestNormalisationProperty(t *testing.T) {
	p := mustProfile(t, Dementia, Temperate, Mountainous)
	base, err := Seed(ippLat, ippLng, p) // ~2,400 cells
	if err != nil {
		t.Fatal(err)
	}
	n := 3000
	if testing.Short() {
		n = 500
	}
	for seed := uint64(1); seed <= 3; seed++ {
		g := base.Clone()
		randomOps(t, g, rand.New(rand.NewPCG(seed, 0x5eed)), n)
		if g.CumulativePOS < 0 || g.CumulativePOS > 1 {
			t.Errorf("seed %d: CumulativePOS = %v, want within [0, 1]", seed, g.CumulativePOS)
		}
	}
}

// FuzzGridUpdates drives random operations from fuzzed seeds on a small
// grid: probabilities must stay finite, non-negative and normalised.
func FuzzGridUpdates(f *testing.F) {
	f.Add(uint64(1), uint64(2), uint8(40))
	f.Add(uint64(0), uint64(0), uint8(255))
	f.Add(uint64(1<<63), uint64(7), uint8(3))
	base, err := SeedFix(ippLat, ippLng, 600, WithRestOfWorld(0.1))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s1, s2 uint64, n uint8) {
		g := base.Clone()
		randomOps(t, g, rand.New(rand.NewPCG(s1, s2)), int(n))
	})
}

// FuzzApplySearch feeds arbitrary coverage values: ApplySearch must either
// reject them or keep the grid normalised, never panic.
func FuzzApplySearch(f *testing.F) {
	f.Add(0.5, 1.0, 0.0)
	f.Add(math.Inf(1), -1.0, math.NaN())
	f.Add(1e308, 1e-308, 700.0)
	a, b, c := threeCells(f)
	f.Fuzz(func(t *testing.T, ca, cb, cc float64) {
		g := mustGrid(t, map[uint64]float64{a: 0.4, b: 0.4, c: 0.1}, 0.1)
		before := g.Clone()
		_, err := g.ApplySearch(map[uint64]float64{a: ca, b: cb, c: cc})
		if err != nil {
			if !errors.Is(err, ErrInvalidArgument) && !errors.Is(err, ErrDegenerate) {
				t.Fatalf("ApplySearch(%v, %v, %v) error = %v", ca, cb, cc, err)
			}
			for i := range g.Cells {
				if g.Cells[i] != before.Cells[i] {
					t.Fatalf("failed ApplySearch changed cell %d: %+v, was %+v", i, g.Cells[i], before.Cells[i])
				}
			}
			return
		}
		checkNormal(t, g, "ApplySearch")
	})
}
