package core

import (
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/geo"
)

func fixAt(seq uint64, t time.Time) *sarv1.LocationFix {
	return &sarv1.LocationFix{Sequence: seq, Lat: 30.25, Lng: 119.72, HorizontalAccuracyM: 8, Time: timestamppb.New(t)}
}

func ptr[T any](v T) *T { return &v }

func TestCheckFixesRejectsEachBadFieldAndKeepsTheRest(t *testing.T) {
	now := time.Date(2026, 11, 29, 15, 0, 0, 0, time.UTC)
	w := fixWindow{notBefore: now.Add(-25 * time.Hour), notAfter: now.Add(5 * time.Minute)}
	mod := func(seq uint64, f func(*sarv1.LocationFix)) *sarv1.LocationFix {
		x := fixAt(seq, now.Add(-time.Minute))
		f(x)
		return x
	}
	cases := []struct {
		fix    *sarv1.LocationFix
		reason sarv1.RejectReason
		field  string
	}{
		{mod(1, func(f *sarv1.LocationFix) { f.Lat = math.NaN() }), sarv1.RejectReason_REJECT_REASON_INVALID_COORDINATES, "batch.fixes[0].lat"},
		{mod(2, func(f *sarv1.LocationFix) { f.Lng = math.Inf(-1) }), sarv1.RejectReason_REJECT_REASON_INVALID_COORDINATES, "batch.fixes[1].lng"},
		{mod(3, func(f *sarv1.LocationFix) { f.Lat = 90.0001 }), sarv1.RejectReason_REJECT_REASON_INVALID_COORDINATES, "batch.fixes[2].lat"},
		{mod(4, func(f *sarv1.LocationFix) { f.Lat, f.Lng = 0, 0 }), sarv1.RejectReason_REJECT_REASON_INVALID_COORDINATES, "batch.fixes[3].lat"},
		{mod(5, func(f *sarv1.LocationFix) { f.HorizontalAccuracyM = -3 }), sarv1.RejectReason_REJECT_REASON_INVALID_ACCURACY, "batch.fixes[4].horizontal_accuracy_m"},
		{mod(6, func(f *sarv1.LocationFix) { f.HorizontalAccuracyM = 1e9 }), sarv1.RejectReason_REJECT_REASON_INVALID_ACCURACY, "batch.fixes[5].horizontal_accuracy_m"},
		{mod(7, func(f *sarv1.LocationFix) { f.HorizontalAccuracyM = math.NaN() }), sarv1.RejectReason_REJECT_REASON_INVALID_ACCURACY, "batch.fixes[6].horizontal_accuracy_m"},
		{mod(8, func(f *sarv1.LocationFix) { f.Time = nil }), sarv1.RejectReason_REJECT_REASON_INVALID_TIME, "batch.fixes[7].time"},
		{mod(9, func(f *sarv1.LocationFix) { f.Time = timestamppb.New(now.Add(time.Hour)) }), sarv1.RejectReason_REJECT_REASON_INVALID_TIME, "batch.fixes[8].time"},
		{mod(10, func(f *sarv1.LocationFix) { f.Time = timestamppb.New(now.Add(-48 * time.Hour)) }), sarv1.RejectReason_REJECT_REASON_INVALID_TIME, "batch.fixes[9].time"},
		{mod(11, func(f *sarv1.LocationFix) { f.AltitudeM = ptr(math.Inf(1)) }), sarv1.RejectReason_REJECT_REASON_INVALID_FIELD, "batch.fixes[10].altitude_m"},
		{mod(12, func(f *sarv1.LocationFix) { f.BatteryPercent = ptr(int32(101)) }), sarv1.RejectReason_REJECT_REASON_INVALID_FIELD, "batch.fixes[11].battery_percent"},
		{mod(13, func(f *sarv1.LocationFix) { f.HeadingDeg = ptr(360.0) }), sarv1.RejectReason_REJECT_REASON_INVALID_FIELD, "batch.fixes[12].heading_deg"},
		{mod(14, func(f *sarv1.LocationFix) { f.SpeedMps = ptr(-1.0) }), sarv1.RejectReason_REJECT_REASON_INVALID_FIELD, "batch.fixes[13].speed_mps"},
		{mod(15, func(f *sarv1.LocationFix) { f.Source = 99 }), sarv1.RejectReason_REJECT_REASON_INVALID_FIELD, "batch.fixes[14].source"},
		{mod(16, func(f *sarv1.LocationFix) { f.Time = &timestamppb.Timestamp{Seconds: 1, Nanos: -5} }), sarv1.RejectReason_REJECT_REASON_INVALID_TIME, "batch.fixes[15].time"},
	}
	fixes := make([]*sarv1.LocationFix, 0, len(cases)+1)
	for _, c := range cases {
		fixes = append(fixes, c.fix)
	}
	good := fixAt(17, now.Add(-30*time.Second))
	good.AltitudeM, good.BatteryPercent, good.Cell = ptr(812.5), ptr(int32(40)), "client-supplied, ignored"
	fixes = append(fixes, good)

	got := checkFixes(fixes, w, 9, &geo.CellFinder{})
	for _, c := range cases {
		seq := c.fix.GetSequence()
		r := got.refused[seq]
		if r == nil {
			t.Errorf("checkFixes: fix %d (%s) not rejected", seq, c.field)
			continue
		}
		if r.GetReason() != c.reason || r.GetViolation().GetField() != c.field {
			t.Errorf("checkFixes: fix %d = %v on %q, want %v on %q", seq, r.GetReason(), r.GetViolation().GetField(), c.reason, c.field)
		}
	}
	var valid []*sarv1.LocationFix
	for _, en := range got.entries {
		if en.Fix != nil {
			valid = append(valid, en.Fix)
		}
	}
	if len(valid) != 1 || valid[0].GetSequence() != 17 {
		t.Fatalf("checkFixes valid = %v, want only sequence 17", valid)
	}
	// The cell is computed by the server (H3 res 9 of 30.25,119.72), never
	// taken from the client.
	if c := valid[0].GetCell(); len(c) != 15 || c[0] != '8' || c[1] != '9' {
		t.Errorf("valid fix cell = %q, want a resolution-9 H3 cell", c)
	}
	if len(got.entries) != 17 {
		t.Errorf("entries = %d, want 17 (refused fixes consume their sequence)", len(got.entries))
	}
}

