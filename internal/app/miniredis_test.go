package app

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/auth"
)

// Without redis-server on the PATH the embedded start runs on in-process
// miniredis, and says so. Every script runs there too: a rescuer's batches
// on an incident with a search plan are stored, and their coverage is
// credited after the ack by the search work (the queue drains).
func TestEmbeddedStartOnMiniredis(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // no redis-server
	cfg := Defaults()
	cfg.GRPCAddr, cfg.HTTPAddr, cfg.DataDir = "127.0.0.1:0", "127.0.0.1:0", t.TempDir()
	logs := &syncBuffer{}
	a, err := Start(context.Background(), cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	defer a.Close()
	if a.Embedded.RedisKind != "miniredis" || !strings.Contains(logs.String(), "miniredis") {
		t.Fatalf("Embedded = %+v; want miniredis, said in the log:\n%s", a.Embedded, logs.String())
	}
	c := a.Core
	admin := auth.WithPrincipal(context.Background(), &sarv1.Principal{Role: sarv1.Role_ROLE_ADMIN, CredentialId: "test"})
	if _, err := c.CreateAgency(admin, &sarv1.Agency{Id: "police", Name: "police", Kind: sarv1.AgencyKind_AGENCY_KIND_POLICE_STATION, Jurisdiction: "local"}); err != nil {
		t.Fatal(err)
	}
	inc, err := c.CreateIncident(admin, &sarv1.CreateIncidentRequest{Title: "mini", Jurisdiction: "local", AgencyIds: []string{"police"},
		InitialPlanningPoint: &sarv1.PlanningPoint{Position: &sarv1.LatLng{Lat: 46.6, Lng: 7.9}},
		Subject:              &sarv1.SubjectProfile{Category: sarv1.SubjectCategory_SUBJECT_CATEGORY_HIKER}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetSearchPlan(admin, &sarv1.SetSearchPlanRequest{IncidentId: inc.GetId()}); err != nil {
		t.Fatal(err)
	}
	p := &sarv1.Principal{Role: sarv1.Role_ROLE_RESCUER, CredentialId: "rescuer", AgencyId: "police"}
	rctx := auth.WithPrincipal(context.Background(), p)
	if _, err := c.JoinIncident(rctx, &sarv1.JoinIncidentRequest{IncidentId: inc.GetId(), DeviceId: "phone"}); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().Add(-time.Hour)
	for b := range 20 { // 200 fixes, 500 m north
		fixes := make([]*sarv1.LocationFix, 10)
		for i := range fixes {
			seq := uint64(b*10 + i + 1)
			fixes[i] = &sarv1.LocationFix{Sequence: seq, Lat: 46.6 + float64(seq)*2.25e-5, Lng: 7.9, HorizontalAccuracyM: 4,
				Time: timestamppb.New(t0.Add(time.Duration(seq) * time.Second))}
		}
		ack, err := c.Ingest(rctx, p, &sarv1.FixBatch{IncidentId: inc.GetId(), DeviceId: "phone", Fixes: fixes})
		if err != nil || len(ack.GetStored()) != 10 {
			t.Fatalf("batch %d: %v, %v", b, ack, err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		g, err := c.GetSearchGrid(admin, &sarv1.GetSearchGridRequest{IncidentId: inc.GetId()})
		if err != nil {
			t.Fatal(err)
		}
		if sm := g.GetGrid(); sm.GetSearchWorkPending() == 0 && sm.GetProbabilityOfSuccess() > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("grid %v: the coverage was not credited on miniredis", g.GetGrid())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
