// Command sard is the search-and-rescue coordination server.
//
// With no Redis or NATS configured it starts embedded ones and prints the
// credentials and addresses a newcomer needs; with --redis-url and
// --nats-url it uses the real ones.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/alecthomas/kong"

	"github.com/mountain-sar/sar/internal/app"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "dev"

// CLI is sard's command line; every flag has an environment fallback.
type CLI struct {
	GRPCAddr     string           `name:"grpc-addr" env:"SAR_GRPC_ADDR" default:"127.0.0.1:50051" help:"Address of the gRPC listener (devices, tools, other replicas' load balancer)."`
	HTTPAddr     string           `name:"http-addr" env:"SAR_HTTP_ADDR" default:"127.0.0.1:8080" help:"Address of the HTTP listener: JSON gateway (/v1/...), pages, /healthz, /readyz, /metrics."`
	RedisURL     string           `name:"redis-url" env:"SAR_REDIS_URL" help:"Redis URL, e.g. redis://:password@host:6379/0. Empty: start an embedded Redis (redis-server child process, or in-process miniredis if redis-server is not on the PATH)."`
	RedisCluster bool             `name:"redis-cluster" env:"SAR_REDIS_CLUSTER" help:"Treat --redis-url as a Redis Cluster seed list: redis://host1:6379?addr=host2:6379&addr=host3:6379."`
	RedisWait    int              `name:"redis-wait-replicas" env:"SAR_REDIS_WAIT_REPLICAS" default:"0" help:"Acknowledge a batch only once this many replicas of its Redis master hold it (Redis WAIT, in the batch's round trip): no acknowledged fix is lost when a master fails over. 0: do not wait."`
	RedisWaitFor time.Duration    `name:"redis-wait-timeout" env:"SAR_REDIS_WAIT_TIMEOUT" default:"500ms" help:"How long a batch waits for --redis-wait-replicas before it is refused as unavailable (the device resends it)."`
	NATSURL      string           `name:"nats-url" env:"SAR_NATS_URL" help:"NATS URL(s), comma-separated, e.g. nats://host:4222. JetStream must be enabled. Empty: start an embedded NATS server with JetStream."`
	NATSSeed     string           `name:"nats-nkey-seed-file" env:"SAR_NATS_NKEY_SEED_FILE" help:"File with sard's own NATS nkey seed (the _sard.nk of 'sarctl nats-auth'). With --nats-url: when the NATS server has the generated users. Embedded mode with --nats-auth: default _sard.nk next to that file."`
	NATSAuth     string           `name:"nats-auth" env:"SAR_NATS_AUTH" help:"Embedded mode only: nats-server authorization file from 'sarctl nats-auth' (nkey users of the agencies and of sard); the embedded NATS server admits only these users."`
	NATSListen   string           `name:"nats-listen" env:"SAR_NATS_LISTEN" help:"Embedded mode only: address the embedded NATS server listens on for agencies' systems, e.g. 0.0.0.0:4222 (needs --nats-auth and TLS unless on loopback). With TLS on (--tls-cert/--tls-key or --tls-self-signed) it serves TLS only, with the same certificate. Default: a private loopback port."`
	NATSReplicas int              `name:"nats-replicas" env:"SAR_NATS_REPLICAS" default:"1" help:"Copies of the SAR_EVENTS JetStream stream on a NATS cluster (1-5): 3 on a cluster of 3 nodes, so that a lost node loses no event. Raised on an existing stream, never lowered. Embedded mode: 1."`
	DataDir      string           `name:"data-dir" env:"SAR_DATA_DIR" default:"data" help:"Directory for the embedded backends' data (NATS JetStream store, Redis append-only file)."`
	AdminToken   string           `name:"admin-token" env:"SAR_ADMIN_TOKEN" help:"Bootstrap admin bearer token (make one with 'sarctl token'); installed at every start. Embedded mode makes one if empty."`
	Resolution   int              `name:"resolution" env:"SAR_RESOLUTION" default:"9" help:"Default H3 resolution of search cells (about 0.1 km² at 9); incidents may choose 5-12."`
	TrackMax     int              `name:"track-max" env:"SAR_TRACK_MAX" default:"5000" help:"Breadcrumbs kept per participant (older ones are dropped)."`
	Retention    time.Duration    `name:"retention" env:"SAR_RETENTION" default:"720h" help:"How long precise positions and tracks are kept after an incident closes."`
	RateLimit    float64          `name:"rate-limit" env:"SAR_RATE_LIMIT" default:"50" help:"Requests (and stream messages) per second allowed per credential."`
	RateBurst    int              `name:"rate-burst" env:"SAR_RATE_BURST" default:"100" help:"Burst allowed above --rate-limit."`
	PublicURL    string           `name:"public-url" env:"SAR_PUBLIC_URL" help:"Base URL at which phones reach the HTTP listener, e.g. https://sar.example.org (share links start with it; browsers give the share page a position only over HTTPS). Empty: the HTTP listener's address."`
	LinkRate     float64          `name:"link-rate-limit" env:"SAR_LINK_RATE_LIMIT" default:"2" help:"Requests per second allowed per share link (burst --link-rate-burst)."`
	LinkBurst    int              `name:"link-rate-burst" env:"SAR_LINK_RATE_BURST" default:"30" help:"Burst allowed above --link-rate-limit."`
	AddrRate     float64          `name:"addr-rate-limit" env:"SAR_ADDR_RATE_LIMIT" default:"5" help:"Per client address: requests per second refused for their credential, plus share-link requests (burst --addr-rate-burst)."`
	AddrBurst    int              `name:"addr-rate-burst" env:"SAR_ADDR_RATE_BURST" default:"60" help:"Burst allowed above --addr-rate-limit."`
	Shutdown     time.Duration    `name:"shutdown-timeout" env:"SAR_SHUTDOWN_TIMEOUT" default:"20s" help:"How long a graceful shutdown may take before calls are cut."`
	Escalation   time.Duration    `name:"escalation-interval" env:"SAR_ESCALATION_INTERVAL" default:"1s" help:"How often this replica looks for task offers whose answer time passed (every replica looks; each lapsed offer is escalated once)."`
	MinAnswer    time.Duration    `name:"min-answer-within" env:"SAR_MIN_ANSWER_WITHIN" default:"30s" help:"Shortest answer time a task offer may be given (drills may shorten it)."`
	LogLevel     string           `name:"log-level" env:"SAR_LOG_LEVEL" default:"info" enum:"debug,info,warn,error" help:"Log level (debug, info, warn, error)."`
	MemoryLimit  string           `name:"memory-limit" env:"SAR_MEMORY_LIMIT" help:"Soft memory limit of sard's Go runtime, e.g. 160MiB or 1GB (at least 64MiB): near it the collector works harder instead of letting the heap grow. Empty: GOMEMLIMIT if set, else 90 % of the container's memory limit (cgroup; AUTOMEMLIMIT=0.8 sets another ratio, AUTOMEMLIMIT=off none), else none."`
	DebugAddr    string           `name:"debug-addr" env:"SAR_DEBUG_ADDR" help:"Loopback address for Go's profiler (/debug/pprof/), e.g. 127.0.0.1:6060. Empty: off."`
	LogFormat    string           `name:"log-format" env:"SAR_LOG_FORMAT" default:"json" enum:"json,text" help:"Log format (json, text)."`
	Version      kong.VersionFlag `help:"Print the version and exit."`

	TLSFlags // tls.go: TLS, proxies, the backends' TLS and credentials
}

