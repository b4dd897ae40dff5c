package store

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	"github.com/mountain-sar/sar/internal/sar"
)

// Store is the live state in Redis (single server or Cluster).
type Store struct {
	rdb       redis.UniversalClient
	trackMax  int
	retention time.Duration
	// pipe sends concurrent batches' ingest scripts to Redis together
	// (ingestpipe.go).
	pipe       *ingestPipe
	pipesMu    sync.Mutex
	pipes      map[string]*ingestPipe // on a Cluster: by master address (pipeFor)
	groupSizes prometheus.Observer    // WithIngestGroupSizes
	// waitReplicas, if above 0, is how many replicas must hold a batch
	// before it is acknowledged (WithWaitReplicas).
	waitReplicas int
	waitTimeout  time.Duration

	// betweenCoverageSteps, if set (tests), runs in AddCoverage between
	// the cells' increments and the total's update.
	betweenCoverageSteps func()
}

// Of the batches sent to Redis together (ingestpipe.go), per pipe: groups
// in flight at most, and batches in a group at most. Two groups keep a
// Redis busy (the next fills while one is out); four made more groups of
// one batch and no more fixes per second (docs/bench.md).
const (
	ingestLanes    = 2
	ingestGroupMax = 64
)

// Option configures a Store.
type Option func(*Store)

// WithTrackMax bounds the breadcrumbs kept per participant (default 5000:
// about 14 hours at one fix every 10 seconds).
func WithTrackMax(n int) Option { return func(s *Store) { s.trackMax = n } }

// WithRetention sets how long precise positions and tracks are kept after
// an incident closes (default 30 days).
func WithRetention(d time.Duration) Option { return func(s *Store) { s.retention = d } }

// WithIngestGroupSizes observes, for every group of batches sent to Redis
// together (ingestpipe.go), how many batches it held.
func WithIngestGroupSizes(o prometheus.Observer) Option { return func(s *Store) { s.groupSizes = o } }

// WithWaitReplicas makes every batch wait, before it is acknowledged, until
// n replicas of its Redis master hold it (Redis's WAIT, sent in the same
// round trip as the ingest script, on the same connection), for at most
// timeout. Redis replicates asynchronously: without it, a batch
// acknowledged just before its master fails can be missing on the replica
// that takes over. A batch not copied in time is refused as Unavailable
// (it is stored on the master): the device resends it, and the resend is
// acknowledged once the copies exist (its fixes as duplicates). The
// batches sent together share one WAIT (ingestpipe.go).
func WithWaitReplicas(n int, timeout time.Duration) Option {
	return func(s *Store) { s.waitReplicas, s.waitTimeout = n, timeout }
}

// New returns a Store on rdb.
func New(rdb redis.UniversalClient, opts ...Option) *Store {
	s := &Store{rdb: rdb, trackMax: 5000, retention: 30 * 24 * time.Hour}
	for _, o := range opts {
		o(s)
	}
	s.pipe, s.pipes = s.newPipe(), map[string]*ingestPipe{}
	return s
}

// newPipe returns an ingest pipe (ingestpipe.go) for this store's options.
func (s *Store) newPipe() *ingestPipe {
	p := newIngestPipe(s.ingestGroup, ingestLanes, ingestGroupMax)
	p.sizes = s.groupSizes
	return p
}

// Ping checks that Redis answers.
func (s *Store) Ping(ctx context.Context) error { return s.rdb.Ping(ctx).Err() }

func marshal(m proto.Message) string { return string(marshalBytes(m)) }

func marshalBytes(m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		// Only invalid UTF-8 in a string field makes Marshal fail; the edge
		// validates strings, so this is a bug worth a crash in tests.
		panic(fmt.Sprintf("store: marshal %T: %v", m, err))
	}
	return b
}

func unmarshal(s string, m proto.Message) error {
	if err := proto.Unmarshal([]byte(s), m); err != nil {
		return sar.Wrap(sar.KindInternal, err, "corrupt record in storage")
	}
	return nil
}
