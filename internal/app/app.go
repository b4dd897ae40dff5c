// Package app wires the server together: configuration, backends (real or
// embedded), the domain, the gRPC/HTTP server and the outbox relay. The
// sard binary and the end-to-end tests start the same App.
package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"github.com/mountain-sar/sar/dispatch"
	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/auth"
	"github.com/mountain-sar/sar/internal/core"
	"github.com/mountain-sar/sar/internal/embedded"
	"github.com/mountain-sar/sar/internal/store"
	"github.com/mountain-sar/sar/server"
)

// Config is the server's configuration (see cmd/sard for flags).
type Config struct {
	GRPCAddr     string
	HTTPAddr     string
	RedisURL     string
	RedisCluster bool
	NATSURL      string
	NATSSeedFile string // sard's nkey seed for its NATS connection
	NATSAuthFile string // embedded mode: nkey users for the embedded NATS server
	NATSListen   string // embedded mode: client address of the embedded NATS server
	// NATSReplicas is how many NATS nodes keep a copy of the SAR_EVENTS
	// stream (JetStream R1, R3 or R5): 3 on a NATS cluster of 3 or more
	// nodes, so that losing a node loses no event. 1 in embedded mode.
	NATSReplicas int
	DataDir      string
	AdminToken   string
	Resolution   int
	TrackMax     int
	Retention    time.Duration
	RateLimit    float64
	RateBurst    int
	// PublicURL is the base URL at which phones reach the HTTP listener
	// (through a TLS-terminating proxy in production): share links start
	// with it. Empty: the HTTP listener's own address.
	PublicURL string
	// LinkRateLimit/LinkRateBurst limit each share link's credential;
	// AddrRateLimit/AddrRateBurst each client address's refused and
	// share-link calls (0: the server's defaults).
	LinkRateLimit   float64
	LinkRateBurst   int
	AddrRateLimit   float64
	AddrRateBurst   int
	ShutdownTimeout time.Duration
	RelayInterval   time.Duration
	// EscalationInterval is how often this replica sweeps task offers
	// whose answer deadline passed (1 s; every replica sweeps, each lapsed
	// offer is escalated once).
	EscalationInterval time.Duration
	// RedisWaitReplicas, if above 0, acknowledges a batch only once that
	// many replicas of its Redis master hold it, waiting at most
	// RedisWaitTimeout (WAIT; see store.WithWaitReplicas).
	RedisWaitReplicas int
	RedisWaitTimeout  time.Duration
	// SearchWorkSweep is how often this replica looks for search work
	// that no replica progressed on for SearchWorkStale (its replica died)
	// and does it (5 s and 15 s).
	SearchWorkSweep, SearchWorkStale time.Duration
	// MinAnswerWithin is the shortest answer time a task offer may be
	// given (30 s).
	MinAnswerWithin time.Duration
	WatchRecheck    time.Duration // how often watch streams re-check their credential (10 s)
	WatchGrace      time.Duration // how long watch streams ride out a Redis outage (30 s)
	CredentialCache time.Duration // how long a looked-up credential is trusted (0: core's 10 s)
	// Jurisdiction of the operator credential made in embedded mode.
	EmbeddedJurisdiction string
	Transport            // TLS and proxies (tls.go)
	BackendSecurity      // Redis and NATS TLS and credentials (backends.go)
}

// Defaults returns the default configuration.
func Defaults() Config {
	return Config{GRPCAddr: "127.0.0.1:50051", HTTPAddr: "127.0.0.1:8080", DataDir: "data",
		Resolution: 9, TrackMax: 5000, Retention: 30 * 24 * time.Hour, RateLimit: 50, RateBurst: 100,
		NATSReplicas: 1, ShutdownTimeout: 20 * time.Second, RelayInterval: 2 * time.Second, EscalationInterval: time.Second, MinAnswerWithin: 30 * time.Second,
		EmbeddedJurisdiction: "local"}
}

