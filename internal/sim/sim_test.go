package sim

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/uber/h3-go/v4"
)

// TestWalkerUnchanged pins the random walk that sarctl's bench and floor
// replay: the same seed must keep making the same fixes (these values were
// made by sarctl's own walker before it moved here).
func TestWalkerUnchanged(t *testing.T) {
	w := NewWalker(7, Frame{ValleyLat, ValleyLng})
	now := time.Unix(1_800_000_000, 0)
	format := func(f interface {
		GetSequence() uint64
		GetLat() float64
		GetLng() float64
		GetHorizontalAccuracyM() float64
		GetAltitudeM() float64
		GetBatteryPercent() int32
		GetSpeedMps() float64
		GetHeadingDeg() float64
	}) string {
		return fmt.Sprintf("%d %.12f %.12f %.9f %.9f %d %.9f %.9f", f.GetSequence(), f.GetLat(), f.GetLng(),
			f.GetHorizontalAccuracyM(), f.GetAltitudeM(), f.GetBatteryPercent(), f.GetSpeedMps(), f.GetHeadingDeg())
	}
	want := []string{
		"1 46.597959910557 7.917150935961 10.133307774 1069.515991935 99 1.426327659 245.389453095",
		"2 46.597950896213 7.917134157164 11.023656747 1069.374203290 99 1.629219133 231.980841129",
		"3 46.597939295014 7.917120270598 13.556500666 1069.206215303 99 1.672194722 219.438605353",
	}
	for i, f := range w.Batch(1, 3, now) {
		if got := format(f); got != want[i] {
			t.Errorf("fix %d = %s, want %s", i+1, got, want[i])
		}
		if !f.GetTime().AsTime().Equal(now) {
			t.Errorf("fix %d time = %v, want %v", i+1, f.GetTime().AsTime(), now)
		}
	}
	for range 5000 {
		w.Next(9, now)
	}
	if got, want := format(w.Next(5004, now)), "5004 46.596969655568 7.921732529678 6.516831124 1077.393869818 96 1.167997274 8.972806728"; got != want {
		t.Errorf("fix 5004 = %s, want %s", got, want)
	}
}

func TestFrameRoundTrip(t *testing.T) {
	f := Frame{ValleyLat, ValleyLng}
	p := XY{1234.5, -678.9}
	lat, lng := f.LatLng(p)
	if q := f.XY(lat, lng); Dist(p, q) > 1e-6 {
		t.Errorf("XY(LatLng(%v)) = %v", p, q)
	}
}

// A walker given a route reaches every waypoint at walking speed, then
// roams near the last one.
func TestWalkerFollowsRoute(t *testing.T) {
	w := NewWalker(3, Frame{ValleyLat, ValleyLng})
	w.StepS = 2
	w.Place(XY{0, 0})
	route := []XY{{100, 0}, {100, 100}, {0, 100}}
	w.Follow(route)
	now := time.Unix(1_800_000_000, 0)
	steps := 0
	for w.RouteLeft() > 0 {
		f := w.Next(uint64(steps+1), now)
		if s := f.GetSpeedMps(); s < 0 || s > 1.2*WalkSpeedMPS {
			t.Fatalf("speed %v m/s, want at most walking speed", s)
		}
		if steps++; steps > 1000 {
			t.Fatalf("route not done after %d steps; at %v, %d waypoints left", steps, w.Pos(), w.RouteLeft())
		}
	}
	if d := Dist(w.Pos(), route[2]); d > 1e-9 {
		t.Errorf("route done %v m from its end", d)
	}
	// 300 m at 2.8 m per step (± 20 %), plus a little for heading noise.
	if s := float64(steps); s < 300/(1.2*2*WalkSpeedMPS) || s > 300/(0.8*2*WalkSpeedMPS)+10 {
		t.Errorf("300 m route took %d steps of 2 s", steps)
	}
	w.Roam(route[2], 50)
	for i := range 2000 {
		w.Next(uint64(i), now)
		if d := Dist(w.Pos(), route[2]); d > 80 {
			t.Fatalf("roaming walker %v m from its centre, want about 50 at most", d)
		}
	}
}

// A sweep stays in the segment (lane ends in its cells), its lanes are
// the spacing apart, and two searchers abreast share the lanes.
func TestSweepRoute(t *testing.T) {
	f := Frame{ValleyLat, ValleyLng}
	c0, err := h3.LatLngToCell(h3.LatLng{Lat: ValleyLat, Lng: ValleyLng}, 9)
	if err != nil {
		t.Fatal(err)
	}
	disk, err := c0.GridDisk(1)
	if err != nil {
		t.Fatal(err)
	}
	var cells []string
	in := map[h3.Cell]bool{}
	for _, c := range disk {
		cells, in[c] = append(cells, c.String()), true
	}
	routes := make([][]XY, 2)
	for lane := range routes {
		routes[lane], err = SweepRoute(f, cells, 20, lane, 2, XY{-2000, -2000})
		if err != nil {
			t.Fatalf("SweepRoute: %v", err)
		}
		if len(routes[lane]) < 2*10 {
			t.Fatalf("lane %d: %d waypoints, want ≥ 20 (seven cells ~ 600 m across, lanes 40 m apart)", lane, len(routes[lane]))
		}
		for i, p := range routes[lane] {
			lat, lng := f.LatLng(p)
			c, _ := h3.LatLngToCell(h3.LatLng{Lat: lat, Lng: lng}, 9)
			if !in[c] {
				t.Errorf("lane %d waypoint %d %v is outside the segment", lane, i, p)
			}
		}
		for i := 2; i < len(routes[lane]); i += 2 {
			if dy := routes[lane][i].Y - routes[lane][i-2].Y; math.Abs(dy-40) > 1e-6 {
				t.Errorf("lane %d: lines %v m apart, want 40", lane, dy)
			}
		}
	}
	// From the south-west, the first searcher starts at the south-west.
	if p := routes[0][0]; p.X > routes[0][1].X || p.Y > routes[0][len(routes[0])-1].Y {
		t.Errorf("route starts at %v, want its south-west end", p)
	}
	if math.Abs(routes[1][0].Y-routes[0][0].Y-20) > 1e-6 {
		t.Errorf("second searcher's first lane at y=%v, want 20 m north of the first's (%v)", routes[1][0].Y, routes[0][0].Y)
	}
	if _, err := SweepRoute(f, []string{"nonsense"}, 20, 0, 1, XY{}); err == nil {
		t.Error("SweepRoute of a bad cell: no error")
	}
}

// The lost person's fixes scatter around where they are by about their
// accuracy.
func TestCallerScatter(t *testing.T) {
	f := Frame{ValleyLat, ValleyLng}
	c := NewCaller(1, f, XY{500, 500}, 100)
	within := 0
	const n = 2000
	for i := range n {
		fix := c.Next(uint64(i+1), time.Unix(1_800_000_000+int64(i), 0))
		if d := Dist(f.XY(fix.GetLat(), fix.GetLng()), c.At()); d <= 100 {
			within++
		}
	}
	if share := float64(within) / n; share < 0.6 || share > 0.76 {
		t.Errorf("%.2f of fixes within their accuracy, want about 0.68", share)
	}
}
