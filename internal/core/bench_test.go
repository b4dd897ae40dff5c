package core

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mountain-sar/sar/dispatch"
	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/geo"
	"github.com/mountain-sar/sar/internal/auth"
	"github.com/mountain-sar/sar/internal/store"
	"github.com/mountain-sar/sar/internal/testenv"
)

// benchService is a Service on a throwaway redis-server and NATS, with an
// admin context and an incident holding a 95 % hiker grid (about 13,000
// cells at resolution 9).
func benchService(b testing.TB, hooks ...redis.Hook) (*Service, context.Context, *sarv1.Incident) {
	b.Helper()
	return benchServiceStore(b, nil, hooks...)
}

// benchServiceStore is benchService with store options.
func benchServiceStore(b testing.TB, sopts []store.Option, hooks ...redis.Hook) (*Service, context.Context, *sarv1.Incident) {
	b.Helper()
	r := testenv.StartRedis(b)
	n := testenv.StartNATS(b)
	opt, _ := redis.ParseURL(r.URL())
	rdb := redis.NewClient(opt)
	for _, h := range hooks {
		rdb.AddHook(h)
	}
	b.Cleanup(func() { _ = rdb.Close() })
	nc, err := nats.Connect(n.URL())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	bus, err := dispatch.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := bus.EnsureStream(ctx); err != nil {
		b.Fatal(err)
	}
	s := New(DefaultConfig(), store.New(rdb, sopts...), bus, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	b.Cleanup(s.Close)
	ctx = auth.WithPrincipal(ctx, &sarv1.Principal{Role: sarv1.Role_ROLE_ADMIN, CredentialId: "bench"})
	inc, err := s.CreateIncident(ctx, &sarv1.CreateIncidentRequest{Title: "bench", Jurisdiction: "bench",
		InitialPlanningPoint: &sarv1.PlanningPoint{Position: &sarv1.LatLng{Lat: 46.6, Lng: 7.9}},
		Subject:              &sarv1.SubjectProfile{Category: sarv1.SubjectCategory_SUBJECT_CATEGORY_HIKER}})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := s.SetSearchPlan(ctx, &sarv1.SetSearchPlanRequest{IncidentId: inc.GetId()}); err != nil {
		b.Fatal(err)
	}
	return s, ctx, inc
}

// BenchmarkLoadGrid reads a whole 95 % hiker grid from Redis into a
// geo.Grid: what every full read (GetSearchGrid, ListSegments, exports,
// task suggestions) starts with.
func BenchmarkLoadGrid(b *testing.B) {
	s, ctx, inc := benchService(b)
	for b.Loop() {
		if _, err := s.loadGrid(ctx, inc.GetId()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkListSegments is ListSegments on a kept segmentation: load,
// check that it still fits, rank.
func BenchmarkListSegments(b *testing.B) {
	s, ctx, inc := benchService(b)
	req := &sarv1.ListSegmentsRequest{IncidentId: inc.GetId()}
	if _, err := s.ListSegments(ctx, req); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := s.ListSegments(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSuggestNextTask is one suggestion (without assignment) for a
// team at a given position.
func BenchmarkSuggestNextTask(b *testing.B) {
	s, ctx, inc := benchService(b)
	req := &sarv1.SuggestNextTaskRequest{IncidentId: inc.GetId(), Position: &sarv1.LatLng{Lat: 46.62, Lng: 7.88}, Searchers: 5}
	for b.Loop() {
		if _, err := s.SuggestNextTask(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCallerFixCollapse re-seeds the grid to a caller's fix (50 m)
// each time, 200 m from the one before (a fix that moved): the work a
// caller's batch triggers when the collapse is due.
func BenchmarkCallerFixCollapse(b *testing.B) {
	s, ctx, inc := benchService(b)
	t0 := time.Now()
	i := 0
	for b.Loop() {
		i++
		f := &sarv1.LocationFix{Lat: 46.61 + float64(i%2)*200/111_195, Lng: 7.91, HorizontalAccuracyM: 50,
			Time: timestamppb.New(t0.Add(time.Duration(i) * 3 * time.Minute))}
		before, _ := s.st.GridMeta(ctx, inc.GetId())
		s.followCaller(ctx, inc, "caller", f)
		if after, _ := s.st.GridMeta(ctx, inc.GetId()); after.SeedVersion == before.SeedVersion {
			b.Fatal("the fix did not collapse the grid")
		}
	}
}

// benchFixes is a valid batch of n fixes from sequence first on, sequence
// s at t0 + s seconds, a walk north at 2.5 m/s with 4 m accuracy (the
// cells change now and then, and the tracker credits a move every few
// fixes).
func benchFixes(first uint64, n int, t0 time.Time) []*sarv1.LocationFix {
	out := make([]*sarv1.LocationFix, n)
	for i := range out {
		seq := first + uint64(i)
		alt, batt, speed, head := 1650.0, int32(80), 1.4, 90.0
		out[i] = &sarv1.LocationFix{Sequence: seq, Lat: 46.6 + float64(seq)*2.25e-5, Lng: 7.9, HorizontalAccuracyM: 4,
			Time: timestamppb.New(t0.Add(time.Duration(seq) * time.Second)), AltitudeM: &alt, BatteryPercent: &batt,
			SpeedMps: &speed, HeadingDeg: &head}
	}
	return out
}

// BenchmarkCheckFixes10 validates a batch of 10 valid fixes and computes
// their cells (no I/O): the per-fix work of validate.go. Divide by 10 for
// a fix.
func BenchmarkCheckFixes10(b *testing.B) {
	t0 := time.Now().Add(-time.Hour)
	w := fixWindow{notBefore: t0.Add(-time.Hour), notAfter: time.Now()}
	fixes := benchFixes(1, 10, t0)
	for b.Loop() {
		if chk := checkFixes(fixes, w, 9, &geo.CellFinder{}); len(chk.entries) != 10 {
			b.Fatal("fixes refused")
		}
	}
}

// BenchmarkIngestRescuer10 is Service.Ingest of a rescuer's batch of 10
// new fixes on real Redis and NATS, on an incident with a search plan (so
// each batch also adds coverage): the whole hot path of a batch. Divide by
// 10 for a fix.
func BenchmarkIngestRescuer10(b *testing.B) {
	s, ctx, _ := benchService(b)
	rctx, p, inc := rescuerOnPlan(b, s, ctx)
	t0 := time.Now().Add(-20 * time.Hour) // 24 h is the past margin: 20 h of fixes fit before the future
	seq := uint64(1)
	for b.Loop() {
		batch := &sarv1.FixBatch{IncidentId: inc.GetId(), DeviceId: "phone", Fixes: benchFixes(seq, 10, t0)}
		ack, err := s.Ingest(rctx, p, batch)
		if err != nil {
			b.Fatal(err)
		}
		if len(ack.GetStored()) != 10 {
			b.Fatalf("stored %d of 10", len(ack.GetStored()))
		}
		seq += 10
	}
}

// rescuerOnPlan makes an agency, an incident assigning it with a search
// plan, and a rescuer of the agency whose device "phone" joined it.
func rescuerOnPlan(b testing.TB, s *Service, ctx context.Context) (context.Context, *sarv1.Principal, *sarv1.Incident) {
	b.Helper()
	if _, err := s.CreateAgency(ctx, &sarv1.Agency{Id: "benchag", Name: "bench", Kind: sarv1.AgencyKind_AGENCY_KIND_VOLUNTEER_RESCUE, Jurisdiction: "bench"}); err != nil {
		b.Fatal(err)
	}
	inc, err := s.CreateIncident(ctx, &sarv1.CreateIncidentRequest{Title: "bench", Jurisdiction: "bench", AgencyIds: []string{"benchag"},
		InitialPlanningPoint: &sarv1.PlanningPoint{Position: &sarv1.LatLng{Lat: 46.6, Lng: 7.9}},
		Subject:              &sarv1.SubjectProfile{Category: sarv1.SubjectCategory_SUBJECT_CATEGORY_HIKER}})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := s.SetSearchPlan(ctx, &sarv1.SetSearchPlanRequest{IncidentId: inc.GetId()}); err != nil {
		b.Fatal(err)
	}
	p := &sarv1.Principal{Role: sarv1.Role_ROLE_RESCUER, CredentialId: "benchcred", AgencyId: "benchag"}
	rctx := auth.WithPrincipal(context.Background(), p)
	if _, err := s.JoinIncident(rctx, &sarv1.JoinIncidentRequest{IncidentId: inc.GetId(), DeviceId: "phone"}); err != nil {
		b.Fatal(err)
	}
	return rctx, p, inc
}