// App is a running server.
type App struct {
	cfg      Config
	log      *slog.Logger
	Core     *core.Service
	Store    *store.Store
	Server   *server.Server
	Redis    redis.UniversalClient
	NATS     *nats.Conn
	grpcLis  net.Listener
	httpLis  net.Listener
	closers  []func()
	served   chan error
	cancel   context.CancelFunc
	Embedded Bootstrap
	tr       *transport

	bg        sync.WaitGroup // background loops (relay, escalations)
	closeOnce sync.Once
	closeErr  error
}

// Bootstrap is what an embedded start made for a newcomer.
type Bootstrap struct {
	redis         *embedded.Redis
	RedisKind     string // "redis-server", "miniredis" or "" (external)
	NATSEmbedded  bool
	NATSURL       string // embedded NATS: its client URL
	NATSUsers     int    // embedded NATS: nkey users loaded from Config.NATSAuthFile
	AdminToken    string // generated admin token ("" if configured or external)
	OperatorToken string // operator credential of EmbeddedJurisdiction ("" if external)
	// TLSFingerprint is the SHA-256 of the self-signed certificate
	// (Transport.TLSSelfSigned), for clients to pin.
	TLSFingerprint string
}

// Start starts everything and serves in the background.
func Start(ctx context.Context, cfg Config, log *slog.Logger) (_ *App, err error) {
	a := &App{cfg: cfg, log: log, served: make(chan error, 1)}
	defer func() {
		if err != nil {
			a.closeAll() // stop what was started before the failure
			for _, l := range []net.Listener{a.grpcLis, a.httpLis} {
				if l != nil {
					_ = l.Close()
				}
			}
		}
	}()
	if err := cfg.Check(); err != nil { // bad flag values refused before anything starts
		return nil, err
	}
	if cfg.AdminToken != "" && !auth.WellFormed(cfg.AdminToken) {
		return nil, errors.New("admin token is malformed: make one with `sarctl token`")
	}
	if (cfg.RedisURL == "") != (cfg.NATSURL == "") {
		return nil, errors.New("set both --redis-url and --nats-url (production), or neither (embedded mode): " +
			"a half-embedded server would keep its events or its state to itself")
	}
	embeddedMode := cfg.RedisURL == ""
	tr, err := a.setupTransport(cfg, embeddedMode)
	if err != nil {
		return nil, err
	}
	if embeddedMode && cfg.BackendSecurity.set() {
		return nil, errors.New("the Redis and NATS TLS and credential settings are for --redis-url and --nats-url, not for embedded mode")
	} else if !embeddedMode {
		cfg.warnPlaintextBackends(cfg, log)
	}
	natsOpts, err := embeddedNATSOptions(&cfg, tr.tls)
	if err != nil {
		return nil, err
	}
	if embeddedMode {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("data dir: %w", err)
		}
	}
	if cfg.RedisURL == "" {
		r, err := embedded.StartRedis(ctx, cfg.DataDir)
		if err != nil {
			return nil, err
		}
		a.closers = append(a.closers, r.Close)
		cfg.RedisURL, a.Embedded.RedisKind, a.Embedded.redis = r.URL, r.Kind, r
		if r.Kind == "miniredis" {
			log.Warn("embedded Redis: redis-server is not on the PATH, using in-process miniredis; state is lost when sard stops", "url", r.URL)
		} else {
			log.Info("embedded Redis: started redis-server child process", "url", r.URL, "data", r.Dir)
		}
	}
	var natsLocal []nats.Option
	if cfg.NATSURL == "" {
		n, err := embedded.StartNATS(cfg.DataDir, natsOpts)
		if err != nil {
			return nil, err
		}
		a.closers = append(a.closers, n.Close)
		cfg.NATSURL, a.Embedded.NATSEmbedded, a.Embedded.NATSURL, a.Embedded.NATSUsers = n.URL, true, n.ListenURL, n.Users
		if natsOpts.TLS != nil { // its listener speaks TLS only: sard connects in-process
			natsLocal = append(natsLocal, nats.InProcessServer(n))
		}
		log.Info("embedded NATS: started in-process with JetStream", "url", n.URL, "data", n.Dir)
		if n.Users > 0 {
			log.Info("embedded NATS: nkey users loaded; sard connects with its own seed",
				"auth", cfg.NATSAuthFile, "users", n.Users, "seed", cfg.NATSSeedFile)
		}
		if cfg.NATSListen != "" {
			log.Info("embedded NATS: listening for agencies' systems", "listen", cfg.NATSListen, "url", n.ListenURL,
				"users", n.Users, "tls", natsOpts.TLS != nil)
		}
	}

	redis.SetLogger(redisLogger{log})
	if a.Redis, err = redisClient(cfg); err != nil {
		return nil, err
	}
	if a.Embedded.RedisKind == "miniredis" {
		a.Redis.AddHook(store.FlaglessScripts()) // miniredis does not read Redis 7's script flags line
	}
	if cc, ok := a.Redis.(*redis.ClusterClient); ok {
		cc.AddHook(store.ReloadOnTopologyErrors(cc)) // a master's failover: see the hook
	}
	a.closers = append(a.closers, func() { _ = a.Redis.Close() })
	if err := retry(ctx, "redis", log, func() error { return pingRedis(ctx, a.Redis) }); err != nil {
		return nil, fmt.Errorf("redis %s: %w", redactURL(cfg.RedisURL), err)
	}
	if a.NATS, err = natsConn(cfg, log, natsLocal...); err != nil {
		return nil, err
	}
	a.closers = append(a.closers, func() { _ = a.NATS.Drain() })
	groupSizes := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "sar_redis_ingest_group_batches", Help: "Fix batches sent to Redis in one pipeline (group commit): the batches of different devices waiting at the same moment.",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64}})
	sopts := []store.Option{store.WithTrackMax(cfg.TrackMax), store.WithRetention(cfg.Retention), store.WithIngestGroupSizes(groupSizes)}
	if cfg.RedisWaitReplicas > 0 {
		sopts = append(sopts, store.WithWaitReplicas(cfg.RedisWaitReplicas, cfg.RedisWaitTimeout))
		log.Info("batches are acknowledged once Redis replicas hold them", "redis_wait_replicas", cfg.RedisWaitReplicas,
			"redis_wait_timeout", cfg.RedisWaitTimeout.String())
	}
	st := store.New(a.Redis, sopts...)
	a.Store = st
	bus, err := dispatch.New(a.NATS, dispatch.WithStreamMaxAge(cfg.Retention), dispatch.WithOutbox(st), dispatch.WithLogger(log),
		dispatch.WithReplicas(cfg.NATSReplicas))
	if err != nil {
		return nil, err
	}
	if cluster := a.NATS.ConnectedClusterName(); cluster != "" && cfg.NATSReplicas == 1 {
		log.Warn("NATS is a cluster but SAR_EVENTS keeps one copy: the events on a node that is lost are lost with it; set --nats-replicas 3",
			"nats_cluster", cluster)
	}
	if err := retry(ctx, "jetstream", log, func() error { return bus.EnsureStream(ctx) }); err != nil {
		return nil, err
	}

	// The listeners before the services: share links name the HTTP
	// listener's address when no public URL is configured.
	if a.grpcLis, err = net.Listen("tcp", cfg.GRPCAddr); err != nil {
		return nil, fmt.Errorf("grpc listener: %w", err)
	}
	if a.httpLis, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return nil, fmt.Errorf("http listener: %w", err)
	}
	publicURL := cfg.PublicURL
	if publicURL == "" {
		publicURL = a.scheme() + "://" + a.HTTPAddr()
		log.Warn("share links point at the HTTP listener, which phones elsewhere cannot reach: set --public-url to the HTTPS address phones use",
			"public_url", publicURL)
	} else if u, _ := url.Parse(publicURL); u.Scheme == "http" && !loopbackHost(u.Hostname()) {
		log.Warn("--public-url is plain HTTP: phones' browsers give a position only to HTTPS pages, so share links will not get one",
			"public_url", publicURL)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), groupSizes)
	ccfg := core.DefaultConfig()
	ccfg.Resolution, ccfg.TrackMax, ccfg.PublicURL = cfg.Resolution, cfg.TrackMax, publicURL
	if cfg.MinAnswerWithin > 0 {
		ccfg.MinAnswerWithin = cfg.MinAnswerWithin
	}
	if cfg.CredentialCache > 0 {
		ccfg.CredentialCache = cfg.CredentialCache
	}
	if cfg.SearchWorkStale > 0 {
		ccfg.WorkStaleAfter = cfg.SearchWorkStale
	}
	if err := st.LoadScripts(ctx); err != nil {
		return nil, err
	}
	a.Core = core.New(ccfg, st, bus, log, core.NewMetrics(reg))
	a.closers = append(a.closers, a.Core.Close) // before NATS and Redis close
	if err := a.bootstrap(ctx, embeddedMode); err != nil {
		return nil, err
	}

	a.Server = server.New(a.Core, server.Options{Log: log, Registry: reg, RateLimit: cfg.RateLimit, RateBurst: cfg.RateBurst,
		LinkRateLimit: cfg.LinkRateLimit, LinkRateBurst: cfg.LinkRateBurst, AddrRateLimit: cfg.AddrRateLimit, AddrRateBurst: cfg.AddrRateBurst,
		WatchRecheck: cfg.WatchRecheck, WatchOutageGrace: cfg.WatchGrace, TLS: tr.tls, ClientCAs: tr.clientCAPool(), TrustedProxies: tr.proxies,
		Ready: func(ctx context.Context) error {
			if err := st.Ping(ctx); err != nil {
				return fmt.Errorf("redis: %w", err)
			}
			if !a.NATS.IsConnected() {
				return errors.New("nats: not connected")
			}
			return nil
		}})
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a.cancel = cancel
	relay := &dispatch.Relay{Bus: bus, Store: st, Log: log, Interval: cfg.RelayInterval}
	a.bg.Go(func() { relay.Run(rctx) })
	a.bg.Go(func() { a.Core.RunEscalations(rctx, cmp.Or(cfg.EscalationInterval, time.Second)) })
	a.bg.Go(func() { a.Core.RunSearchWork(rctx, cmp.Or(cfg.SearchWorkSweep, 5*time.Second)) })
	go func() { a.served <- a.Server.Serve(a.grpcLis, a.httpLis) }()
	limit, known := openFileLimit()
	warnOpenFileLimit(log, limit, known)
	log.Info("sard serving", "grpc", a.GRPCAddr(), "http", a.HTTPAddr(), "tls", a.UsesTLS(),
		"redis", redactURL(cfg.RedisURL), "redis_cluster", cfg.RedisCluster, "nats", redactURL(cfg.NATSURL))
	return a, nil
}

