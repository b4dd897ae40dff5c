package app

import (
	"context"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestConfigCheckedAtStart: each bad value is refused by Start with a
// message naming its flag, before anything starts (no data directory made,
// no listener, no backend).
func TestConfigCheckedAtStart(t *testing.T) {
	if err := Defaults().Check(); err != nil {
		t.Fatalf("the defaults are refused: %v", err)
	}
	for _, c := range []struct {
		flag string
		set  func(*Config)
	}{
		{"--grpc-addr", func(c *Config) { c.GRPCAddr = "localhost" }},
		{"--http-addr", func(c *Config) { c.HTTPAddr = "127.0.0.1:99999" }},
		{"--http-addr", func(c *Config) { c.GRPCAddr, c.HTTPAddr = "127.0.0.1:50999", "127.0.0.1:50999" }},
		{"--nats-listen", func(c *Config) { c.NATSListen = "0.0.0.0" }},
		{"--redis-url", func(c *Config) { c.RedisURL, c.NATSURL = "http://:s3cret@host:6379", "nats://host:4222" }},
		{"--redis-url", func(c *Config) { c.RedisURL, c.NATSURL = "redis://:s3cret@host:6379/notadb", "nats://host:4222" }},
		{"--redis-url", func(c *Config) {
			c.RedisURL, c.NATSURL = "rediss://:s3cret@host:6380/0?skip_verify=true", "nats://host:4222"
		}},
		{"--redis-url", func(c *Config) {
			c.RedisURL, c.RedisCluster, c.NATSURL = "rediss://h1:6380?addr=h2:6380&skip_verify=true", true, "nats://host:4222"
		}},
		{"--nats-url", func(c *Config) { c.RedisURL, c.NATSURL = "redis://host:6379", "nats://a:4222,host-without-scheme" }},
		{"--nats-url", func(c *Config) { c.RedisURL, c.NATSURL = "redis://host:6379", "http://host:4222" }},
		{"--nats-replicas", func(c *Config) { c.NATSReplicas = 0 }},
		{"--nats-replicas", func(c *Config) { c.NATSReplicas = 6 }},
		{"--nats-replicas", func(c *Config) { c.NATSReplicas = 3 }},                                             // embedded: one node
		{"--redis-wait-replicas", func(c *Config) { c.RedisWaitReplicas, c.RedisWaitTimeout = 1, time.Second }}, // embedded: no replicas
		{"--redis-wait-replicas", func(c *Config) {
			c.RedisURL, c.NATSURL, c.RedisWaitReplicas, c.RedisWaitTimeout = "redis://host:6379", "nats://host:4222", 17, time.Second
		}},
		{"--redis-wait-timeout", func(c *Config) {
			c.RedisURL, c.NATSURL, c.RedisWaitReplicas, c.RedisWaitTimeout = "redis://host:6379", "nats://host:4222", 1, 3*time.Second
		}},
		{"--resolution", func(c *Config) { c.Resolution = 13 }},
		{"--track-max", func(c *Config) { c.TrackMax = 0 }},
		{"--retention", func(c *Config) { c.Retention = 0 }},
		{"--rate-limit", func(c *Config) { c.RateLimit = -1 }},
		{"--rate-limit", func(c *Config) { c.RateLimit = math.NaN() }},
		{"--rate-burst", func(c *Config) { c.RateBurst = 0 }},
		{"--shutdown-timeout", func(c *Config) { c.ShutdownTimeout = -time.Second }},
		{"--escalation-interval", func(c *Config) { c.EscalationInterval = 0 }},
		{"--min-answer-within", func(c *Config) { c.MinAnswerWithin = 0 }},
		{"--data-dir", func(c *Config) { c.DataDir = "" }},
		{"--link-rate-limit", func(c *Config) { c.LinkRateLimit = -1 }},
		{"--addr-rate-burst", func(c *Config) { c.AddrRateBurst = -1 }},
		{"--public-url", func(c *Config) { c.PublicURL = "ftp://sar.example.org" }},
	} {
		cfg := Defaults()
		dir := filepath.Join(t.TempDir(), "data")
		cfg.GRPCAddr, cfg.HTTPAddr, cfg.DataDir = "127.0.0.1:0", "127.0.0.1:0", dir
		cfg.HTTPAddr = "127.0.0.1:1" // distinct from the gRPC address unless the case makes them equal
		c.set(&cfg)
		a, err := Start(context.Background(), cfg, slog.New(slog.NewTextHandler(&syncBuffer{}, nil)))
		if err == nil {
			_ = a.Close()
			t.Errorf("%s: Start accepted the configuration", c.flag)
			continue
		}
		if !strings.Contains(err.Error(), c.flag) || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: Start = %v; want a refusal naming the flag, without the password", c.flag, err)
		}
		if _, serr := os.Stat(dir); serr == nil {
			t.Errorf("%s: the data directory was made before the refusal", c.flag)
		}
	}
}
