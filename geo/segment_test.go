package geo

import (
	"errors"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/uber/h3-go/v4"
)

func mustHikerGrid(tb testing.TB) *Grid {
	tb.Helper()
	g, err := Seed(ippLat, ippLng, mustProfile(tb, Hiker, Temperate, Mountainous))
	if err != nil {
		tb.Fatal(err)
	}
	return g
}

// connected reports whether the cells form one piece under H3 adjacency.
func connected(tb testing.TB, cells []uint64) bool {
	tb.Helper()
	in := make(map[uint64]bool, len(cells))
	for _, c := range cells {
		in[c] = true
	}
	seen := map[uint64]bool{cells[0]: true}
	queue := []uint64{cells[0]}
	for len(queue) > 0 {
		c := queue[0]
		queue = queue[1:]
		ring, err := h3.GridRing(h3.Cell(c), 1)
		if err != nil {
			tb.Fatal(err)
		}
		for _, n := range ring {
			if in[uint64(n)] && !seen[uint64(n)] {
				seen[uint64(n)] = true
				queue = append(queue, uint64(n))
			}
		}
	}
	return len(seen) == len(cells)
}

func TestSegmentsPartition(t *testing.T) {
	g := mustHikerGrid(t)
	const target = 2e6 // 2 km², about 21 cells
	segs, err := Segments(g, SegmentOptions{TargetAreaM2: target})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]int{}
	var poa float64
	sized := 0
	for i, s := range segs {
		if s.ID != i+1 {
			t.Errorf("segment %d has ID %d, want %d", i, s.ID, i+1)
		}
		if i > 0 && s.DensityPerKm2() > segs[i-1].DensityPerKm2() {
			t.Errorf("segment %d denser (%v) than segment %d (%v): not ranked", s.ID, s.DensityPerKm2(), segs[i-1].ID, segs[i-1].DensityPerKm2())
		}
		if !slices.IsSorted(s.Cells) {
			t.Errorf("segment %d cells not sorted", s.ID)
		}
		for _, c := range s.Cells {
			if prev, ok := seen[c]; ok {
				t.Errorf("cell %s in segments %d and %d", CellString(c), prev, s.ID)
			}
			seen[c] = s.ID
		}
		if !connected(t, s.Cells) {
			t.Errorf("segment %d (%d cells) is not contiguous", s.ID, len(s.Cells))
		}
		if s.AreaM2 > 1.3*target+2e5 {
			t.Errorf("segment %d area %.0f m², want ≤ %.0f", s.ID, s.AreaM2, 1.3*target+2e5)
		}
		if s.AreaM2 >= 0.5*target && s.AreaM2 <= 1.1*target {
			sized++
		}
		// Compact: every cell within 2.5 radii of a disk of the same area
		// from the centroid.
		rEq := math.Sqrt(s.AreaM2 / math.Pi)
		for _, c := range s.Cells {
			ll := mustCenter(t, h3.Cell(c))
			if d := DistanceM(s.Lat, s.Lng, ll.Lat, ll.Lng); d > 2.5*rEq+200 {
				t.Errorf("segment %d: cell %s %.0f m from the centroid, want ≤ %.0f", s.ID, CellString(c), d, 2.5*rEq+200)
				break
			}
		}
		poa += s.POA
	}
	if len(seen) != len(g.Cells) {
		t.Errorf("segments hold %d cells, grid %d", len(seen), len(g.Cells))
	}
	if math.Abs(poa-(1-g.RestOfWorld)) > 1e-9 {
		t.Errorf("Σ segment POA = %v, want 1 − rest = %v", poa, 1-g.RestOfWorld)
	}
	if frac := float64(sized) / float64(len(segs)); frac < 0.8 {
		t.Errorf("%.0f %% of segments within 0.5–1.1 × target, want ≥ 80 %%", 100*frac)
	}
	ipp, _ := CellAt(ippLat, ippLng, 9)
	if !slices.Contains(segs[0].Cells, ipp) {
		t.Errorf("densest segment does not hold the IPP cell")
	}
	again, _ := Segments(g, SegmentOptions{TargetAreaM2: target})
	if len(again) != len(segs) || !slices.Equal(again[7].Cells, segs[7].Cells) {
		t.Errorf("Segments is not deterministic")
	}
	t.Logf("%d segments, %.0f %% sized within 0.5–1.1 × target", len(segs), 100*float64(sized)/float64(len(segs)))
}

func TestTaskArea(t *testing.T) {
	team := Team{Searchers: 4, SweepWidthM: 15, SearchSpeedMS: 0.5, TravelSpeedMS: 1}
	// 4 × 15 m × 0.5 m/s × 10,800 s / 1.5 = 216,000 m².
	got, err := team.TaskAreaM2(3*time.Hour, 1.5)
	if err != nil || math.Abs(got-216000) > 1e-6 {
		t.Errorf("TaskAreaM2(3 h, 1.5) = %v, %v, want 216000", got, err)
	}
	if _, err := team.TaskAreaM2(0, 1); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("TaskAreaM2(0 h) error = %v, want %v", err, ErrInvalidArgument)
	}
}