// bootstrap installs the configured admin token, and in embedded mode makes
// the credentials a newcomer needs.
func (a *App) bootstrap(ctx context.Context, embeddedMode bool) error {
	token := a.cfg.AdminToken
	if token == "" && embeddedMode {
		token, _, _ = auth.NewToken()
		a.Embedded.AdminToken = token
	}
	if token != "" {
		hash, id := auth.HashToken(token)
		p := &sarv1.Principal{CredentialId: id, Role: sarv1.Role_ROLE_ADMIN, DisplayName: "bootstrap admin (--admin-token)"}
		now := time.Now()
		life := 10 * 365 * 24 * time.Hour // the configured one is installed at every start
		if a.cfg.AdminToken == "" {
			life = 24 * time.Hour // a generated one is for this run
		}
		p.CreateTime, p.ExpireTime = tsOf(now), tsOf(now.Add(life))
		if err := a.Store.PutCredential(ctx, hash, p); err != nil {
			return fmt.Errorf("bootstrap admin credential: %w", err)
		}
	}
	if embeddedMode {
		op, _, err := a.Core.IssueCredential(ctx, &sarv1.Principal{Role: sarv1.Role_ROLE_OPERATOR,
			Jurisdiction: a.cfg.EmbeddedJurisdiction, DisplayName: "embedded-mode operator"}, 30*24*time.Hour)
		if err != nil {
			return fmt.Errorf("bootstrap operator credential: %w", err)
		}
		a.Embedded.OperatorToken = op
	}
	return nil
}

