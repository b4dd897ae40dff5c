package main

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/alecthomas/kong"

	"github.com/mountain-sar/sar/internal/app"
	"github.com/mountain-sar/sar/internal/auth"
	"github.com/mountain-sar/sar/internal/testenv"
	"github.com/mountain-sar/sar/internal/tlsutil"
)

// bench ingest --addrs spreads its devices over several replicas of one
// Redis and NATS: every replica stores fixes, the watcher on the first
// sees the events of all, and the CPU is summed over their pages.
func TestBenchIngestAcrossReplicas(t *testing.T) {
	redis, nats := testenv.StartRedis(t), testenv.StartNATS(t)
	admin, _, _ := auth.NewToken()
	var addrs []string
	var metrics string
	var pages []string
	for i := range 2 {
		cfg := app.Defaults()
		cfg.GRPCAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
		cfg.RedisURL, cfg.NATSURL, cfg.AdminToken = redis.URL(), nats.URL(), admin
		cfg.RateLimit, cfg.RateBurst = 100_000, 100_000
		cfg.ShutdownTimeout = 5 * time.Second
		a, err := app.Start(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatalf("app.Start replica %d: %v", i, err)
		}
		t.Cleanup(func() { _ = a.Close() })
		addrs = append(addrs, a.GRPCAddr())
		pages = append(pages, "http://"+a.HTTPAddr()+"/metrics")
		if metrics != "" {
			metrics += ","
		}
		metrics += pages[i]
	}
	o := benchOptions{Addrs: addrs, Token: admin, Devices: 4, Batch: 10, Duration: 2 * time.Second, Inflight: 1,
		Log: t.Output(), MetricsURL: metrics, MetricsRequired: true}
	res, err := runBench(t.Context(), o)
	if err != nil {
		t.Fatalf("runBench: %v", err)
	}
	if res.Replicas != 2 || res.Errors != 0 || res.Sent <= 0 || res.Stored != res.Sent || res.EventsMissing != 0 {
		t.Errorf("runBench across 2 replicas: replicas %d, errors %d (%q), sent %d, stored %d, events missing %d; want 2, 0, > 0, = sent, 0",
			res.Replicas, res.Errors, res.ErrorSamples, res.Sent, res.Stored, res.EventsMissing)
	}
	if res.CPUUsPerFix <= 0 {
		t.Errorf("runBench: cpu_us_per_fix = %v, want > 0", res.CPUUsPerFix)
	}
	var total float64
	for _, page := range pages {
		m, err := scrapeMetrics(t.Context(), tlsutil.Client{}, page, "sar_fixes_stored_total")
		if err != nil {
			t.Fatalf("scrape %s: %v", page, err)
		}
		if m["sar_fixes_stored_total"] <= 0 {
			t.Errorf("%s: sar_fixes_stored_total = %v, want > 0: every replica gets devices", page, m["sar_fixes_stored_total"])
		}
		total += m["sar_fixes_stored_total"]
	}
	if int64(total) != res.Stored {
		t.Errorf("fixes stored by the replicas = %v, want %d (the bench's)", total, res.Stored)
	}

	// The flag: comma-separated, with an environment fallback.
	t.Setenv("SAR_BENCH_ADDRS", "10.0.0.1:50051,10.0.0.2:50051")
	var cli CLI
	p, err := kong.New(&cli, kong.Name("sarctl"), kong.Vars{"version": "test"})
	if err != nil {
		t.Fatalf("kong.New: %v", err)
	}
	if _, err := p.Parse([]string{"bench", "ingest"}); err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if got := cli.Bench.Ingest.Addrs; len(got) != 2 || got[1] != "10.0.0.2:50051" {
		t.Errorf("SAR_BENCH_ADDRS: --addrs = %q, want the two addresses", got)
	}
	if err := (benchOptions{Addrs: addrs, Token: admin, Devices: 4, Batch: 10, Duration: time.Second, Inflight: 1, Conns: 1}).check(); err == nil {
		t.Errorf("--conns 1 with 2 --addrs accepted, want a refusal")
	}
}
