package geo

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

const rainierGPX = "rainier-2009-11-01.gpx"

func mustTracker(tb testing.TB) *Tracker {
	tb.Helper()
	tr, err := NewTracker(DefaultResolution, DefaultJitterFilter())
	if err != nil {
		tb.Fatalf("NewTracker: %v", err)
	}
	return tr
}

// The real tracklog: 2,041 fixes, 14.1 km summed point to point. The
// filtered length must stay plausible for the hike (below the raw sum, not
// far below it) while the stays at the summit add next to nothing.
func TestTrackerRainier(t *testing.T) {
	fixes, wpts := mustReadGPX(t, rainierGPX)
	if got, want := len(fixes), 2041; got != want {
		t.Fatalf("track points = %d, want %d", got, want)
	}
	raw := 0.0
	for i := 1; i < len(fixes); i++ {
		raw += DistanceM(fixes[i-1].Lat, fixes[i-1].Lng, fixes[i].Lat, fixes[i].Lng)
	}
	if raw < 14050 || raw > 14200 {
		t.Fatalf("raw point-to-point length = %.0f m, want 14.1 km (README)", raw)
	}
	var summit gpxPoint
	for _, w := range wpts {
		if w.Sym == "Flag" {
			summit = w
		}
	}
	if summit.Lat == 0 {
		t.Fatal("no summit waypoint (sym Flag) in the tracklog")
	}

	tr := mustTracker(t)
	lengths := make(map[uint64]float64)
	var total TrackStats
	// Feed fix by fix (batching is tested elsewhere) and sort what moves
	// into "at the summit": raw steps and credited segments with both ends
	// within 15 m of the summit flag, where the walker stood for minutes.
	atSummit := func(lat, lng float64) bool { return DistanceM(lat, lng, summit.Lat, summit.Lon) < 15 }
	var summitRaw, summitSwept float64
	for i, f := range fixes {
		before := tr.State.Anchor
		st, err := tr.Add([]Fix{f}, lengths)
		if err != nil {
			t.Fatalf("Add(fix %d): %v", i, err)
		}
		total.Add(st)
		if i > 0 && atSummit(f.Lat, f.Lng) && atSummit(fixes[i-1].Lat, fixes[i-1].Lng) {
			summitRaw += DistanceM(fixes[i-1].Lat, fixes[i-1].Lng, f.Lat, f.Lng)
		}
		after := tr.State.Anchor
		if st.SweptM > 0 && atSummit(before.Lat, before.Lng) && atSummit(after.Lat, after.Lng) {
			summitSwept += st.SweptM
		}
	}
	t.Logf("raw %.0f m, swept %.0f m; stats %+v; at summit raw %.1f m swept %.1f m", raw, total.SweptM, total, summitRaw, summitSwept)
	if total.SweptM < 11500 || total.SweptM > 13900 {
		t.Errorf("swept length = %.0f m, want 11.5–13.9 km (raw %.0f m less jitter)", total.SweptM, raw)
	}
	if summitRaw < 20 {
		t.Fatalf("raw length at the summit = %.1f m, want the recorded jitter (≥ 20 m)", summitRaw)
	}
	if summitSwept > 0.1*summitRaw {
		t.Errorf("swept at the summit = %.1f m, want ≤ 10%% of the raw %.1f m", summitSwept, summitRaw)
	}
	if total.Gaps < 1 {
		t.Errorf("gaps = %d, want ≥ 1 (the 27-min gap at the summit)", total.Gaps)
	}
	var sum float64
	for _, l := range lengths {
		sum += l
	}
	if math.Abs(sum-total.SweptM) > 1e-6*total.SweptM {
		t.Errorf("Σ cell lengths = %.3f m, want SweptM %.3f m", sum, total.SweptM)
	}
}

// A searcher standing still for 30 minutes with a phone: fixes every 5 s
// wander around the true position (a slow random walk plus white noise, a
// few metres, accuracy reported as 6 m). Nearly nothing may count.
func TestTrackerStandingStill(t *testing.T) {
	for seed := uint64(1); seed <= 5; seed++ {
		r := rand.New(rand.NewPCG(seed, 42))
		t0 := time.Date(2025, 1, 1, 10, 0, 0, 0, time.UTC)
		var fixes []Fix
		var dx, dy float64
		for i := range 360 {
			// AR(1) drift with a stationary σ of 3 m, plus 1.5 m white noise.
			dx = 0.95*dx + r.NormFloat64()*3*math.Sqrt(1-0.95*0.95)
			dy = 0.95*dy + r.NormFloat64()*3*math.Sqrt(1-0.95*0.95)
			ex, ey := dx+r.NormFloat64()*1.5, dy+r.NormFloat64()*1.5
			lat := ippLat + ey/EarthRadiusM/degToRad
			lng := ippLng + ex/(EarthRadiusM*math.Cos(ippLat*degToRad))/degToRad
			fixes = append(fixes, Fix{Lat: lat, Lng: lng, AccuracyM: 6, Time: t0.Add(time.Duration(i) * 5 * time.Second)})
		}
		tr := mustTracker(t)
		st, err := tr.Add(fixes, map[uint64]float64{})
		if err != nil {
			t.Fatal(err)
		}
		if st.RawM < 300 {
			t.Fatalf("seed %d: raw jitter = %.0f m, want a realistic ≥ 300 m", seed, st.RawM)
		}
		if st.SweptM > 0.05*st.RawM {
			t.Errorf("seed %d: swept standing still = %.1f m, want ≤ 5%% of raw %.0f m", seed, st.SweptM, st.RawM)
		}
	}
}

