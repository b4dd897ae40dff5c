package server_test

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/app"
	"github.com/mountain-sar/sar/internal/auth"
	"github.com/mountain-sar/sar/internal/testenv"
)

// TestRedisCluster runs the whole path on a three-master Redis Cluster:
// every incident's keys share one hash slot, so the multi-key scripts run
// unchanged, and the cross-incident indexes are used one key at a time.
func TestRedisCluster(t *testing.T) {
	cluster := testenv.StartRedisCluster(t, 3)
	e := &env{t: t, nats: testenv.StartNATS(t)}
	e.admin, _, _ = auth.NewToken()
	cfg := app.Defaults()
	cfg.GRPCAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.RedisURL, cfg.RedisCluster, cfg.NATSURL, cfg.AdminToken = cluster.URL(), true, e.nats.URL(), e.admin
	cfg.RateLimit, cfg.RateBurst = 10000, 10000
	a, err := app.Start(context.Background(), cfg, testLogger(t))
	if err != nil {
		t.Fatalf("app.Start on cluster: %v", err)
	}
	t.Cleanup(func() { _ = a.Close() })
	e.app = a
	e.rdb = redis.NewClusterClient(&redis.ClusterOptions{Addrs: cluster.Addrs()})
	t.Cleanup(func() { _ = e.rdb.Close() })
	e.connect()

	e.createAgency("police-north", "north", sarv1.AgencyKind_AGENCY_KIND_POLICE_STATION)
	e.createAgency("fire-north", "north", sarv1.AgencyKind_AGENCY_KIND_FIRE_BRIGADE)
	op := e.operator("north")
	officer := e.rescuer("police-north", "")
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cluster.Addrs()})
	defer cc.Close()
	ctx := context.Background()
	masterOf := func(inc *sarv1.Incident) string {
		node, err := cc.MasterForKey(ctx, "sar:{"+inc.GetId()+"}:inc")
		if err != nil {
			t.Fatalf("MasterForKey: %v", err)
		}
		return node.Options().Addr
	}
	// At least 6 incidents, and more until they are on two masters or
	// more (6 random ones all land on one of 3 masters in 0.4 % of runs).
	var incidents []*sarv1.Incident
	masters := map[string]bool{}
	for len(incidents) < 6 || len(masters) < 2 && len(incidents) < 20 {
		inc := e.createIncident(op, "police-north", "fire-north")
		masters[masterOf(inc)] = true
		incidents = append(incidents, inc)
		e.join(officer, inc.GetId(), "phone")
		d := e.openDevice(officer, inc.GetId(), "phone")
		if ack := d.send(walk(1, 10, time.Now())...); len(ack.GetStored()) != 10 {
			t.Fatalf("cluster ingest ack = %v, want 10 stored", ack)
		}
		if ack := d.send(walk(5, 10, time.Now())...); len(ack.GetStored()) != 4 || len(ack.GetDuplicates()) != 6 {
			t.Fatalf("cluster overlapping ingest (5-14 after 1-10) ack = %v, want 11-14 stored and 5-10 duplicates", ack)
		}
		d.close()
	}
	// Pages of 4 across the masters: every incident once, full pages
	// until the last.
	seen := map[string]bool{}
	token := ""
	for page := 0; ; page++ {
		list := must[*sarv1.ListIncidentsResponse](t, "ListIncidents")(e.inc.ListIncidents(e.as(op),
			&sarv1.ListIncidentsRequest{PageSize: 4, PageToken: token}))
		for _, inc := range list.GetIncidents() {
			seen[inc.GetId()] = true
		}
		token = list.GetNextPageToken()
		if token == "" {
			if want := len(incidents) - 4*page; len(list.GetIncidents()) != want {
				t.Errorf("last page (%d) = %d incidents, want %d", page, len(list.GetIncidents()), want)
			}
			break
		}
		if len(list.GetIncidents()) != 4 || page > len(incidents)/4 {
			t.Fatalf("page %d = %d incidents with a next-page token; want 4, and at most %d pages", page, len(list.GetIncidents()), len(incidents)/4+1)
		}
	}
	if len(seen) != len(incidents) {
		t.Errorf("pages hold %d distinct incidents, want %d", len(seen), len(incidents))
	}
	for _, inc := range incidents {
		if !seen[inc.GetId()] {
			t.Errorf("incident %s missing from the pages", inc.GetId())
		}
	}

	for _, inc := range incidents {
		slot, err := cc.ClusterKeySlot(ctx, "sar:{"+inc.GetId()+"}:inc").Result()
		if err != nil {
			t.Fatalf("CLUSTER KEYSLOT: %v", err)
		}
		for _, suffix := range []string{"seq", "dev", "last", "cells", "cellt", "outbox"} {
			if s, _ := cc.ClusterKeySlot(ctx, "sar:{"+inc.GetId()+"}:"+suffix).Result(); s != slot {
				t.Errorf("key %s in slot %d, want the incident's slot %d", suffix, s, slot)
			}
		}
		if n, err := cc.HLen(ctx, "sar:{"+inc.GetId()+"}:seq").Result(); err != nil || n != 1 {
			t.Errorf("device sequences of %s = %d, %v; want 1", inc.GetId(), n, err)
		}
	}
	if len(masters) < 2 {
		t.Errorf("incidents landed on %d masters, want them spread (test too weak)", len(masters))
	}

	// The search grid's scripts and transactions on the cluster: seed,
	// coverage from a track, a consistent whole and incremental read,
	// segments and an assignment.
	for _, inc := range incidents[:2] {
		id := inc.GetId()
		plan := must[*sarv1.SetSearchPlanResponse](t, "SetSearchPlan")(e.search().SetSearchPlan(e.as(op),
			&sarv1.SetSearchPlanRequest{IncidentId: id, Cut: 0.3})).GetGrid()
		e.join(officer, id, "phone-2")
		d := e.openDevice(officer, id, "phone-2")
		if ack := d.send(line(1, 30, time.Now().Add(-10*time.Minute))...); len(ack.GetStored()) != 30 {
			t.Fatalf("track ack = %v, want 30 stored", ack)
		}
		d.close()
		full := e.grid(op, id, 0)
		cells := checkNormalised(t, "cluster grid", full)
		covered := 0
		for _, c := range cells {
			if c.GetCoverage() > 0 {
				covered++
			}
		}
		changed := e.grid(op, id, plan.GetSeedVersion())
		if covered == 0 || len(changed.GetCells()) != covered || changed.GetFull() {
			t.Errorf("cluster grid: %d covered cells, %d changed since the seed (full %v); want the same, > 0",
				covered, len(changed.GetCells()), changed.GetFull())
		}
		for _, c := range changed.GetCells() {
			if w := cells[c.GetCell()]; w == nil || math.Abs(w.GetPoa()-c.GetPoa()) > 1e-12 {
				t.Errorf("incremental cell %s: POA %v, whole read %v", c.GetCell(), c.GetPoa(), w.GetPoa())
			}
		}
		sug := must[*sarv1.SuggestNextTaskResponse](t, "SuggestNextTask")(e.search().SuggestNextTask(e.as(op),
			&sarv1.SuggestNextTaskRequest{IncidentId: id, Team: &sarv1.TeamRef{AgencyId: "police-north"}, Assign: true}))
		segs := must[*sarv1.ListSegmentsResponse](t, "ListSegments")(e.search().ListSegments(e.as(op), &sarv1.ListSegmentsRequest{IncidentId: id}))
		assigned := 0
		for _, s := range segs.GetSegments() {
			if s.GetAssignedTeam() != nil {
				assigned++
				if s.GetId() != sug.GetSegment().GetId() {
					t.Errorf("segment %d assigned, want only the suggested %d", s.GetId(), sug.GetSegment().GetId())
				}
			}
		}
		if !sug.GetAssigned() || assigned != 1 {
			t.Errorf("cluster suggestion assigned=%v, %d segments assigned; want the suggested one", sug.GetAssigned(), assigned)
		}
	}
}
