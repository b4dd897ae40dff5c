package store

import (
	"context"
	"sort"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
)

// The outbox holds events that must reach NATS (lifecycle, participants).
// They are written in the same script as the state change they announce,
// published with their id as the JetStream message id, and deleted once
// JetStream acknowledged them; a relay re-publishes what stays behind.

// OutboxIncidents returns the ids of incidents that may hold unpublished
// events: those flagged in the outbox index and all open ones.
func (s *Store) OutboxIncidents(ctx context.Context) ([]string, error) {
	flagged, err := s.rdb.SMembers(ctx, kIdxOutbox).Result()
	if err != nil {
		return nil, fail(err, "outbox")
	}
	open, err := s.rdb.SMembers(ctx, kIdxOpen).Result()
	if err != nil {
		return nil, fail(err, "outbox")
	}
	seen := make(map[string]bool, len(flagged)+len(open))
	out := make([]string, 0, len(flagged)+len(open))
	for _, id := range append(flagged, open...) {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out, nil
}

// OutboxEvents returns the unpublished events of an incident in the order
// they were made (event ids increase), so they are published in order.
func (s *Store) OutboxEvents(ctx context.Context, incidentID string) ([]*sarv1.Event, error) {
	m, err := s.rdb.HGetAll(ctx, kOutbox(incidentID)).Result()
	if err != nil {
		return nil, fail(err, "outbox")
	}
	out := make([]*sarv1.Event, 0, len(m))
	for _, pb := range m {
		ev := &sarv1.Event{}
		if err := unmarshal(pb, ev); err != nil {
			return nil, err
		}
		out = append(out, ev)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetId() < out[j].GetId() })
	return out, nil
}

// OutboxDone removes published events.
func (s *Store) OutboxDone(ctx context.Context, incidentID string, eventIDs ...string) error {
	if len(eventIDs) > 0 {
		if err := s.rdb.HDel(ctx, kOutbox(incidentID), eventIDs...).Err(); err != nil {
			return fail(err, "outbox")
		}
	}
	return nil
}

// OutboxUnflag drops an incident from the outbox index if its outbox is
// empty and it is closed.
func (s *Store) OutboxUnflag(ctx context.Context, incidentID string) error {
	n, err := s.rdb.HLen(ctx, kOutbox(incidentID)).Result()
	if err != nil || n > 0 {
		return fail(err, "outbox")
	}
	open, err := s.rdb.SIsMember(ctx, kIdxOpen, incidentID).Result()
	if err != nil || open {
		return fail(err, "outbox")
	}
	return fail(s.rdb.SRem(ctx, kIdxOutbox, incidentID).Err(), "outbox")
}