func main() {
	var cli CLI
	kong.Parse(&cli, kong.Name("sard"),
		kong.Description("Search-and-rescue coordination server: live locations into H3 search cells (Redis), events over NATS."),
		kong.Vars{"version": version}, kong.UsageOnError())
	if err := run(cli); err != nil {
		slog.Error("sard failed", "err", err)
		os.Exit(1)
	}
}

func run(cli CLI) error {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(cli.LogLevel)); err != nil {
		return err
	}
	hopt := &slog.HandlerOptions{Level: lvl}
	var h slog.Handler = slog.NewJSONHandler(os.Stderr, hopt)
	if cli.LogFormat == "text" {
		h = slog.NewTextHandler(os.Stderr, hopt)
	}
	log := slog.New(h).With("service", "sard", "version", version)
	slog.SetDefault(log)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg := app.Defaults()
	cfg.GRPCAddr, cfg.HTTPAddr, cfg.RedisURL, cfg.RedisCluster = cli.GRPCAddr, cli.HTTPAddr, cli.RedisURL, cli.RedisCluster
	cfg.NATSURL, cfg.DataDir, cfg.AdminToken = cli.NATSURL, cli.DataDir, cli.AdminToken
	cfg.NATSSeedFile, cfg.NATSAuthFile, cfg.NATSListen = cli.NATSSeed, cli.NATSAuth, cli.NATSListen
	cfg.NATSReplicas = cli.NATSReplicas
	cfg.Resolution, cfg.TrackMax, cfg.Retention = cli.Resolution, cli.TrackMax, cli.Retention
	cfg.RateLimit, cfg.RateBurst, cfg.ShutdownTimeout = cli.RateLimit, cli.RateBurst, cli.Shutdown
	cfg.EscalationInterval, cfg.MinAnswerWithin = cli.Escalation, cli.MinAnswer
	cfg.PublicURL, cfg.LinkRateLimit, cfg.LinkRateBurst, cfg.AddrRateLimit, cfg.AddrRateBurst = cli.PublicURL, cli.LinkRate, cli.LinkBurst, cli.AddrRate, cli.AddrBurst
	cfg.Transport, cfg.BackendSecurity = cli.transport(), cli.security()
	cfg.RedisWaitReplicas, cfg.RedisWaitTimeout = cli.RedisWait, cli.RedisWaitFor
	limit, from, err := setMemoryLimit(cli.MemoryLimit, log)
	if err != nil {
		return err
	}
	logMemoryLimit(log, limit, from)
	stopDebug, err := serveDebug(cli.DebugAddr, log)
	if err != nil {
		return err
	}
	defer stopDebug()
	a, err := app.Start(ctx, cfg, log)
	if err != nil {
		return err
	}
	go reloadOnSIGHUP(ctx, a, log)
	if b := a.Embedded; b.OperatorToken != "" {
		banner(a, b, cfg)
	}
	select {
	case <-ctx.Done():
		log.Info("shutting down: draining streams and in-flight batches")
	case err := <-a.Done():
		log.Error("server stopped", "err", err)
	}
	return a.Close()
}