// Config returns the configuration the app was started with (the
// listeners' addresses as configured, not as bound).
func (a *App) Config() Config { return a.cfg }

// GRPCAddr is the gRPC listener's address.
func (a *App) GRPCAddr() string { return a.grpcLis.Addr().String() }

// HTTPAddr is the HTTP listener's address.
func (a *App) HTTPAddr() string { return a.httpLis.Addr().String() }

// Done returns a channel that yields the serve error when serving stops.
func (a *App) Done() <-chan error { return a.served }

// Close drains the server (finishing in-flight batches) and stops the
// backends it started, in reverse order. Calling it again returns the
// first call's result.
func (a *App) Close() error {
	a.closeOnce.Do(func() { a.closeErr = a.close() })
	return a.closeErr
}

func (a *App) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	var err error
	if a.Server != nil {
		err = a.Server.Shutdown(ctx)
		<-a.served
	}
	a.closeAll()
	return err
}

func (a *App) closeAll() {
	if a.cancel != nil {
		a.cancel()
	}
	a.bg.Wait() // the relay and the escalation sweep stop before their backends close
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
	a.closers = nil
}

func redisClient(cfg Config) (redis.UniversalClient, error) {
	if cfg.RedisCluster {
		opt, err := redis.ParseClusterURL(cfg.RedisURL)
		if err != nil {
			return nil, fmt.Errorf("redis cluster url: %w", err)
		}
		tuneRedisCluster(opt)
		if err := cfg.secureRedis(cfg.RedisURL, &opt.TLSConfig, &opt.Username, &opt.Password); err != nil {
			return nil, err
		}
		return redis.NewClusterClient(opt), nil
	}
	opt, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("redis url: %w", err)
	}
	tuneRedis(opt)
	if err := cfg.secureRedis(cfg.RedisURL, &opt.TLSConfig, &opt.Username, &opt.Password); err != nil {
		return nil, err
	}
	return redis.NewClient(opt), nil
}

