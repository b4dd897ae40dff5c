package dispatch

import (
	"context"
	"log/slog"
	"time"

	"github.com/cenkalti/backoff/v5"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
)

// OutboxStore is what the relay needs of the storage.
type OutboxStore interface {
	OutboxIncidents(ctx context.Context) ([]string, error)
	OutboxEvents(ctx context.Context, incidentID string) ([]*sarv1.Event, error)
	OutboxDone(ctx context.Context, incidentID string, eventIDs ...string) error
	OutboxUnflag(ctx context.Context, incidentID string) error
}

// Deliver publishes durable events of one incident that were just written
// to its outbox, and removes those JetStream acknowledged. What fails stays
// in the outbox for the relay. It never returns an error to the caller's
// request: the state change is stored, delivery is the relay's promise.
// Without an outbox (WithOutbox) acknowledged events are not cleared and
// the relay publishes them again, deduplicated by JetStream.
func (b *Bus) Deliver(ctx context.Context, evs ...*sarv1.Event) {
	if len(evs) == 0 {
		return
	}
	log := b.log
	if !b.nc.IsConnected() {
		// Do not make the request wait for an ack that cannot come: the
		// relay publishes the outbox when NATS is back.
		log.Warn("NATS unavailable: event left in outbox for the relay", "incident", evs[0].GetIncidentId())
		return
	}
	acked, err := b.PublishDurable(ctx, evs...)
	if err != nil {
		log.Warn("event left in outbox for the relay", "incident", evs[0].GetIncidentId(), "err", err)
	}
	if len(acked) > 0 && b.outbox != nil {
		if err := b.outbox.OutboxDone(context.WithoutCancel(ctx), evs[0].GetIncidentId(), acked...); err != nil {
			log.Warn("outbox cleanup failed; the relay will publish again (deduplicated)", "err", err)
		}
	}
}

// Relay re-publishes events left in outboxes (NATS was down, or a server
// crashed between the Redis write and the publish). Several replicas may
// run relays at once: JetStream drops the duplicates by message id.
type Relay struct {
	Bus      *Bus
	Store    OutboxStore
	Log      *slog.Logger
	Interval time.Duration // between sweeps (default 2 s)
	Grace    time.Duration // leave events younger than this to their writer (default 3 s)
}

// Run sweeps until ctx ends, backing off while NATS or Redis fail.
func (r *Relay) Run(ctx context.Context) {
	interval, grace := r.Interval, r.Grace
	if interval <= 0 {
		interval = 2 * time.Second
	}
	if grace <= 0 {
		grace = 3 * time.Second
	}
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = interval
	bo.MaxInterval = 30 * time.Second
	wait := interval
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if n, err := r.Sweep(ctx, grace); err != nil {
			wait = bo.NextBackOff()
			r.Log.Warn("outbox relay sweep failed", "err", err, "retry_in", wait)
		} else {
			if n > 0 {
				r.Log.Info("outbox relay re-published events", "events", n)
			}
			bo.Reset()
			wait = interval
		}
	}
}

// Sweep publishes every outbox event older than grace once, incident by
// incident in the order the events were made, and returns how many
// JetStream acknowledged. A failing incident does not hold back the others;
// the first error is returned after the sweep.
func (r *Relay) Sweep(ctx context.Context, grace time.Duration) (int, error) {
	ids, err := r.Store.OutboxIncidents(ctx)
	if err != nil {
		return 0, err
	}
	total := 0
	var first error
	for _, id := range ids {
		n, err := r.sweepIncident(ctx, id, grace)
		total += n
		if err != nil && first == nil {
			first = err
		}
	}
	return total, first
}

// sweepIncident publishes one incident's due events; it stops at the first
// failure so that later events never overtake an earlier one.
func (r *Relay) sweepIncident(ctx context.Context, id string, grace time.Duration) (int, error) {
	total := 0
	cutoff := time.Now().Add(-grace)
	evs, err := r.Store.OutboxEvents(ctx, id)
	if err != nil {
		return 0, err
	}
	if len(evs) == 0 {
		return 0, r.Store.OutboxUnflag(ctx, id)
	}
	for _, ev := range evs { // oldest first
		if !ev.GetTime().AsTime().Before(cutoff) {
			break // its writer is still delivering it, and what follows
		}
		acked, err := r.Bus.PublishDurable(ctx, ev)
		if err != nil || len(acked) == 0 {
			return total, err
		}
		total++
		if err := r.Store.OutboxDone(ctx, id, acked...); err != nil {
			return total, err
		}
	}
	return total, nil
}
