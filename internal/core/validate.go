package core

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/geo"
	"github.com/mountain-sar/sar/internal/sar"
)

// fixWindow is the range of fix times an incident accepts.
type fixWindow struct {
	notBefore, notAfter time.Time
}

func (s *Service) window(inc *sarv1.Incident) fixWindow {
	start := inc.GetCreateTime().AsTime()
	if ls := inc.GetSubject().GetLastSeenTime(); ls != nil && ls.AsTime().Before(start) {
		start = ls.AsTime()
	}
	return fixWindow{notBefore: start.Add(-s.cfg.PastMargin), notAfter: s.now().Add(s.cfg.FutureSkew)}
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

func reject(seq uint64, reason sarv1.RejectReason, field, code, format string, args ...any) *sarv1.FixRejection {
	return &sarv1.FixRejection{Sequence: seq, Reason: reason, Violation: &sarv1.FieldViolation{
		Field: field, Reason: code, Description: fmt.Sprintf(format, args...)}}
}

// checkedBatch is a batch sorted by sequence and split into what goes to
// the store and what is answered at once.
type checkedBatch struct {
	entries []sar.IngestFix                // valid sequence numbers, increasing, each once; Fix nil when refused
	refused map[uint64]*sarv1.FixRejection // content rejections of entries, by sequence (final); nil when none
	badSeq  []*sarv1.FixRejection          // sequence 0 or too large: never reach the store
	repeats []uint64                       // a sequence that appears again in the batch
}

// fixPath is the field path of the i-th fix of a batch, built only for a
// rejection (never on the path of a valid fix).
func fixPath(i int) string { return "batch.fixes[" + strconv.Itoa(i) + "]" }

// checkFixes sorts a batch by sequence (a device should send in order; a
// shuffled batch is still taken whole), validates every fix on its own so
// that an invalid fix never holds back the valid ones behind it, strips
// what the client may not set (unknown fields, the cell), computes the
// H3 cell of each valid fix at resolution res (with cells, which keeps
// the last cell found: a device's fixes are mostly in it), and encodes
// each valid fix once (IngestFix.Pb: the same bytes go to the track and to
// the positions event).
func checkFixes(fixes []*sarv1.LocationFix, w fixWindow, res int, cells *geo.CellFinder) checkedBatch {
	out := checkedBatch{entries: make([]sar.IngestFix, 0, len(fixes))}
	bySeq := func(a, b *sarv1.LocationFix) int { return cmp.Compare(a.GetSequence(), b.GetSequence()) }
	var order []int // nil: the batch is in order (the common case), no index to sort
	if !slices.IsSortedFunc(fixes, bySeq) {
		order = make([]int, len(fixes))
		for i := range order {
			order[i] = i
		}
		slices.SortStableFunc(order, func(a, b int) int { return bySeq(fixes[a], fixes[b]) })
	}
	refuse := func(seq uint64, r *sarv1.FixRejection) {
		if out.refused == nil {
			out.refused = map[uint64]*sarv1.FixRejection{}
		}
		out.refused[seq] = r
		out.entries = append(out.entries, sar.IngestFix{Sequence: seq})
	}
	var prev uint64
	for k := range fixes {
		i := k
		if order != nil {
			i = order[k]
		}
		f := fixes[i]
		seq := f.GetSequence()
		switch {
		case seq == 0 || seq > sar.MaxSequence:
			out.badSeq = append(out.badSeq, reject(seq, sarv1.RejectReason_REJECT_REASON_INVALID_SEQUENCE,
				fixPath(i)+".sequence", "OUT_OF_RANGE", "sequence must be between 1 and 2^53-1"))
			continue
		case seq == prev:
			out.repeats = append(out.repeats, seq)
			continue
		}
		prev = seq
		f.ProtoReflect().SetUnknown(nil)
		f.Cell = ""
		if r := checkFix(f, i, w); r != nil {
			refuse(seq, r)
			continue
		}
		cell, err := cells.CellAt(f.GetLat(), f.GetLng(), res)
		if err != nil { // unreachable after checkFix, but never store a fix without its cell
			refuse(seq, reject(seq, sarv1.RejectReason_REJECT_REASON_INVALID_COORDINATES, fixPath(i), "NO_CELL", "no H3 cell for this position"))
			continue
		}
		f.Cell = geo.CellString(cell)
		pb, err := proto.Marshal(f)
		if err != nil { // only invalid UTF-8 fails, and a fix has no free text: never store what cannot be read back
			refuse(seq, reject(seq, sarv1.RejectReason_REJECT_REASON_INVALID_FIELD, fixPath(i), "UNENCODABLE", "the fix cannot be encoded"))
			continue
		}
		out.entries = append(out.entries, sar.IngestFix{Sequence: seq, Fix: f, TimeMs: f.GetTime().AsTime().UnixMilli(), Pb: pb})
	}
	return out
}

// checkFix returns why one fix must be refused, or nil.
func checkFix(f *sarv1.LocationFix, i int, w fixWindow) *sarv1.FixRejection {
	seq := f.GetSequence()
	bad := func(reason sarv1.RejectReason, field, code, format string, args ...any) *sarv1.FixRejection {
		return reject(seq, reason, fixPath(i)+"."+field, code, format, args...)
	}
	const coord = sarv1.RejectReason_REJECT_REASON_INVALID_COORDINATES
	switch lat, lng := f.GetLat(), f.GetLng(); {
	case !finite(lat) || lat < -90 || lat > 90:
		return bad(coord, "lat", "OUT_OF_RANGE", "latitude must be a number from -90 to 90")
	case !finite(lng) || lng < -180 || lng > 180:
		return bad(coord, "lng", "OUT_OF_RANGE", "longitude must be a number from -180 to 180")
	case lat == 0 && lng == 0:
		return bad(coord, "lat", "NULL_ISLAND", "0,0 is what devices report when they have no position")
	}
	if acc := f.GetHorizontalAccuracyM(); !finite(acc) || acc <= 0 || acc > sar.MaxAccuracyM {
		return bad(sarv1.RejectReason_REJECT_REASON_INVALID_ACCURACY, "horizontal_accuracy_m", "OUT_OF_RANGE",
			"horizontal accuracy must be more than 0 and at most %d metres", sar.MaxAccuracyM)
	}
	const tm = sarv1.RejectReason_REJECT_REASON_INVALID_TIME
	if f.GetTime() == nil {
		return bad(tm, "time", "REQUIRED", "fix time is required")
	}
	if err := f.GetTime().CheckValid(); err != nil {
		return bad(tm, "time", "INVALID", "fix time is not a valid timestamp")
	}
	switch t := f.GetTime().AsTime(); {
	case t.After(w.notAfter):
		return bad(tm, "time", "IN_FUTURE", "fix time %s is in the future (device clock wrong?)", t.Format(time.RFC3339))
	case t.Before(w.notBefore):
		return bad(tm, "time", "BEFORE_INCIDENT", "fix time %s is long before the incident", t.Format(time.RFC3339))
	}
	const field = sarv1.RejectReason_REJECT_REASON_INVALID_FIELD
	if f.AltitudeM != nil {
		if a := f.GetAltitudeM(); !finite(a) || a < sar.MinAltitudeM || a > sar.MaxAltitudeM {
			return bad(field, "altitude_m", "OUT_OF_RANGE", "altitude must be from %d to %d metres", sar.MinAltitudeM, sar.MaxAltitudeM)
		}
	}
	if f.VerticalAccuracyM != nil {
		if a := f.GetVerticalAccuracyM(); !finite(a) || a < 0 || a > sar.MaxAccuracyM {
			return bad(field, "vertical_accuracy_m", "OUT_OF_RANGE", "vertical accuracy must be from 0 to %d metres", sar.MaxAccuracyM)
		}
	}
	if f.BatteryPercent != nil {
		if b := f.GetBatteryPercent(); b < 0 || b > 100 {
			return bad(field, "battery_percent", "OUT_OF_RANGE", "battery must be from 0 to 100 percent")
		}
	}
	if f.SpeedMps != nil {
		if v := f.GetSpeedMps(); !finite(v) || v < 0 || v > sar.MaxSpeedMPS {
			return bad(field, "speed_mps", "OUT_OF_RANGE", "speed must be from 0 to %d m/s", sar.MaxSpeedMPS)
		}
	}
	if f.HeadingDeg != nil {
		if h := f.GetHeadingDeg(); !finite(h) || h < 0 || h >= 360 {
			return bad(field, "heading_deg", "OUT_OF_RANGE", "heading must be from 0 (inclusive) to 360 degrees")
		}
	}
	if _, ok := sarv1.FixSource_name[int32(f.GetSource())]; !ok {
		return bad(field, "source", "UNKNOWN_VALUE", "unknown fix source %d", f.GetSource())
	}
	return nil
}

// defined reports whether e is a value its enum declares: new values of a
// regenerated enum pass without a change here.
func defined(e protoreflect.Enum) bool { return e.Descriptor().Values().ByNumber(e.Number()) != nil }

// validSubject refuses enum values of a subject profile that its enums do
// not declare (a client built from a newer or a garbled schema): an
// unknown category or terrain must not silently seed another profile.
func validSubject(fv *[]sar.FieldViolation, path string, sp *sarv1.SubjectProfile) {
	for _, f := range []struct {
		name string
		e    protoreflect.Enum
	}{{"category", sp.GetCategory()}, {"terrain", sp.GetTerrain()}, {"ecoregion", sp.GetEcoregion()}} {
		if !defined(f.e) {
			*fv = append(*fv, sar.Field(path+"."+f.name, "UNKNOWN_VALUE", "unknown %s %d", f.name, f.e.Number()))
		}
	}
}