func natsConn(cfg Config, log *slog.Logger, local ...nats.Option) (*nats.Conn, error) {
	url, seedFile := cfg.NATSURL, cfg.NATSSeedFile
	auth, err := cfg.natsOptions(seedFile)
	if err != nil {
		return nil, err
	}
	auth = append(auth, local...)
	if seedFile != "" {
		o, err := nats.NkeyOptionFromSeed(seedFile)
		if err != nil {
			return nil, fmt.Errorf("nats nkey seed file: %w", err)
		}
		auth = append(auth, o)
	}
	nc, err := connectNATS(url, append(auth,
		nats.Name("sard"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
		nats.ReconnectBufSize(64<<20),
		nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: we closed it ourselves
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("nats reconnected", "url", c.ConnectedUrlRedacted()) }),
		nats.ErrorHandler(func(_ *nats.Conn, s *nats.Subscription, err error) {
			subj := ""
			if s != nil {
				subj = s.Subject
			}
			log.Warn("nats async error", "subject", subj, "err", err)
		}),
	)...)
	if err != nil {
		return nil, fmt.Errorf("nats %s: %w", redactURL(url), err)
	}
	return nc, nil
}

// retry runs op with exponential backoff for up to 30 s (backends that
// start at the same time as sard).
func retry(ctx context.Context, what string, log *slog.Logger, op func() error) error {
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		err := op()
		if err != nil {
			log.Warn("backend not ready yet", "backend", what, "err", err)
		}
		return struct{}{}, err
	}, backoff.WithMaxElapsedTime(30*time.Second))
	return err
}

// redisPID is the embedded redis-server's process id, or 0.
func (b Bootstrap) redisPID() int {
	if b.redis == nil {
		return 0
	}
	return b.redis.PID()
}
