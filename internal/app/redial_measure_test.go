package app

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/mountain-sar/sar/internal/testenv"
)

// TestRedisAnswersAsSoonAsItIsBack kills Redis, makes more failing
// requests than go-redis's dial breaker counts (PoolSize), starts Redis
// and checks that the very next request is answered: without the prompt
// dialer the breaker stays open until its once-a-second probe. It logs,
// and does not assert, how long a failing request took during the outage
// and how soon after Redis was ready the client answered.
func TestRedisAnswersAsSoonAsItIsBack(t *testing.T) {
	r := testenv.StartRedis(t)
	cfg := Defaults()
	cfg.RedisURL = r.URL()
	c, err := redisClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	for round := range 2 {
		if err := c.Ping(ctx).Err(); err != nil {
			t.Fatalf("ping: %v", err)
		}
		r.Stop(testenv.WithSIGKILL())
		n := 20 * runtime.GOMAXPROCS(0) // twice the default PoolSize
		start := time.Now()
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				if c.Ping(cctx).Err() == nil {
					t.Errorf("ping answered with Redis down")
				}
			})
		}
		wg.Wait()
		t.Logf("round %d: %d failing requests in %v during the outage", round, n, time.Since(start))
		r.Start() // returns once redis-server answers PING
		ready := time.Now()
		if err := c.Ping(ctx).Err(); err != nil {
			t.Errorf("round %d: first request after Redis was ready: %v, want an answer", round, err)
		}
		t.Logf("round %d: client answered %v after Redis was ready", round, time.Since(ready))
	}
}
