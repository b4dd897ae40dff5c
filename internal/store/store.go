package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	"github.com/mountain-sar/sar/internal/sar"
)

// Store is the live state in Redis (single server or Cluster).
type Store struct {
	rdb       redis.UniversalClient
	trackMax  int
	retention time.Duration
}

// Option configures a Store.
type Option func(*Store)

// WithTrackMax bounds the breadcrumbs kept per participant (default 5000:
// about 14 hours at one fix every 10 seconds).
func WithTrackMax(n int) Option { return func(s *Store) { s.trackMax = n } }

// WithRetention sets how long precise positions and tracks are kept after
// an incident closes (default 30 days).
func WithRetention(d time.Duration) Option { return func(s *Store) { s.retention = d } }

// New returns a Store on rdb.
func New(rdb redis.UniversalClient, opts ...Option) *Store {
	s := &Store{rdb: rdb, trackMax: 5000, retention: 30 * 24 * time.Hour}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Ping checks that Redis answers.
func (s *Store) Ping(ctx context.Context) error { return s.rdb.Ping(ctx).Err() }

// fail turns a Redis error into a domain error: script errors become their
// kinds, everything else (connection refused, timeouts, cluster down) is
// Unavailable, and the cause is kept for the logs only.
func fail(err error, what string) error {
	if err == nil {
		return nil
	}
	var se *sar.Error
	if errors.As(err, &se) {
		return err
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, scriptNotFound):
		return sar.NotFound(what)
	case strings.Contains(msg, scriptClosed):
		return sar.Errorf(sar.KindFailedPrecondition, "%s is closed", what)
	case strings.Contains(msg, scriptNotJoined):
		return sar.Errorf(sar.KindFailedPrecondition, "device has not joined the incident (call JoinIncident)")
	case strings.Contains(msg, scriptExists):
		return sar.Errorf(sar.KindAlreadyExists, "%s already exists", what)
	case strings.Contains(msg, scriptDeviceUsed):
		return sar.Errorf(sar.KindFailedPrecondition, "device is bound to another participant of this incident")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return sar.Wrap(sar.KindUnavailable, err, "storage did not answer in time")
	case strings.HasPrefix(msg, "ERR ") && strings.Contains(msg, "script"):
		return sar.Wrap(sar.KindInternal, err, "storage script failed") // a bug: retrying will not help
	}
	return sar.Wrap(sar.KindUnavailable, err, "storage unavailable")
}

func marshal(m proto.Message) string {
	b, err := proto.Marshal(m)
	if err != nil {
		// Only invalid UTF-8 in a string field makes Marshal fail; the edge
		// validates strings, so this is a bug worth a crash in tests.
		panic(fmt.Sprintf("store: marshal %T: %v", m, err))
	}
	return string(b)
}

func unmarshal(s string, m proto.Message) error {
	if err := proto.Unmarshal([]byte(s), m); err != nil {
		return sar.Wrap(sar.KindInternal, err, "corrupt record in storage")
	}
	return nil
}

// LoadScripts loads the Lua scripts into Redis (every master of a Cluster),
// so the first batches do not pay a NOSCRIPT round trip.
func (s *Store) LoadScripts(ctx context.Context) error {
	load := func(ctx context.Context, c *redis.Client) error {
		for _, sc := range []*redis.Script{ingestScript, putIncidentScript, joinScript, addParticipantScript, putGridScript, coverageScript,
			flushGridEventScript, putSegmentsScript, loadChangedScript, updateGridSummaryScript} {
			if err := sc.Load(ctx, c).Err(); err != nil {
				return err
			}
		}
		return nil
	}
	var err error
	switch c := s.rdb.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, load)
	case *redis.Client:
		err = load(ctx, c)
	}
	return fail(err, "scripts")
}
