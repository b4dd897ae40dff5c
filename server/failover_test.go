package server_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/app"
	"github.com/mountain-sar/sar/internal/auth"
	"github.com/mountain-sar/sar/internal/testenv"
)

// TestRedisMasterFailoverLosesNothingAcknowledged runs sard with
// --redis-wait-replicas 1 on a Redis Cluster of three masters while phones
// of several incidents stream. The master of one incident is killed
// (SIGKILL); a replica takes over after cluster-node-timeout, and sard
// finds it (its slot map is reloaded on the errors). Every fix ever
// acknowledged is then in Redis exactly once.
//
// With one replica per master the new master has none: until the old
// master comes back as its replica, that incident's batches are refused
// (stored, but no replica confirmed them), while the other incidents' are
// acknowledged. With two, the other replica follows the new master and
// acknowledgements resume as soon as the failover ends.
//
// The cluster runs with cluster-require-full-coverage no, as the README
// advises: the incidents on the other masters are never refused, not even
// while the dead master's slots have no owner (sard sends each master's
// batches in groups of their own).
func TestRedisMasterFailoverLosesNothingAcknowledged(t *testing.T) {
	t.Run("one replica per master", func(t *testing.T) { testMasterFailover(t, 1) })
	t.Run("two replicas per master", func(t *testing.T) { testMasterFailover(t, 2) })
}

func testMasterFailover(t *testing.T, replicas int) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cluster := testenv.StartRedisCluster(t, 3, testenv.WithClusterReplicas(replicas),
		testenv.WithClusterArgs("--cluster-node-timeout", "1000", "--cluster-require-full-coverage", "no"))
	e := &env{t: t, nats: testenv.StartNATS(t)}
	e.admin, _, _ = auth.NewToken()
	cfg := app.Defaults()
	cfg.GRPCAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.RedisURL, cfg.RedisCluster, cfg.NATSURL, cfg.AdminToken = cluster.URL(), true, e.nats.URL(), e.admin
	cfg.RedisWaitReplicas, cfg.RedisWaitTimeout = 1, 300*time.Millisecond
	cfg.RateLimit, cfg.RateBurst = 10000, 10000
	cfg.ShutdownTimeout = 5 * time.Second
	a, err := app.Start(ctx, cfg, testLogger(t))
	if err != nil {
		t.Fatalf("app.Start: %v", err)
	}
	t.Cleanup(func() { _ = a.Close() })
	e.app = a
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cluster.Addrs()})
	t.Cleanup(func() { _ = cc.Close() })
	e.rdb = cc
	e.connect()

	e.createAgency("police-north", "north", sarv1.AgencyKind_AGENCY_KIND_POLICE_STATION)
	op := e.operator("north")
	masterOf := func(inc string) string {
		node, err := cc.MasterForKey(ctx, "sar:{"+inc+"}:inc")
		if err != nil {
			t.Fatalf("MasterForKey: %v", err)
		}
		return node.Options().Addr
	}
	// Incidents until they are on two masters or more, two phones each.
	var (
		incidents []string
		devs      []*rescuerPhone
	)
	masters := map[string]bool{}
	for len(incidents) < 3 || len(masters) < 2 && len(incidents) < 20 {
		inc := e.createIncident(op, "police-north").GetId()
		masters[masterOf(inc)] = true
		incidents = append(incidents, inc)
		for p := range 2 {
			d := &rescuerPhone{id: fmt.Sprintf("phone-%d", p), inc: inc, token: e.rescuer("police-north", ""),
				lat: 30.2458 + 0.001*float64(len(devs)), base: time.Now().Add(-2 * time.Minute)}
			d.participant = e.join(d.token, inc, d.id).GetParticipant().GetId()
			devs = append(devs, d)
		}
	}
	if len(masters) < 2 {
		t.Fatalf("%d incidents all on one master: the test needs two", len(incidents))
	}
	victim := masterOf(incidents[0])
	onVictim := func(d *rescuerPhone) bool { return masterOf(d.inc) == victim }
	others := func(d *rescuerPhone) bool { return !onVictim(d) }

	stopAll := runPhones(ctx, []*grpc.ClientConn{e.conn}, devs)
	defer func() { cancel(); stopAll() }() // on a failure, the phones stop at once
	progress := func(what string, n int64, only func(*rescuerPhone) bool) {
		t.Helper()
		want := make([]int64, len(devs))
		for i, d := range devs {
			want[i] = d.storedBatches.Load() + n
		}
		waitUntil(t, ctx, what, 60*time.Second, func() bool {
			for i, d := range devs {
				if (only == nil || only(d)) && d.storedBatches.Load() < want[i] {
					return false
				}
			}
			return true
		})
	}
	progress("ingest on every master", 3, nil)

	old := cluster.Node(victim)
	t.Logf("killing Redis master %s (incidents %d of %d)", victim, countOn(incidents, masterOf, victim), len(incidents))
	old.Stop(testenv.WithSIGKILL())
	waitUntil(t, ctx, "the replica's promotion", 30*time.Second, func() bool {
		cc.ReloadState(ctx)
		node, err := cc.MasterForKey(ctx, "sar:{"+incidents[0]+"}:inc")
		return err == nil && node.Options().Addr != victim && node.Ping(ctx).Err() == nil
	})
	promoted := masterOf(incidents[0])
	t.Logf("the replica %s took over", promoted)
	onVictim = func(d *rescuerPhone) bool { return masterOf(d.inc) == promoted }
	progress("ingest on the masters that kept their replicas", 3, others)

	if replicas > 1 {
		progress("ingest on every master, the new one with the other replica", 3, nil)
	} else {
		refusedWithoutReplica(t, ctx, devs, onVictim, func() { progress("more ingest on the other masters", 3, others) })
	}

	old.Start()
	oldClient := redis.NewClient(&redis.Options{Addr: victim})
	defer oldClient.Close()
	waitUntil(t, ctx, "the old master back as the new one's replica", 30*time.Second, func() bool {
		info, err := oldClient.Info(ctx, "replication").Result()
		return err == nil && strings.Contains(info, "role:slave") && strings.Contains(info, "master_link_status:up") &&
			strings.Contains(info, "master_port:"+strings.Split(promoted, ":")[1]+"\r\n")
	})
	progress("ingest on every master again", 3, nil)

	stopAll()
	refused := 0
	for _, d := range devs {
		if n := d.refused.Load(); others(d) && n > 0 {
			t.Errorf("%s of %s, on a master that kept running: %d batches refused (last: %q), want none",
				d.id, d.inc, n, d.lastProblem.Load())
		}
		if d.err != nil {
			t.Errorf("%s of %s: %v", d.id, d.inc, d.err)
		}
		if d.acked != d.next-1 {
			t.Errorf("%s of %s: acked through %d, made fixes through %d: its outbox did not empty", d.id, d.inc, d.acked, d.next-1)
		}
		refused += int(d.refused.Load())
	}
	total := 0
	for _, d := range devs {
		total += d.checkStored(t, e.loc, e.as(op))
	}
	t.Logf("%d fixes stored from %d phones on %d incidents; %d batches refused and sent again", total, len(devs), len(incidents), refused)
}

