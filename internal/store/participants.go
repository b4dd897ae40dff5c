package store

import (
	"context"
	"sort"
	"strings"

	"github.com/redis/go-redis/v9"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/sar"
)

// Join binds a device to a participant of an open incident, idempotently.
func (s *Store) Join(ctx context.Context, a sar.JoinArgs) (sar.JoinResult, error) {
	id := a.IncidentID
	if a.Event != nil {
		if _, err := s.rdb.SAdd(ctx, kIdxOutbox, id).Result(); err != nil {
			return sar.JoinResult{}, fail(err, "incident")
		}
	}
	newID, newPb, evID, evPb := "", "", "", ""
	if a.New != nil {
		newID, newPb, evID, evPb = a.New.GetId(), marshal(a.New), a.Event.GetId(), marshal(a.Event)
	}
	if a.CallerPartID != "" && a.Opened != nil {
		newPb, evID, evPb = marshal(a.Opened), a.Event.GetId(), marshal(a.Event)
	}
	keys := []string{kInc(id), kParts(id), kPartCred(id), kDev(id), kSeq(id), kOutbox(id), kSearcher(id)}
	res, err := joinScript.Run(ctx, s.rdb, keys, a.DeviceID, a.CredentialID, a.CallerPartID, newID, newPb, evID, evPb, a.RebindFrom,
		a.SearcherType, a.NewSearcherType).Result()
	if err != nil {
		return sar.JoinResult{}, fail(err, "incident") // SAR_DEVICE_TAKEN wraps sar.ErrDeviceTaken
	}
	return joinReply(res)
}

// joinReply reads the join script's reply (see lua/join.lua).
func joinReply(v any) (sar.JoinResult, error) {
	r := newReply("join", v, 5)
	created, acked, pb, st := r.flag(1), r.udecimal(2), r.str(3), r.str(4)
	if r.err != nil {
		return sar.JoinResult{}, r.err
	}
	p := &sarv1.Participant{}
	if err := unmarshal(pb, p); err != nil {
		return sar.JoinResult{}, err
	}
	p.SearcherType = st
	return sar.JoinResult{Participant: p, Created: created, AckedThrough: acked}, nil
}

// DeviceBinding returns the participant a device is bound to in an
// incident, and the credential id that participant joined with ("" for a
// caller or an unbound device).
func (s *Store) DeviceBinding(ctx context.Context, incidentID, deviceID string) (participantID, credentialID string, err error) {
	pid, err := s.rdb.HGet(ctx, kDev(incidentID), deviceID).Result()
	if err == redis.Nil {
		return "", "", nil
	}
	if err != nil {
		return "", "", fail(err, "participant")
	}
	creds, err := s.rdb.HGetAll(ctx, kPartCred(incidentID)).Result()
	if err != nil {
		return "", "", fail(err, "participant")
	}
	for c, p := range creds {
		if p == pid {
			return pid, c, nil
		}
	}
	return pid, "", nil
}

// AddParticipant adds a server-made participant (a share link's caller) to
// an open incident, with the event that announces it.
func (s *Store) AddParticipant(ctx context.Context, p *sarv1.Participant, ev *sarv1.Event) error {
	id := p.GetIncidentId()
	if _, err := s.rdb.SAdd(ctx, kIdxOutbox, id).Result(); err != nil {
		return fail(err, "incident")
	}
	res, err := addParticipantScript.Run(ctx, s.rdb, []string{kInc(id), kParts(id), kOutbox(id)},
		p.GetId(), marshal(p), ev.GetId(), marshal(ev)).Result()
	if err != nil {
		return fail(err, "incident")
	}
	_, err = intReply("add participant", res)
	return err
}

// Participant returns one participant without its last fix.
func (s *Store) Participant(ctx context.Context, incidentID, participantID string) (*sarv1.Participant, error) {
	var pb, st *redis.StringCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		pb = p.HGet(ctx, kParts(incidentID), participantID)
		st = p.HGet(ctx, kSearcher(incidentID), participantID)
		return nil
	})
	if pb != nil && pb.Err() == redis.Nil {
		return nil, sar.NotFound("participant")
	}
	if err != nil && err != redis.Nil {
		return nil, fail(err, "participant")
	}
	p := &sarv1.Participant{}
	if err := unmarshal(pb.Val(), p); err != nil {
		return nil, err
	}
	p.SearcherType = st.Val()
	return p, nil
}

// Participants returns an incident's participants with their devices and
// last known positions, ordered by join time, in one round trip.
func (s *Store) Participants(ctx context.Context, incidentID string) ([]*sarv1.Participant, error) {
	var parts, devs, last, types *redis.MapStringStringCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		parts = p.HGetAll(ctx, kParts(incidentID))
		devs = p.HGetAll(ctx, kDev(incidentID))
		last = p.HGetAll(ctx, kLast(incidentID))
		types = p.HGetAll(ctx, kSearcher(incidentID))
		return nil
	})
	if err != nil {
		return nil, fail(err, "incident")
	}
	byID := map[string]*sarv1.Participant{}
	out := make([]*sarv1.Participant, 0, len(parts.Val()))
	for id, pb := range parts.Val() {
		p := &sarv1.Participant{}
		if err := unmarshal(pb, p); err != nil {
			return nil, err
		}
		p.SearcherType = types.Val()[id]
		byID[id] = p
		out = append(out, p)
	}
	for dev, pid := range devs.Val() {
		if p := byID[pid]; p != nil {
			p.DeviceIds = append(p.DeviceIds, dev)
		}
	}
	for pid, v := range last.Val() {
		if p := byID[pid]; p != nil {
			f, err := decodeLast(v)
			if err != nil {
				return nil, err
			}
			p.LastFix = f
		}
	}
	for _, p := range out {
		sort.Strings(p.DeviceIds)
	}
	sort.Slice(out, func(i, j int) bool {
		ti, tj := out[i].GetJoinTime().AsTime(), out[j].GetJoinTime().AsTime()
		if ti.Equal(tj) {
			return out[i].GetId() < out[j].GetId()
		}
		return ti.Before(tj)
	})
	return out, nil
}

// decodeLast decodes a "<ms>|<LocationFix pb>" last-position value.
func decodeLast(v string) (*sarv1.LocationFix, error) {
	i := strings.IndexByte(v, '|')
	if i < 0 {
		return nil, sar.Errorf(sar.KindInternal, "corrupt last position in storage")
	}
	f := &sarv1.LocationFix{}
	return f, unmarshal(v[i+1:], f)
}

// DeviceOwner returns, in one round trip, the participant a device is bound
// to in an incident and the participant a rescuer credential joined as
// ("" where there is none).
func (s *Store) DeviceOwner(ctx context.Context, incidentID, deviceID, credentialID string) (devicePart, credPart string, err error) {
	var dev, cred *redis.StringCmd
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		dev = p.HGet(ctx, kDev(incidentID), deviceID)
		cred = p.HGet(ctx, kPartCred(incidentID), credentialID)
		return nil
	})
	if err != nil && err != redis.Nil {
		return "", "", fail(err, "incident")
	}
	return dev.Val(), cred.Val(), nil
}
