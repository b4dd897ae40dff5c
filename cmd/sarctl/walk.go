package main

import (
	"math"
	"math/rand/v2"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
)

// Where the simulated search happens: a valley in the Alps (Lauterbrunnen).
const (
	benchLat     = 46.5935
	benchLng     = 7.9091
	walkSpeedMPS = 1.4    // a searcher on foot
	walkStartM   = 1000.0 // devices start this far from the centre at most
	walkRadiusM  = 2500.0 // and turn back beyond this
	metresPerDeg = 111_320.0
)

// walker is one simulated searcher: a random walk at walking speed around
// the search centre. Each fix is one second of walking (1.4 m), the fix
// rate of a phone in the field, so a batch of 10 fixes covers ~14 m and
// crosses search cells as often as a real one; the fix time is the time
// the fix is made, so that the server accepts it.
type walker struct {
	rng      *rand.Rand
	x, y     float64 // metres east and north of the centre
	heading  float64 // radians from north
	altitude float64
	battery  float64
}

func newWalker(seed uint64) *walker {
	rng := rand.New(rand.NewPCG(seed, 0x5a4))
	r, a := walkStartM*math.Sqrt(rng.Float64()), 2*math.Pi*rng.Float64()
	return &walker{rng: rng, x: r * math.Sin(a), y: r * math.Cos(a), heading: 2 * math.Pi * rng.Float64(),
		altitude: 800 + 400*rng.Float64(), battery: 60 + 40*rng.Float64()}
}

// next makes the fix with the given sequence, taken at now.
func (w *walker) next(seq uint64, now time.Time) *sarv1.LocationFix {
	w.heading += 0.35 * w.rng.NormFloat64()
	if math.Hypot(w.x, w.y) > walkRadiusM { // head back towards the centre
		w.heading = math.Atan2(-w.x, -w.y) + 0.5*w.rng.NormFloat64()
	}
	w.heading = math.Mod(w.heading+2*math.Pi, 2*math.Pi)
	step := walkSpeedMPS * (0.8 + 0.4*w.rng.Float64())
	w.x += step * math.Sin(w.heading)
	w.y += step * math.Cos(w.heading)
	w.altitude += 0.3 * w.rng.NormFloat64()
	w.battery = max(w.battery-0.0005, 5)
	lat := benchLat + w.y/metresPerDeg
	lng := benchLng + w.x/(metresPerDeg*math.Cos(benchLat*math.Pi/180))
	acc := 5 + 10*w.rng.Float64()
	deg := w.heading * 180 / math.Pi
	if deg >= 360 { // rounding at 2π
		deg = 0
	}
	return &sarv1.LocationFix{
		Sequence: seq, Lat: lat, Lng: lng, HorizontalAccuracyM: acc,
		AltitudeM: proto64(w.altitude), VerticalAccuracyM: proto64(1.5 * acc),
		Time: timestamppb.New(now), BatteryPercent: proto32(int32(w.battery)),
		Source: sarv1.FixSource_FIX_SOURCE_GNSS, SpeedMps: proto64(step), HeadingDeg: proto64(deg),
	}
}

// batch makes n fixes with sequences first, first+1, ...
func (w *walker) batch(first uint64, n int, now time.Time) []*sarv1.LocationFix {
	out := make([]*sarv1.LocationFix, n)
	for i := range out {
		out[i] = w.next(first+uint64(i), now)
	}
	return out
}

func proto64(v float64) *float64 { return &v }
func proto32(v int32) *int32     { return &v }
