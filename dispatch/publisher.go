package dispatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/sar"
)

// ErrNotAcked is returned when JetStream did not acknowledge an event in
// time; the event stays in its outbox and is published again later.
var ErrNotAcked = errors.New("dispatch: event not acknowledged by JetStream")

// Bus publishes incident events and subscribes to them.
type Bus struct {
	nc         *nats.Conn
	js         jetstream.JetStream
	ackTimeout time.Duration
	streamAge  time.Duration
	replicas   int
	outbox     OutboxStore // where Deliver clears what JetStream acknowledged
	log        *slog.Logger
}

// Option configures a Bus.
type Option func(*Bus)

// WithAckTimeout bounds how long a durable publish waits for JetStream
// (default 5 s).
func WithAckTimeout(d time.Duration) Option { return func(b *Bus) { b.ackTimeout = d } }

// WithStreamMaxAge sets how long SAR_EVENTS keeps events (default 30 days).
func WithStreamMaxAge(d time.Duration) Option { return func(b *Bus) { b.streamAge = d } }

// WithReplicas sets the stream's replica count on a NATS cluster (default 1).
func WithReplicas(n int) Option { return func(b *Bus) { b.replicas = n } }

// WithOutbox names the outbox that Deliver clears of acknowledged events.
func WithOutbox(st OutboxStore) Option { return func(b *Bus) { b.outbox = st } }

// WithLogger sets the logger of delivery warnings (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(b *Bus) { b.log = l } }

// New returns a Bus on an open connection.
func New(nc *nats.Conn, opts ...Option) (*Bus, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("dispatch: jetstream: %w", err)
	}
	b := &Bus{nc: nc, js: js, ackTimeout: 5 * time.Second, streamAge: 30 * 24 * time.Hour, replicas: 1, log: slog.Default()}
	for _, o := range opts {
		o(b)
	}
	return b, nil
}

// Conn returns the underlying connection.
func (b *Bus) Conn() *nats.Conn { return b.nc }

// EnsureStream creates or updates the SAR_EVENTS stream. The duplicate
// window is long so that the outbox relay's re-publishes are dropped. The
// stream's replicas are raised to the configured count, never lowered: a
// replica started with a smaller count (a default left in place) must not
// take the copies the others rely on.
func (b *Bus) EnsureStream(ctx context.Context) error {
	replicas := b.replicas
	if s, err := b.js.Stream(ctx, StreamName); err == nil {
		if have := s.CachedInfo().Config.Replicas; have > replicas {
			b.log.Warn("SAR_EVENTS keeps more copies than configured: left as it is", "stream_replicas", have, "configured", replicas)
			replicas = have
		}
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("dispatch: look up stream %s: %w", StreamName, err)
	}
	_, err := b.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        StreamName,
		Description: "sar.v1 incident lifecycle and participant events",
		Subjects:    []string{StreamSubject},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      b.streamAge,
		Duplicates:  time.Hour,
		Replicas:    replicas,
	})
	if err != nil {
		return fmt.Errorf("dispatch: ensure stream %s: %w", StreamName, err)
	}
	return nil
}

func message(ev *sarv1.Event) (*nats.Msg, bool, error) {
	data, err := proto.Marshal(ev)
	if err != nil {
		return nil, false, fmt.Errorf("dispatch: marshal event: %w", err)
	}
	m, durable := encodedMessage(ev, data)
	return m, durable, nil
}

// encodedMessage is the message of ev, whose wire encoding is data.
func encodedMessage(ev *sarv1.Event, data []byte) (*nats.Msg, bool) {
	subj, durable := Subject(ev)
	m := nats.NewMsg(subj)
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, ev.GetId())
	m.Header.Set("Content-Type", "application/protobuf; proto=sar.v1.Event")
	return m, durable
}

// PublishLive publishes a high-rate event (positions) on core NATS: no
// acknowledgement; while the connection is reconnecting, nats.go buffers it.
func (b *Bus) PublishLive(ev *sarv1.Event) error {
	m, _, err := message(ev)
	if err != nil {
		return err
	}
	if err := b.nc.PublishMsg(m); err != nil {
		return fmt.Errorf("dispatch: publish %s: %w", m.Subject, err)
	}
	return nil
}

// PublishLiveEncoded is PublishLive of ev already encoded as data (which
// must decode to ev): the ingest path builds the bytes of a positions event
// from the fixes' encodings it made for the track.
func (b *Bus) PublishLiveEncoded(ev *sarv1.Event, data []byte) error {
	m, _ := encodedMessage(ev, data)
	if err := b.nc.PublishMsg(m); err != nil {
		return fmt.Errorf("dispatch: publish %s: %w", m.Subject, err)
	}
	return nil
}

