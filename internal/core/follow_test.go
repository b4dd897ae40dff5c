package core

import (
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/geo"
	"github.com/mountain-sar/sar/internal/sar"
)

func TestCallerCollapseDue(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 16, 0, 0, 0, time.UTC)
	fromCaller := &sarv1.SearchGridSummary{FollowCallerFixes: true, OriginParticipantId: "caller", OriginTime: timestamppb.New(t0),
		Origin: &sarv1.LatLng{Lat: 46.6, Lng: 7.9}, OriginAccuracyM: 40}
	adjusted := proto.Clone(fromCaller).(*sarv1.SearchGridSummary)
	adjusted.Adjusted = true
	fix := func(after time.Duration, northM, acc float64) *sarv1.LocationFix {
		// 1° of latitude is 111,195 m on the mean sphere.
		return &sarv1.LocationFix{Lat: 46.6 + northM/111_195, Lng: 7.9, HorizontalAccuracyM: acc, Time: timestamppb.New(t0.Add(after))}
	}
	for _, tc := range []struct {
		name string
		sm   *sarv1.SearchGridSummary
		f    *sarv1.LocationFix
		want bool
	}{
		{"plan from the IPP", &sarv1.SearchGridSummary{FollowCallerFixes: true, Profile: "hiker/temperate/mountainous"}, fix(0, 0, 40), true},
		{"plan does not follow", &sarv1.SearchGridSummary{FollowCallerFixes: false}, fix(0, 0, 40), false},
		{"older fix", fromCaller, fix(-time.Minute, 500, 10), false},
		{"same fix", fromCaller, fix(0, 500, 10), false},
		{"moved, but within 10 s", fromCaller, fix(5*time.Second, 500, 40), false},
		{"moved beyond half the accuracy after 15 s", fromCaller, fix(15*time.Second, 30, 40), true},
		{"within half the accuracy after 15 s", fromCaller, fix(15*time.Second, 15, 40), false},
		{"much more accurate after 15 s", fromCaller, fix(15*time.Second, 0, 20), true},
		{"slightly more accurate after 15 s", fromCaller, fix(15*time.Second, 0, 35), false},
		{"same place 2 min later", fromCaller, fix(2*time.Minute, 0, 40), true},
		{"same place 2 min later, grid adjusted since", adjusted, fix(2*time.Minute, 0, 40), false},
		{"moved, grid adjusted since", adjusted, fix(15*time.Second, 30, 40), true},
		{"20 km away 10 minutes later (33 m/s)", fromCaller, fix(10*time.Minute, 20_000, 20), false},
		{"2 km away an hour later (0.6 m/s)", fromCaller, fix(time.Hour, 2000, 20), true},
	} {
		if got := callerCollapseDue(tc.sm, tc.f); got != tc.want {
			t.Errorf("%s: callerCollapseDue = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestTrailerOneTimerPerIncidentAndClose(t *testing.T) {
	var mu sync.Mutex
	var calls []string
	var again atomic.Bool
	again.Store(true)
	tr := &trailer{flush: func(id string) time.Duration {
		mu.Lock()
		calls = append(calls, id)
		mu.Unlock()
		if id == "a" && again.Swap(false) {
			return time.Millisecond // not yet due: asked again once
		}
		return 0
	}}
	for range 5 {
		tr.schedule("a", 10*time.Millisecond)
		tr.schedule("b", 10*time.Millisecond)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(calls)
		mu.Unlock()
		if n >= 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	tr.schedule("c", time.Hour) // pending at close: never runs
	tr.close()
	tr.schedule("d", time.Millisecond) // after close: ignored
	time.Sleep(20 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(calls)
	if !slices.Equal(calls, []string{"a", "a", "b"}) {
		t.Errorf("flushes = %v, want a twice (asked again once) and b once", calls)
	}
}

// TestCutSegmentsKeepsAssigned checks that re-cutting keeps assigned
// segments whole, cuts every other grid cell exactly once, and numbers new
// segments after every id used before.
func TestCutSegmentsKeepsAssigned(t *testing.T) {
	g0, err := geo.Seed(46.6, 7.9, mustProfile(t), geo.WithResolution(8), geo.WithCut(0.5))
	if err != nil {
		t.Fatalf("Seed: %v", err)
	}
	g := &grid{g: g0, meta: sar.GridMeta{SeedVersion: 1}}
	first, err := cutSegments(nil, g, 5e6)
	if err != nil || len(first.Segments) < 3 {
		t.Fatalf("cutSegments = %+v, %v; want at least 3 segments", first, err)
	}
	if !coversGrid(first, g0) {
		t.Errorf("the first cut leaves grid cells out")
	}
	kept := first.Segments[1]
	kept.Agency, kept.Team, kept.AssignMs = "rescue", "alpha", 1
	first.Segments[1] = kept
	g.meta.SeedVersion = 2
	second, err := cutSegments(first, g, 2e6)
	if err != nil {
		t.Fatalf("cutSegments again: %v", err)
	}
	seen := map[uint64]int{}
	foundKept := false
	for _, ss := range second.Segments {
		if ss.ID == kept.ID {
			foundKept = slices.Equal(ss.Cells, kept.Cells) && ss.Assigned()
			continue
		}
		if ss.ID < first.NextID {
			t.Errorf("new segment id %d reuses an id below %d", ss.ID, first.NextID)
		}
		for _, c := range ss.Cells {
			seen[c]++
		}
	}
	if !foundKept {
		t.Errorf("the assigned segment %d was not kept whole", kept.ID)
	}
	for _, c := range g0.Cells {
		want := 1
		if slices.Contains(kept.Cells, c.ID) {
			want = 0
		}
		if seen[c.ID] != want {
			t.Errorf("cell %x is in %d new segments, want %d", c.ID, seen[c.ID], want)
		}
	}
	if second.SeedVersion != 2 || second.TargetAreaM2 != 2e6 || second.Version != first.Version {
		t.Errorf("second cut = seed %d, area %v, version %d", second.SeedVersion, second.TargetAreaM2, second.Version)
	}
}

func mustProfile(t *testing.T) geo.Profile {
	t.Helper()
	p, err := geo.LookupProfile(geo.Hiker, geo.Temperate, geo.Mountainous)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