// A hand-worked choice between two one-cell segments.
//
//	team: 2 searchers × 20 m × 0.5 m/s = 20 m²/s sweep rate, travel 1 m/s
//	coverage 1 → POD 1 − 1/e = 0.632
//	cells of A ≈ 95,000 m² → search A/20 ≈ 4,750 s ≈ 1.32 h
//	near: the team stands on it → travel 0; score = POA·0.632 / 1.32 h
//	far:  5 km north → travel (5,000 − √(A/π) ≈ 4,826 m)/1 m/s ≈ 1.34 h;
//	      score = POA·0.632 / 2.66 h
//	POA near 0.2 → 0.0957/h; far 0.6 → 0.1425/h: the far one wins;
//	far 0.35 → 0.083/h: the near one wins.
//
// The far cell's centre is only within a cell radius (≈ 190 m) of 5 km,
// so the scores are checked to ±3 %.
func TestNextTaskHandWorked(t *testing.T) {
	a, _, _ := threeCells(t)
	fll := h3.LatLng{Lat: ippLat + 5000/EarthRadiusM/degToRad, Lng: ippLng}
	far, _ := h3.LatLngToCell(fll, 9)
	an := mustCenter(t, h3.Cell(a))
	team := Team{Lat: an.Lat, Lng: an.Lng, Searchers: 2, SweepWidthM: 20, SearchSpeedMS: 0.5, TravelSpeedMS: 1}
	for _, tc := range []struct {
		farPOA, wantScore float64
		want              int
	}{
		{0.6, 0.1425, 2},
		{0.35, 0.0957, 1},
	} {
		g := mustGrid(t, map[uint64]float64{a: 0.2, uint64(far): tc.farPOA}, 0.8-tc.farPOA)
		segs := make([]Segment, 0, 2)
		for i, c := range []uint64{a, uint64(far)} {
			ll := mustCenter(t, h3.Cell(c))
			area, _ := h3.CellAreaM2(h3.Cell(c))
			segs = append(segs, Segment{ID: i + 1, Cells: []uint64{c}, AreaM2: area, POA: g.POA(c), Lat: ll.Lat, Lng: ll.Lng})
		}
		task, err := NextTask(g, segs, team, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		if task.ID != tc.want || math.Abs(task.Score-tc.wantScore) > 0.03*tc.wantScore {
			t.Errorf("far POA %v: NextTask = segment %d score %.4f/h, want %d score %.4f/h", tc.farPOA, task.ID, task.Score, tc.want, tc.wantScore)
		}
		other := 3 - tc.want
		task, err = NextTask(g, segs, team, 1, map[int]bool{tc.want: true})
		if err != nil || task.ID != other {
			t.Errorf("NextTask(%d assigned) = %+v, %v, want segment %d", tc.want, task, err, other)
		}
		if _, err := NextTask(g, segs, team, 1, map[int]bool{1: true, 2: true}); !errors.Is(err, ErrNoSegment) {
			t.Errorf("NextTask(all assigned) error = %v, want %v", err, ErrNoSegment)
		}
		bad := team
		bad.Searchers = 0
		if _, err := NextTask(g, segs, bad, 1, nil); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("NextTask(0 searchers) error = %v, want %v", err, ErrInvalidArgument)
		}
		if _, err := NextTask(g, segs, team, math.NaN(), nil); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("NextTask(NaN coverage) error = %v, want %v", err, ErrInvalidArgument)
		}
	}
}

func TestNextTaskOnSeededGrid(t *testing.T) {
	g := mustHikerGrid(t)
	segs, err := Segments(g, SegmentOptions{TargetAreaM2: 1e6})
	if err != nil {
		t.Fatal(err)
	}
	team := Team{Lat: ippLat, Lng: ippLng, Searchers: 4, SweepWidthM: 15, SearchSpeedMS: 0.4, TravelSpeedMS: 0.8}
	task, err := NextTask(g, segs, team, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if task.ID != 1 {
		t.Errorf("team at the IPP: NextTask = segment %d, want 1 (densest, no travel)", task.ID)
	}
	// After the densest segment is searched hard, it is no longer first.
	cov := map[uint64]float64{}
	for _, c := range segs[0].Cells {
		cov[c] = 3
	}
	if _, err := g.ApplySearch(cov); err != nil {
		t.Fatal(err)
	}
	if r := RankSegments(g, segs); r[0].ID == 1 {
		t.Errorf("after searching segment 1 to POD 95 %%, RankSegments still puts it first")
	}
	task, err = NextTask(g, segs, team, 1, nil)
	if err != nil || task.ID == 1 {
		t.Errorf("after searching segment 1: NextTask = %+v, %v, want another segment", task, err)
	}
}

func TestSegmentsRejects(t *testing.T) {
	g := mustHikerGrid(t)
	for _, opt := range []SegmentOptions{{}, {TargetAreaM2: -1}, {TargetAreaM2: math.NaN()}, {TargetAreaM2: 1e6, MinFill: math.Inf(1)}} {
		if _, err := Segments(g, opt); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("Segments(%+v) error = %v, want %v", opt, err, ErrInvalidArgument)
		}
	}
	if _, err := Segments(&Grid{Resolution: 9}, SegmentOptions{TargetAreaM2: 1e6}); !errors.Is(err, ErrEmptyGrid) {
		t.Errorf("Segments(empty) error = %v, want %v", err, ErrEmptyGrid)
	}
}
