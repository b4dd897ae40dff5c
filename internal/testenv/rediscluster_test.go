package testenv

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestRedisCluster(t *testing.T) {
	ctx := t.Context()
	c := StartRedisCluster(t, 3)

	addrs := c.Addrs()
	if len(addrs) != 3 {
		t.Fatalf("Addrs() = %v, want 3 addresses", addrs)
	}
	opts, err := redis.ParseClusterURL(c.URL())
	if err != nil {
		t.Fatalf("redis.ParseClusterURL(%q) = %v", c.URL(), err)
	}
	if got, want := strings.Join(opts.Addrs, " "), strings.Join(addrs, " "); got != want {
		t.Fatalf("redis.ParseClusterURL(%q).Addrs = %s, want %s", c.URL(), got, want)
	}
	client := redis.NewClusterClient(opts)
	t.Cleanup(func() { client.Close() })

	// Keys without hash tags spread over the slots, so over every master.
	const keys = 30
	for i := range keys {
		key := fmt.Sprintf("incident:%d", i)
		if err := client.Set(ctx, key, i, 0).Err(); err != nil {
			t.Fatalf("SET %s = %v", key, err)
		}
	}
	for i := range keys {
		key := fmt.Sprintf("incident:%d", i)
		if got, err := client.Get(ctx, key).Int(); err != nil || got != i {
			t.Errorf("GET %s = %d, %v; want %d, nil", key, got, err, i)
		}
	}
	var (
		mu    sync.Mutex
		sizes = map[string]int64{}
	)
	err = client.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		n, err := m.DBSize(ctx).Result()
		mu.Lock()
		defer mu.Unlock()
		sizes[m.Options().Addr] = n
		return err
	})
	if err != nil {
		t.Fatalf("DBSIZE on each master = %v", err)
	}
	var total int64
	for _, n := range sizes {
		total += n
	}
	if len(sizes) != 3 || total != keys {
		t.Errorf("keys per master = %v, want %d keys over 3 masters", sizes, keys)
	}
	for addr, n := range sizes {
		if n == 0 {
			t.Errorf("master %s holds no key of %d, want some", addr, keys)
		}
	}

	// A multi-key script works on keys that share a hash tag...
	script := redis.NewScript(`
		redis.call('INCRBY', KEYS[1], ARGV[1])
		redis.call('RPUSH', KEYS[2], ARGV[2])
		return redis.call('GET', KEYS[1])`)
	tagged := []string{"{incident:7}:found", "{incident:7}:log"}
	got, err := script.Run(ctx, client, tagged, 2, "team A found them").Text()
	if err != nil || got != "2" {
		t.Errorf("EVAL on %v = %q, %v; want \"2\", nil", tagged, got, err)
	}
	if n, err := client.LLen(ctx, tagged[1]).Result(); err != nil || n != 1 {
		t.Errorf("LLEN %s = %d, %v; want 1, nil", tagged[1], n, err)
	}
	// ...and is refused on keys in different slots: a real cluster.
	apart := []string{"incident:1", "incident:2"}
	if client.ClusterKeySlot(ctx, apart[0]).Val() == client.ClusterKeySlot(ctx, apart[1]).Val() {
		t.Fatalf("keys %v share a slot, want different slots", apart)
	}
	if _, err := script.Run(ctx, client, apart, 1, "x").Result(); err == nil || !strings.Contains(err.Error(), "CROSSSLOT") {
		t.Errorf("EVAL on %v = %v, want a CROSSSLOT error", apart, err)
	}

	c.Stop()
	for _, addr := range addrs {
		if _, err := respDo(addr, time.Second, "PING"); err == nil {
			t.Errorf("PING %s after Stop = nil, want an error", addr)
		}
	}
}
