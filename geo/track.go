package geo

import (
	"fmt"
	"math"
	"time"
)

// Fix is one recorded position of a searcher.
type Fix struct {
	Lat, Lng float64
	// AccuracyM is the horizontal accuracy, radius of 68 % confidence in
	// metres; 0 means unknown (JitterFilter.DefaultAccuracyM is used).
	AccuracyM float64
	// Time is when the fix was taken; fixes must come in time order.
	Time time.Time
}

func (f Fix) validate() error {
	if !ValidPoint(f.Lat, f.Lng) {
		return fmt.Errorf("%w: lat=%v lng=%v", ErrInvalidPoint, f.Lat, f.Lng)
	}
	if f.Time.IsZero() {
		return fmt.Errorf("%w: no time", ErrInvalidFix)
	}
	if !finite(f.AccuracyM) || f.AccuracyM < 0 {
		return fmt.Errorf("%w: accuracy %v", ErrInvalidFix, f.AccuracyM)
	}
	return nil
}

// JitterFilter decides which movement between fixes counts as sweeping.
//
// A searcher standing still drifts by metres from fix to fix; summed point
// to point that drift looks like walking and would wrongly raise the POD of
// the cells around them. The filter keeps an anchor, the last position the
// searcher is known to have reached, and credits a move only when a fix
// lands at least
//
//	τ = max(MinMoveM, AccuracyFactor × √(accuracy of anchor² + accuracy of fix²))
//
// from the anchor (√(a² + b²) is the 68 % radius of the difference of two
// independent fixes, so a factor of 2 leaves about a 1 % chance per fix that
// pure noise crosses τ) and the next fix is still at least τ from it (a single
// fix beyond τ that is followed by one back near the anchor is a jitter
// excursion, not a move). The credited segment runs from the anchor to that
// fix, which becomes the new anchor. Fixes implying a speed above MaxSpeedMS
// (after allowing both fixes' accuracy as slack) are dropped as outliers,
// and across a time gap longer than MaxGap nothing is interpolated: the
// searcher's path in between is unknown. Cutting corners shorter than τ
// under-counts a little, which errs on the safe side for POD.
type JitterFilter struct {
	// MinMoveM is the smallest displacement from the anchor that can count.
	MinMoveM float64
	// AccuracyFactor scales the fixes' accuracy into the move threshold.
	AccuracyFactor float64
	// DefaultAccuracyM stands in for fixes without an accuracy.
	DefaultAccuracyM float64
	// MaxSpeedMS is the highest plausible speed of the searcher type.
	MaxSpeedMS float64
	// MaxGap is the longest time between fixes across which a move still
	// counts.
	MaxGap time.Duration
}

// DefaultJitterFilter returns the filter for a searcher on foot: moves of at
// least 10 m or 2 × the combined accuracy (23 m for two fixes of 8 m, the
// accuracy assumed when a fix has none), at most 3 m/s, gaps up to 60 s.
func DefaultJitterFilter() JitterFilter {
	return JitterFilter{MinMoveM: 10, AccuracyFactor: 2, DefaultAccuracyM: 8, MaxSpeedMS: 3, MaxGap: 60 * time.Second}
}

// Validate checks that every field is finite and positive (AccuracyFactor
// may be 0).
func (f JitterFilter) Validate() error {
	if !finite(f.MinMoveM, f.AccuracyFactor, f.DefaultAccuracyM, f.MaxSpeedMS) ||
		f.MinMoveM <= 0 || f.AccuracyFactor < 0 || f.DefaultAccuracyM < 0 || f.MaxSpeedMS <= 0 || f.MaxGap <= 0 {
		return fmt.Errorf("%w: jitter filter %+v", ErrInvalidArgument, f)
	}
	return nil
}

func (f JitterFilter) acc(x Fix) float64 {
	if x.AccuracyM > 0 {
		return x.AccuracyM
	}
	return f.DefaultAccuracyM
}

// TrackState is what a Tracker remembers between batches of one searcher's
// fixes; the server stores it with the searcher.
type TrackState struct {
	// Started is false until the first fix.
	Started bool
	// Anchor is the last position the searcher is known to have reached.
	Anchor Fix
	// Prev is the last plausible fix, for the speed and gap checks.
	Prev Fix
	// Pending is a move beyond the threshold waiting for the next fix to
	// confirm it.
	Pending Fix
	// HasPending tells whether Pending holds such a move.
	HasPending bool
}

