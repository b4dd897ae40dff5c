// Package core is the domain: it validates, authorizes and carries out
// every use case of the API. It owns the interfaces of what it needs
// (ports.go): the stores, implemented on Redis by internal/store, and the
// publisher and watcher, implemented on NATS by dispatch. The gRPC and HTTP
// layer above it (server) only translates messages and errors.
package core

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/sar"
)

// Config holds the domain's tunables.
type Config struct {
	Resolution      int           // default H3 search resolution (9)
	FutureSkew      time.Duration // how far in the future a fix time may be (5 min)
	PastMargin      time.Duration // how long before the incident (or last-seen time) a fix may be (24 h)
	CredentialCache time.Duration // how long a looked-up credential is trusted (10 s)
	TrackMax        int           // breadcrumbs kept per participant (for GetTrack's limit)
	ShareBasePath   string        // path of the share page ("/share")
	// PublicURL is the base URL (scheme and host, no path) at which
	// phones reach the share page: share links are PublicURL +
	// ShareBasePath + "#" + token.
	PublicURL string
	// MinAnswerWithin is the shortest answer time a task offer may be
	// given (30 s; drills and tests may shorten it).
	MinAnswerWithin time.Duration
	// WorkStaleAfter is how long queued search work may see no progress
	// before any replica's sweep takes it over (15 s).
	WorkStaleAfter time.Duration
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{Resolution: 9, FutureSkew: 5 * time.Minute, PastMargin: 24 * time.Hour,
		CredentialCache: 10 * time.Second, TrackMax: 5000, ShareBasePath: "/share", MinAnswerWithin: 30 * time.Second,
		WorkStaleAfter: 15 * time.Second}
}

// Service carries out the API's use cases.
type Service struct {
	cfg   Config
	st    Store
	bus   Bus
	log   *slog.Logger
	now   func() time.Time
	creds ttlCache[*sarv1.Principal]
	incs  ttlCache[*sarv1.Incident]
	owner ttlCache[string]
	met   *Metrics
	// trailing sends the last coverage event once tracks pause.
	trailing trailer
	// work does the search work of acknowledged batches (searchwork.go).
	work searchWorker
}

// New returns a Service.
func New(cfg Config, st Store, bus Bus, log *slog.Logger, met *Metrics) *Service {
	if met == nil {
		met = NewMetrics(nil)
	}
	s := &Service{cfg: cfg, st: st, bus: bus, log: log, now: time.Now, met: met,
		creds: newTTLCache[*sarv1.Principal](cfg.CredentialCache, 100_000),
		incs:  newTTLCache[*sarv1.Incident](2*time.Second, 10_000),
		owner: newTTLCache[string](time.Hour, 200_000),
	}
	s.trailing.flush = s.flushGridEvent
	s.work.do, s.work.delay, s.work.stop = s.workIncident, workDelay, make(chan struct{})
	return s
}

// Watch follows an incident's events (for the server's watch streams; the
// caller authorizes first).
func (s *Service) Watch(ctx context.Context, incidentID string) (events <-chan sar.BusEvent, dropped func() int, stop func(), err error) {
	return s.bus.Watch(ctx, incidentID)
}

func (s *Service) newEvent(incidentID string) *sarv1.Event {
	return &sarv1.Event{Id: sar.NewID(), IncidentId: incidentID, Time: timestamppb.New(s.now())}
}

// deliver publishes durable events just written to an outbox.
func (s *Service) deliver(ctx context.Context, evs ...*sarv1.Event) {
	s.bus.Deliver(ctx, evs...)
}

// ttlCache is a small bounded cache of immutable or briefly trusted values.
type ttlCache[V any] struct {
	mu  sync.Mutex
	ttl time.Duration
	max int
	m   map[string]ttlEntry[V]
}

type ttlEntry[V any] struct {
	v   V
	exp time.Time
}

func newTTLCache[V any](ttl time.Duration, max int) ttlCache[V] {
	return ttlCache[V]{ttl: ttl, max: max, m: map[string]ttlEntry[V]{}}
}

func (c *ttlCache[V]) get(k string) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if !ok || time.Now().After(e.exp) {
		var zero V
		return zero, false
	}
	return e.v, true
}

func (c *ttlCache[V]) put(k string, v V) {
	if c.ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		clear(c.m) // crude but bounded; the store is the truth
	}
	c.m[k] = ttlEntry[V]{v: v, exp: time.Now().Add(c.ttl)}
}

func (c *ttlCache[V]) del(k string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, k)
}
