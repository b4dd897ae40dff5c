package server_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"

	"github.com/mountain-sar/sar/internal/app"
	"github.com/mountain-sar/sar/internal/testenv"
)

// With --redis-wait-replicas 1 a batch is acknowledged only once the
// master's replica holds it: read from the replica right after the ack,
// the batch is there. With the replica down, the batch is refused as
// UNAVAILABLE (stored on the master, not acknowledged); resent once the
// replica is back, it is acknowledged, each fix stored once.
func TestBatchesWaitForRedisReplicas(t *testing.T) {
	e := startEnv(t, func(c *app.Config) { c.RedisWaitReplicas, c.RedisWaitTimeout = 1, 300*time.Millisecond })
	host, port, _ := net.SplitHostPort(e.redis.Addr())
	replica := testenv.StartRedis(t, testenv.WithRedisArgs("--replicaof", host, port))
	ropt, _ := redis.ParseURL(replica.URL())
	rdb := redis.NewClient(ropt)
	t.Cleanup(func() { _ = rdb.Close() })
	synced := func() bool {
		info, err := rdb.Info(context.Background(), "replication").Result()
		return err == nil && strings.Contains(info, "master_link_status:up")
	}
	eventually(t, "the replica in sync", synced)

	_, officer, inc := e.officerOnIncident()
	pid := e.participantOf(inc.GetId(), "phone")
	d := e.openDevice(officer, inc.GetId(), "phone")
	trk := "sar:{" + inc.GetId() + "}:trk:" + pid
	end := time.Now()
	if ack := d.send(walk(1, 10, end.Add(-100*time.Second))...); len(ack.GetStored()) != 10 {
		t.Fatalf("first batch: %v", ack)
	}
	if n, err := rdb.ZCard(context.Background(), trk).Result(); err != nil || n != 10 {
		t.Fatalf("the replica holds %d fixes of the acknowledged batch (%v), want 10", n, err)
	}

	replica.Stop()
	ack := d.send(walk(11, 10, end)...)
	if ack.GetProblem().GetCode() != uint32(codes.Unavailable) || len(ack.GetStored()) != 0 || ack.GetAckedThrough() != 0 {
		t.Fatalf("a batch with the replica down: %v; want a batch-level UNAVAILABLE problem and nothing acknowledged", ack)
	}
	if !strings.Contains(ack.GetProblem().GetMessage(), "replicas") {
		t.Errorf("problem %q does not say why", ack.GetProblem().GetMessage())
	}

	replica.Start()
	eventually(t, "the replica in sync again", synced)
	ack = d.send(walk(11, 10, end)...)
	if ack.GetProblem() != nil || ack.GetAckedThrough() != 20 || len(ack.GetDuplicates()) != 10 {
		t.Fatalf("the resent batch: %v; want acked through 20, its fixes duplicates (stored before)", ack)
	}
	if n, err := rdb.ZCard(context.Background(), trk).Result(); err != nil || n != 20 {
		t.Fatalf("the replica holds %d fixes (%v), want 20, each once", n, err)
	}
}