// banner tells a newcomer how to start using an embedded-mode server.
func banner(a *app.App, b app.Bootstrap, cfg app.Config) {
	w := os.Stderr
	fmt.Fprintln(w, "")
	fmt.Fprintln(w, "  sard is running in EMBEDDED mode (for a laptop, a drill or a demo):")
	if b.RedisKind != "" {
		fmt.Fprintf(w, "    Redis:  embedded %s (data in %s)\n", b.RedisKind, cfg.DataDir)
	}
	if b.NATSEmbedded {
		fmt.Fprintf(w, "    NATS:   embedded nats-server with JetStream (data in %s)\n", cfg.DataDir)
		if b.NATSUsers > 0 {
			fmt.Fprintf(w, "            %s, %d nkey users from %s\n", b.NATSURL, b.NATSUsers, cfg.NATSAuthFile)
		}
	}
	bannerTLS(w, a, b)
	fmt.Fprintf(w, "    operator token (jurisdiction %q, 30 days):\n      %s\n", cfg.EmbeddedJurisdiction, b.OperatorToken)
	if b.AdminToken != "" {
		fmt.Fprintf(w, "    admin token (valid 24 h; set --admin-token to keep one):\n      %s\n", b.AdminToken)
	}
	fmt.Fprintln(w, "    try: curl "+curlTLS(b)+"-H \"Authorization: Bearer $TOKEN\" "+httpURL(a)+"/v1/whoami")
	fmt.Fprintln(w, "")
}