func countOn(incidents []string, masterOf func(string) string, addr string) int {
	n := 0
	for _, inc := range incidents {
		if masterOf(inc) == addr {
			n++
		}
	}
	return n
}

// refusedWithoutReplica checks that, while the incidents of onVictim are
// on a master without a replica, their batches are refused for want of
// one and none is acknowledged, while during() (which waits for the other
// incidents' progress) runs.
func refusedWithoutReplica(t *testing.T, ctx context.Context, devs []*rescuerPhone, onVictim func(*rescuerPhone) bool, during func()) {
	t.Helper()
	held := make([]int64, len(devs))
	for i, d := range devs {
		held[i] = d.storedBatches.Load()
	}
	start := time.Now()
	if !poll(ctx, 30*time.Second, func() bool {
		for _, d := range devs {
			if msg, _ := d.lastProblem.Load().(string); onVictim(d) && !strings.Contains(msg, "Redis replicas confirmed") {
				return false
			}
		}
		return true
	}) {
		for _, d := range devs {
			if onVictim(d) {
				t.Errorf("%s of %s: last refused with %q", d.id, d.inc, d.lastProblem.Load())
			}
		}
		t.Fatal("the batches of the incidents on the promoted master were not refused for want of a replica")
	}
	t.Logf("batches reached the promoted master %v after it was found", time.Since(start).Round(time.Millisecond))
	during()
	for i, d := range devs {
		if got := d.storedBatches.Load(); onVictim(d) && got != held[i] {
			t.Errorf("%s of %s: %d batches acknowledged by a master without a replica, want none", d.id, d.inc, got-held[i])
		}
	}
}