// walkLine returns fixes every 5 s of a walk due east at speed m/s.
func walkLine(n int, speed float64) []Fix {
	t0 := time.Date(2025, 1, 1, 10, 0, 0, 0, time.UTC)
	var out []Fix
	for i := range n {
		x := float64(i) * 5 * speed
		lng := ippLng + x/(EarthRadiusM*math.Cos(ippLat*degToRad))/degToRad
		out = append(out, Fix{Lat: ippLat, Lng: lng, AccuracyM: 5, Time: t0.Add(time.Duration(i) * 5 * time.Second)})
	}
	return out
}

func TestTrackerWalkAndSpike(t *testing.T) {
	fixes := walkLine(121, 1.2) // 10 minutes, 720 m
	fixes[60].Lat += 300 / EarthRadiusM / degToRad
	tr := mustTracker(t)
	st, err := tr.Add(fixes, map[uint64]float64{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Implausible != 1 {
		t.Errorf("Implausible = %d, want 1 (the 300 m spike)", st.Implausible)
	}
	// The end of the walk waits for a move beyond τ and its confirming
	// fix, so up to 2τ of it is not credited yet.
	want, tau := 720.0, DefaultJitterFilter().threshold(fixes[0], fixes[1])
	if st.SweptM < want-2*tau || st.SweptM > want+0.5 {
		t.Errorf("swept = %.1f m, want %.0f m (less up to 2τ = %.1f m at the end)", st.SweptM, want, 2*tau)
	}
}

func TestTrackerGapAndOrder(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 10, 0, 0, 0, time.UTC)
	a := Fix{Lat: ippLat, Lng: ippLng, Time: t0}
	b := Fix{Lat: ippLat + 0.005, Lng: ippLng, Time: t0.Add(10 * time.Minute)} // 556 m in 10 min
	c := Fix{Lat: ippLat + 0.006, Lng: ippLng, Time: t0.Add(9 * time.Minute)}  // older than b
	tr := mustTracker(t)
	lengths := map[uint64]float64{}
	st, err := tr.Add([]Fix{a, b, c}, lengths)
	if err != nil {
		t.Fatal(err)
	}
	if st.Gaps != 1 || st.OutOfOrder != 1 || st.SweptM != 0 || len(lengths) != 0 {
		t.Errorf("Add(gap, out of order) = %+v, %d cells; want 1 gap, 1 out of order, nothing swept", st, len(lengths))
	}
}

func TestTrackerStateCarriesAcrossBatches(t *testing.T) {
	fixes := walkLine(61, 1.4)
	one := mustTracker(t)
	l1 := map[uint64]float64{}
	s1, err := one.Add(fixes, l1)
	if err != nil {
		t.Fatal(err)
	}
	// Same fixes in batches of 7 through a tracker rebuilt from the stored
	// state each time, as a stateless server replica would.
	var state TrackState
	l2 := map[uint64]float64{}
	var s2 TrackStats
	for i := 0; i < len(fixes); i += 7 {
		tr := mustTracker(t)
		tr.State = state
		st, err := tr.Add(fixes[i:min(i+7, len(fixes))], l2)
		if err != nil {
			t.Fatal(err)
		}
		s2.Add(st)
		state = tr.State
	}
	if math.Abs(s1.SweptM-s2.SweptM) > 1e-9 {
		t.Errorf("swept in one batch %.6f m, in batches %.6f m; want equal", s1.SweptM, s2.SweptM)
	}
	for id, l := range l1 {
		if math.Abs(l2[id]-l) > 1e-9 {
			t.Errorf("cell %s: %.6f m in one batch, %.6f m in batches", CellString(id), l, l2[id])
		}
	}
}

func TestTrackerRejects(t *testing.T) {
	t0 := time.Now()
	bad := DefaultJitterFilter()
	bad.MaxSpeedMS = math.NaN()
	if _, err := NewTracker(9, bad); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("NewTracker(NaN speed) error = %v, want %v", err, ErrInvalidArgument)
	}
	if _, err := NewTracker(-1, DefaultJitterFilter()); !errors.Is(err, ErrInvalidResolution) {
		t.Errorf("NewTracker(res -1) error = %v, want %v", err, ErrInvalidResolution)
	}
	tr := mustTracker(t)
	for _, tc := range []struct {
		f    Fix
		want error
	}{
		{Fix{Lat: math.NaN(), Time: t0}, ErrInvalidPoint},
		{Fix{Lat: 10, Lng: 10}, ErrInvalidFix},
		{Fix{Lat: 10, Lng: 10, AccuracyM: -1, Time: t0}, ErrInvalidFix},
		{Fix{Lat: 10, Lng: 10, AccuracyM: math.Inf(1), Time: t0}, ErrInvalidFix},
	} {
		ok := Fix{Lat: 10, Lng: 10, Time: t0.Add(-time.Second)}
		if _, err := tr.Add([]Fix{ok, tc.f}, map[uint64]float64{}); !errors.Is(err, tc.want) {
			t.Errorf("Add(%+v) error = %v, want %v", tc.f, err, tc.want)
		}
		if tr.State.Started {
			t.Errorf("Add(%+v) changed the state despite failing", tc.f)
		}
	}
	if _, err := tr.Add(nil, nil); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("Add(nil map) error = %v, want %v", err, ErrInvalidArgument)
	}
}
