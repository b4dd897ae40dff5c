package sim

import (
	"math"
	"math/rand/v2"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
)

// Caller is a lost person's phone with the share-link page open in its
// browser: the person stays near where they are (hurt, or told to stay
// put) and the browser's fixes scatter around that place by their
// accuracy.
type Caller struct {
	frame    Frame
	rng      *rand.Rand
	at       XY      // where the person really is
	accuracy float64 // metres, 68 %
	battery  float64
}

// NewCaller makes a lost person's phone at at, whose fixes have the given
// horizontal accuracy (68 % radius, metres).
func NewCaller(seed uint64, f Frame, at XY, accuracyM float64) *Caller {
	rng := rand.New(rand.NewPCG(seed, 0xca11))
	return &Caller{frame: f, rng: rng, at: at, accuracy: accuracyM, battery: 15 + 10*rng.Float64()}
}

// At is where the person really is.
func (c *Caller) At() XY { return c.at }

// Next makes the fix with the given sequence, taken at t. The person
// shuffles a metre or so between fixes.
func (c *Caller) Next(seq uint64, t time.Time) *sarv1.LocationFix {
	c.at.X += 0.5 * c.rng.NormFloat64()
	c.at.Y += 0.5 * c.rng.NormFloat64()
	// A circular normal with 68 % of its mass within the accuracy.
	sigma := c.accuracy / math.Sqrt(-2*math.Log(1-0.68))
	p := XY{c.at.X + sigma*c.rng.NormFloat64(), c.at.Y + sigma*c.rng.NormFloat64()}
	lat, lng := c.frame.LatLng(p)
	acc := c.accuracy * (0.9 + 0.2*c.rng.Float64())
	c.battery = max(c.battery-0.05, 1)
	return &sarv1.LocationFix{Sequence: seq, Lat: lat, Lng: lng, HorizontalAccuracyM: acc,
		Time: timestamppb.New(t), BatteryPercent: ptr(int32(c.battery)), Source: sarv1.FixSource_FIX_SOURCE_BROWSER}
}