// PublishDurable publishes events to JetStream asynchronously, with their
// ids as message ids, and waits for all acknowledgements. It returns the ids
// JetStream acknowledged (the others must be retried) and the first error.
func (b *Bus) PublishDurable(ctx context.Context, evs ...*sarv1.Event) (acked []string, err error) {
	ctx, cancel := context.WithTimeout(ctx, b.ackTimeout)
	defer cancel()
	futures := make([]jetstream.PubAckFuture, 0, len(evs))
	ids := make([]string, 0, len(evs))
	for _, ev := range evs {
		m, _, e := message(ev)
		if e != nil {
			err = errors.Join(err, e)
			continue
		}
		f, e := b.js.PublishMsgAsync(m)
		if e != nil {
			err = errors.Join(err, fmt.Errorf("dispatch: publish %s: %w", m.Subject, e))
			continue
		}
		futures = append(futures, f)
		ids = append(ids, ev.GetId())
	}
	for i, f := range futures {
		select {
		case <-f.Ok():
			acked = append(acked, ids[i])
		case e := <-f.Err():
			err = errors.Join(err, fmt.Errorf("dispatch: event %s: %w", ids[i], e))
		case <-ctx.Done():
			return acked, errors.Join(err, ErrNotAcked)
		}
	}
	return acked, err
}

// Watch subscribes to everything about one incident and delivers decoded
// events on the returned channel until stop is called or ctx ends. A
// watcher that cannot keep up loses live messages (NATS slow-consumer
// policy) rather than slowing everyone down; dropped reports how many.
func (b *Bus) Watch(ctx context.Context, incidentID string) (events <-chan sar.BusEvent, dropped func() int, stop func(), err error) {
	return b.watch(ctx, incidentID, IncidentSubjects(incidentID))
}

// WatchTasks follows only an incident's task changes and notices (the
// doorbell of the task feeds: small, whatever the positions' rate); with
// an agency, only its team's tasks and the agency's notices.
func (b *Bus) WatchTasks(ctx context.Context, incidentID, agency, team string) (events <-chan sar.BusEvent, dropped func() int, stop func(), err error) {
	return b.watch(ctx, incidentID, TaskSubjects(incidentID, agency, team)...)
}

// watch subscribes to subjects of one incident. A message is passed on
// only if it came on that incident's subjects and is that incident's
// event: NATS does not check the reply or deliver subjects a client asks
// JetStream to use, so an agency could have its own consumer's messages
// delivered onto another incident's subjects.
func (b *Bus) watch(ctx context.Context, incidentID string, subjects ...string) (events <-chan sar.BusEvent, dropped func() int, stop func(), err error) {
	msgs := make(chan *nats.Msg, 4096)
	var subs []*nats.Subscription
	unsubscribe := func() {
		for _, sub := range subs {
			_ = sub.Unsubscribe()
		}
	}
	for _, subj := range subjects {
		sub, err := b.nc.ChanSubscribe(subj, msgs)
		if err != nil {
			unsubscribe()
			return nil, nil, nil, fmt.Errorf("dispatch: subscribe: %w", err)
		}
		subs = append(subs, sub)
	}
	// Make sure the server has the interest before the caller reads a
	// snapshot, so nothing published after the snapshot is missed.
	fctx, cancel := context.WithTimeout(ctx, b.ackTimeout)
	defer cancel()
	if err := b.nc.FlushWithContext(fctx); err != nil {
		unsubscribe()
		return nil, nil, nil, fmt.Errorf("dispatch: subscribe: %w", err)
	}
	out := make(chan sar.BusEvent, 256)
	done := make(chan struct{})
	prefix := SubjectPrefix + incidentID + "."
	go func() {
		defer close(out)
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case m := <-msgs:
				ev := &sarv1.Event{}
				if !strings.HasPrefix(m.Subject, prefix) || proto.Unmarshal(m.Data, ev) != nil || ev.GetIncidentId() != incidentID {
					continue
				}
				if want, _ := Subject(ev); want != m.Subject {
					continue // an event re-routed onto a subject it does not belong to
				}
				select {
				case out <- sar.BusEvent{Event: ev, Wire: m.Data}: // nats.go gives each message its own Data
				case <-done:
					return
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			unsubscribe()
			close(done)
		})
	}
	dropped = func() int {
		total := 0
		for _, sub := range subs {
			n, _ := sub.Dropped()
			total += n
		}
		return total
	}
	return out, dropped, stop, nil
}