func TestCheckFixesSequenceRules(t *testing.T) {
	now := time.Now()
	w := fixWindow{notBefore: now.Add(-time.Hour), notAfter: now.Add(time.Minute)}
	fixes := []*sarv1.LocationFix{fixAt(0, now), fixAt(5, now), fixAt(5, now), fixAt(3, now), fixAt(6, now), fixAt(1<<53, now)}
	got := checkFixes(fixes, w, 9, &geo.CellFinder{})
	var bad []uint64
	for _, r := range got.badSeq {
		if r.GetReason() != sarv1.RejectReason_REJECT_REASON_INVALID_SEQUENCE {
			t.Errorf("bad sequence %d reason = %v, want INVALID_SEQUENCE", r.GetSequence(), r.GetReason())
		}
		bad = append(bad, r.GetSequence())
	}
	if len(bad) != 2 || bad[0] != 0 || bad[1] != 1<<53 {
		t.Errorf("bad sequences = %v, want 0 and 2^53", bad)
	}
	var seqs []uint64
	for _, en := range got.entries {
		seqs = append(seqs, en.Sequence)
	}
	if len(seqs) != 3 || seqs[0] != 3 || seqs[1] != 5 || seqs[2] != 6 {
		t.Errorf("entries = %v, want 3 5 6 (sorted, each once)", seqs)
	}
	if len(got.repeats) != 1 || got.repeats[0] != 5 {
		t.Errorf("repeats = %v, want [5]", got.repeats)
	}
}

func TestCheckFixesStripsUnknownFields(t *testing.T) {
	now := time.Now()
	f := fixAt(1, now)
	f.ProtoReflect().SetUnknown([]byte{0xfa, 0x0f, 0x03, 'x', 'y', 'z'}) // field 250, bytes "xyz"
	got := checkFixes([]*sarv1.LocationFix{f}, fixWindow{notBefore: now.Add(-time.Hour), notAfter: now.Add(time.Minute)}, 9, &geo.CellFinder{})
	if len(got.entries) != 1 || len(got.entries[0].Fix.ProtoReflect().GetUnknown()) != 0 {
		t.Errorf("stored fix keeps %d bytes of unknown fields, want 0", len(got.entries[0].Fix.ProtoReflect().GetUnknown()))
	}
}

func TestCheckBatchShape(t *testing.T) {
	big := &sarv1.FixBatch{IncidentId: "01m8jr4ce97enc5xbf8y16h4vm", DeviceId: "d1", Fixes: make([]*sarv1.LocationFix, 501)}
	for _, tc := range []struct {
		b    *sarv1.FixBatch
		want string
	}{
		{nil, "batch"},
		{&sarv1.FixBatch{IncidentId: "../../etc", DeviceId: "d1"}, "batch.incident_id"},
		{&sarv1.FixBatch{IncidentId: "01m8jr4ce97enc5xbf8y16h4vm", DeviceId: "has space"}, "batch.device_id"},
		{big, "batch.fixes"},
	} {
		err := checkBatchShape(tc.b)
		if err == nil {
			t.Errorf("checkBatchShape(%v) = nil, want an error on %s", tc.b, tc.want)
			continue
		}
		if got := err.Error(); !contains(got, tc.want) {
			t.Errorf("checkBatchShape() = %q, want it to name %s", got, tc.want)
		}
	}
	if err := checkBatchShape(&sarv1.FixBatch{IncidentId: "01m8jr4ce97enc5xbf8y16h4vm", DeviceId: "phone-1_A"}); err != nil {
		t.Errorf("checkBatchShape(valid) = %v, want nil", err)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// TestCheckFixesCellsAcrossBatches: a device stream's finder keeps the
// cell of its last fix from batch to batch; a batch elsewhere, or at
// another resolution, still gets H3's cells.
func TestCheckFixesCellsAcrossBatches(t *testing.T) {
	now := time.Now()
	w := fixWindow{notBefore: now.Add(-time.Hour), notAfter: now.Add(time.Minute)}
	var cells geo.CellFinder
	seq := uint64(0)
	for _, c := range []struct {
		lat, lng float64
		res      int
	}{{30.25, 119.72, 9}, {30.2501, 119.7201, 9}, {30.3, 119.8, 9}, {30.3, 119.8, 11}, {-33.9, 18.4, 11}, {30.25, 119.72, 9}} {
		var fixes []*sarv1.LocationFix
		for k := range 3 {
			seq++
			f := fixAt(seq, now)
			f.Lat, f.Lng = c.lat+float64(k)*1e-5, c.lng
			fixes = append(fixes, f)
		}
		got := checkFixes(fixes, w, c.res, &cells)
		for i, e := range got.entries {
			want, _ := geo.CellAt(fixes[i].GetLat(), fixes[i].GetLng(), c.res)
			if e.Fix.GetCell() != geo.CellString(want) {
				t.Errorf("fix %d at %v,%v res %d: cell %s, want %s", e.Sequence, fixes[i].GetLat(), fixes[i].GetLng(), c.res, e.Fix.GetCell(), geo.CellString(want))
			}
		}
	}
}