// TrackStats counts what a Tracker did with a batch.
type TrackStats struct {
	// Fixes is the number of fixes offered.
	Fixes int
	// RawM is the point-to-point length between consecutive plausible
	// fixes, jitter included.
	RawM float64
	// SweptM is the length credited to cells.
	SweptM float64
	// Still counts fixes within the move threshold of the anchor.
	Still int
	// Unconfirmed counts single fixes beyond the threshold that the next
	// fix contradicted.
	Unconfirmed int
	// Implausible counts fixes dropped for an impossible speed.
	Implausible int
	// Gaps counts time gaps longer than MaxGap.
	Gaps int
	// OutOfOrder counts fixes not newer than the previous one (ignored).
	OutOfOrder int
}

// Add accumulates b into s.
func (s *TrackStats) Add(b TrackStats) {
	s.Fixes += b.Fixes
	s.RawM += b.RawM
	s.SweptM += b.SweptM
	s.Still += b.Still
	s.Unconfirmed += b.Unconfirmed
	s.Implausible += b.Implausible
	s.Gaps += b.Gaps
	s.OutOfOrder += b.OutOfOrder
}

// Tracker turns one searcher's fixes into swept length per H3 cell: the
// length of each credited segment inside every cell it crosses. Its State
// is exported so that a server can persist it between batches; the rest is
// a cache. A Tracker is not safe for concurrent use.
type Tracker struct {
	// Resolution is the H3 resolution of the cells credited.
	Resolution int
	// Filter is the jitter filter.
	Filter JitterFilter
	// State carries over between batches.
	State  TrackState
	walker walker
}

// NewTracker returns a tracker crediting cells at resolution res.
func NewTracker(res int, f JitterFilter) (*Tracker, error) {
	if !ValidResolution(res) {
		return nil, fmt.Errorf("%w: %d", ErrInvalidResolution, res)
	}
	if err := f.Validate(); err != nil {
		return nil, err
	}
	return &Tracker{Resolution: res, Filter: f}, nil
}

// Add feeds a batch of fixes, in time order, and adds the swept length in
// metres of every cell crossed to lengths (which must not be nil). Every fix
// is checked first: one invalid fix fails the batch with nothing applied.
func (t *Tracker) Add(fixes []Fix, lengths map[uint64]float64) (TrackStats, error) {
	var st TrackStats
	if lengths == nil {
		return st, fmt.Errorf("%w: nil lengths map", ErrInvalidArgument)
	}
	if !ValidResolution(t.Resolution) {
		return st, fmt.Errorf("%w: %d", ErrInvalidResolution, t.Resolution)
	}
	if err := t.Filter.Validate(); err != nil {
		return st, err
	}
	for i, f := range fixes {
		if err := f.validate(); err != nil {
			return st, fmt.Errorf("fix %d: %w", i, err)
		}
	}
	t.walker.res = t.Resolution
	s := &t.State
	fl := t.Filter
	for _, f := range fixes {
		st.Fixes++
		if !s.Started {
			*s = TrackState{Started: true, Anchor: f, Prev: f}
			continue
		}
		dt := f.Time.Sub(s.Prev.Time)
		if dt <= 0 {
			st.OutOfOrder++
			continue
		}
		if dt > fl.MaxGap {
			st.Gaps++
			*s = TrackState{Started: true, Anchor: f, Prev: f}
			continue
		}
		step := DistanceM(s.Prev.Lat, s.Prev.Lng, f.Lat, f.Lng)
		if step-fl.acc(s.Prev)-fl.acc(f) > fl.MaxSpeedMS*dt.Seconds() {
			st.Implausible++
			continue
		}
		st.RawM += step
		s.Prev = f
		d := DistanceM(s.Anchor.Lat, s.Anchor.Lng, f.Lat, f.Lng)
		if s.HasPending {
			if d < fl.threshold(s.Anchor, s.Pending) {
				// Back near the anchor: the pending fix was jitter.
				s.HasPending = false
				st.Unconfirmed++
				st.Still++
				continue
			}
			m, err := t.walker.walk(s.Anchor, s.Pending, lengths)
			if err != nil {
				return st, err
			}
			st.SweptM += m
			s.Anchor, s.HasPending = s.Pending, false
			d = DistanceM(s.Anchor.Lat, s.Anchor.Lng, f.Lat, f.Lng)
		}
		if d >= fl.threshold(s.Anchor, f) {
			s.Pending, s.HasPending = f, true
		} else {
			st.Still++
		}
	}
	return st, nil
}

func (f JitterFilter) threshold(a, b Fix) float64 {
	return max(f.MinMoveM, f.AccuracyFactor*math.Hypot(f.acc(a), f.acc(b)))
}
