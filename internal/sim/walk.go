// Package sim simulates people in the field for the tools that drive a
// server: sarctl's ingest bench and sarsim's drills. It makes positions
// (walkers on foot, a lost person's phone) and search routes, never calls
// the server, and is deterministic for a given seed.
package sim

import (
	"math"
	"math/rand/v2"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
)

// Where simulated searches happen by default: a valley in the Alps
// (Lauterbrunnen).
const (
	ValleyLat = 46.5935
	ValleyLng = 7.9091
)

const (
	// WalkSpeedMPS is the speed of a searcher on foot.
	WalkSpeedMPS = 1.4
	// MetresPerDeg is the length of a degree of latitude (and of longitude
	// at the equator), in metres.
	MetresPerDeg = 111_320.0
	walkStartM   = 1000.0 // walkers start this far from the frame's origin at most
	walkRadiusM  = 2500.0 // and turn back beyond this
)

// Frame is a local plane around an origin: x metres east, y metres north.
// It is accurate to well under a metre over the few kilometres of a search.
type Frame struct{ Lat, Lng float64 }

// XY is a point of a Frame.
type XY struct{ X, Y float64 }

// LatLng is the position of x, y.
func (f Frame) LatLng(p XY) (lat, lng float64) {
	return f.Lat + p.Y/MetresPerDeg, f.Lng + p.X/(MetresPerDeg*math.Cos(f.Lat*math.Pi/180))
}

// XY is the point of lat, lng.
func (f Frame) XY(lat, lng float64) XY {
	return XY{X: (lng - f.Lng) * MetresPerDeg * math.Cos(f.Lat*math.Pi/180), Y: (lat - f.Lat) * MetresPerDeg}
}

// Dist is the distance between two points in metres.
func Dist(a, b XY) float64 { return math.Hypot(a.X-b.X, a.Y-b.Y) }

// Walker is one simulated searcher on foot. Without a route it walks at
// random at walking speed, and heads back when it is more than its
// roaming radius from its roaming centre; with a route (Follow) it walks
// the route's waypoints in order, then roams around the last one.
//
// Each fix is StepS seconds of walking (1 s by default: 1.4 m, the fix
// rate of a phone in the field, so a batch of 10 fixes covers ~14 m and
// crosses search cells as often as a real one).
type Walker struct {
	// StepS is how many seconds of walking each fix is.
	StepS float64

	frame    Frame
	rng      *rand.Rand
	x, y     float64 // metres east and north of the frame's origin
	heading  float64 // radians from north
	altitude float64
	battery  float64
	home     XY      // roaming centre
	radius   float64 // roaming radius
	route    []XY
}

// NewWalker makes a walker that starts at a random place within 1 km of
// the frame's origin and roams within 2.5 km of it.
func NewWalker(seed uint64, f Frame) *Walker {
	rng := rand.New(rand.NewPCG(seed, 0x5a4))
	r, a := walkStartM*math.Sqrt(rng.Float64()), 2*math.Pi*rng.Float64()
	return &Walker{StepS: 1, frame: f, rng: rng, x: r * math.Sin(a), y: r * math.Cos(a), heading: 2 * math.Pi * rng.Float64(),
		altitude: 800 + 400*rng.Float64(), battery: 60 + 40*rng.Float64(), radius: walkRadiusM}
}

// Place moves the walker to p (a searcher arriving at the staging point).
func (w *Walker) Place(p XY) { w.x, w.y = p.X, p.Y }

// Pos is where the walker is.
func (w *Walker) Pos() XY { return XY{w.x, w.y} }

// Roam makes the walker walk at random within radius metres of centre
// once its route is done.
func (w *Walker) Roam(centre XY, radius float64) { w.home, w.radius = centre, radius }

// Follow replaces the walker's route.
func (w *Walker) Follow(route []XY) { w.route = append([]XY(nil), route...) }

// RouteLeft is the number of waypoints not reached yet.
func (w *Walker) RouteLeft() int { return len(w.route) }

// Next makes the fix with the given sequence, taken at t, after the
// walker's next step.
func (w *Walker) Next(seq uint64, t time.Time) *sarv1.LocationFix {
	var step float64
	if len(w.route) > 0 {
		to := w.route[0]
		w.heading = math.Atan2(to.X-w.x, to.Y-w.y) + 0.05*w.rng.NormFloat64()
		w.heading = math.Mod(w.heading+2*math.Pi, 2*math.Pi)
		step = w.StepS * WalkSpeedMPS * (0.8 + 0.4*w.rng.Float64())
		if d := math.Hypot(to.X-w.x, to.Y-w.y); d <= step {
			w.x, w.y, step = to.X, to.Y, d
			w.route = w.route[1:]
			if len(w.route) == 0 {
				w.home = to
			}
		} else {
			w.x += step * math.Sin(w.heading)
			w.y += step * math.Cos(w.heading)
		}
	} else {
		w.heading += 0.35 * w.rng.NormFloat64()
		if math.Hypot(w.x-w.home.X, w.y-w.home.Y) > w.radius { // head back towards the centre
			w.heading = math.Atan2(w.home.X-w.x, w.home.Y-w.y) + 0.5*w.rng.NormFloat64()
		}
		w.heading = math.Mod(w.heading+2*math.Pi, 2*math.Pi)
		step = w.StepS * WalkSpeedMPS * (0.8 + 0.4*w.rng.Float64())
		w.x += step * math.Sin(w.heading)
		w.y += step * math.Cos(w.heading)
	}
	w.altitude += 0.3 * w.rng.NormFloat64()
	w.battery = max(w.battery-0.0005*w.StepS, 5)
	lat, lng := w.frame.LatLng(XY{w.x, w.y})
	acc := 5 + 10*w.rng.Float64()
	deg := w.heading * 180 / math.Pi
	if deg >= 360 { // rounding at 2π
		deg = 0
	}
	return &sarv1.LocationFix{
		Sequence: seq, Lat: lat, Lng: lng, HorizontalAccuracyM: acc,
		AltitudeM: ptr(w.altitude), VerticalAccuracyM: ptr(1.5 * acc),
		Time: timestamppb.New(t), BatteryPercent: ptr(int32(w.battery)),
		Source: sarv1.FixSource_FIX_SOURCE_GNSS, SpeedMps: ptr(step / w.StepS), HeadingDeg: ptr(deg),
	}
}

// Batch makes n fixes with sequences first, first+1, ..., all taken at t
// (a load generator's batch: the server accepts them as made now).
func (w *Walker) Batch(first uint64, n int, t time.Time) []*sarv1.LocationFix {
	out := make([]*sarv1.LocationFix, n)
	for i := range out {
		out[i] = w.Next(first+uint64(i), t)
	}
	return out
}

func ptr[T any](v T) *T { return &v }
