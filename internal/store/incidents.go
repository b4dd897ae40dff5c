package store

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/sar"
)

func stateWord(s sarv1.IncidentState) string {
	if s == sarv1.IncidentState_INCIDENT_STATE_CLOSED {
		return "closed"
	}
	return "open"
}

// CreateIncident stores a new incident and, in the same atomic step, the
// event that announces it (in the incident's outbox). The indexes are
// written first, so a crash leaves at worst an index entry without an
// incident, which readers skip.
//
// With a requestID (scoped to the creating credential, inc.CreatedBy), a
// retry of the same create returns the incident the first call made
// (created = false); if the first call died half-way, the retry finishes it
// under the same id.
func (s *Store) CreateIncident(ctx context.Context, inc *sarv1.Incident, requestID string, ev *sarv1.Event) (stored *sarv1.Incident, created bool, err error) {
	if requestID != "" {
		key := kReqID(inc.GetCreatedBy(), requestID)
		ok, err := s.rdb.SetNX(ctx, key, inc.GetId(), 24*time.Hour).Result()
		if err != nil {
			return nil, false, fail(err, "incident")
		}
		if !ok {
			prev, err := s.rdb.Get(ctx, key).Result()
			if err != nil {
				return nil, false, fail(err, "incident")
			}
			if got, err := s.waitIncident(ctx, prev); sar.KindOf(err) != sar.KindNotFound {
				return got, false, err
			}
			inc.Id, ev.IncidentId = prev, prev // finish the first call's create
			if ic := ev.GetIncidentChanged(); ic != nil {
				ic.Incident = inc
			}
		}
	}
	id := inc.GetId()
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.SAdd(ctx, kIdxOutbox, id)
		p.SAdd(ctx, kIdxOpen, id)
		p.ZAdd(ctx, kIdxAll, redis.Z{Member: id})
		p.ZAdd(ctx, kIdxJur(inc.GetJurisdiction()), redis.Z{Member: id})
		for _, a := range inc.GetAgencyIds() {
			p.ZAdd(ctx, kIdxAgency(a), redis.Z{Member: id})
		}
		return nil
	})
	if err != nil {
		return nil, false, fail(err, "incident")
	}
	if _, err := s.putIncident(ctx, inc, 0, ev); err != nil {
		if sar.KindOf(err) == sar.KindAlreadyExists && requestID != "" {
			got, _, err := s.GetIncident(ctx, id) // a concurrent retry finished it
			return got, false, err
		}
		return nil, false, err
	}
	return inc, true, nil
}

// waitIncident reads an incident that a concurrent create with the same
// request id may still be writing.
func (s *Store) waitIncident(ctx context.Context, id string) (*sarv1.Incident, error) {
	for i := 0; ; i++ {
		inc, _, err := s.GetIncident(ctx, id)
		if sar.KindOf(err) != sar.KindNotFound || i == 10 {
			return inc, err
		}
		select {
		case <-ctx.Done():
			return nil, fail(ctx.Err(), "incident")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// putIncidentTries bounds the reads of the participants when a close
// races with joins.
const putIncidentTries = 5

// putIncident writes an incident with its event (see
// lua/put_incident.lua). Closing passes every participant's track key to
// the script, read just before; a join in between makes the script refuse
// (SAR_PARTS_CHANGED, nothing written) and the participants are read
// again.
func (s *Store) putIncident(ctx context.Context, inc *sarv1.Incident, ver int64, ev *sarv1.Event) (int64, error) {
	id := inc.GetId()
	state := stateWord(inc.GetState())
	pb, evPb := marshal(inc), marshal(ev)
	var err error
	for range putIncidentTries {
		var parts []string
		if state == "closed" {
			if parts, err = s.rdb.HKeys(ctx, kParts(id)).Result(); err != nil {
				return 0, fail(err, "incident")
			}
		}
		keys, args := closeKeys(id, parts)
		args = append([]any{ver, pb, state, ev.GetId(), evPb, int64(s.retention / time.Second), len(parts)}, args...)
		var res any
		res, err = putIncidentScript.Run(ctx, s.rdb, keys, args...).Result()
		switch scriptCode(err) {
		case codeConflict:
			return 0, errConflict
		case codePartsChanged:
			continue
		}
		if err != nil {
			return 0, fail(err, "incident")
		}
		return intReply("put incident", res)
	}
	return 0, fail(err, "incident")
}

// closeKeys returns the keys of put_incident.lua: the incident's keys,
// then the track key of each of parts; and parts as arguments.
func closeKeys(id string, parts []string) (keys []string, args []any) {
	keys = []string{kInc(id), kOutbox(id), kLast(id), kCells(id), kCellTime(id), kParts(id), kDev(id), kSeq(id), kPartCred(id),
		kGrid(id), kGridPrior(id), kGridCov(id), kGridVer(id), kGridTrk(id), kSearcher(id), kSegs(id),
		kTasks(id), kTaskVer(id), kTaskReq(id), kTaskFeed(id), kTaskDeadlines(id), kGridThrough(id), kWork(id), kWorkTime(id)}
	for _, p := range parts {
		keys = append(keys, kTrack(id, p))
		args = append(args, p)
	}
	return keys, args
}

// GetIncident returns an incident and its version.
func (s *Store) GetIncident(ctx context.Context, id string) (*sarv1.Incident, int64, error) {
	if !sar.ValidID(id) {
		return nil, 0, sar.NotFound("incident")
	}
	vals, err := s.rdb.HMGet(ctx, kInc(id), "pb", "ver").Result()
	if err != nil {
		return nil, 0, fail(err, "incident")
	}
	pb, ok := vals[0].(string)
	if !ok {
		return nil, 0, sar.NotFound("incident")
	}
	inc := &sarv1.Incident{}
	if err := unmarshal(pb, inc); err != nil {
		return nil, 0, err
	}
	var ver int64
	if v, ok := vals[1].(string); ok {
		if ver, err = parseInt(v); err != nil {
			return nil, 0, err
		}
	}
	return inc, ver, nil
}

// UpdateIncident applies change to the current incident and stores the
// result with the event it returns, retrying on concurrent updates. change
// may return a domain error to refuse the update.
func (s *Store) UpdateIncident(ctx context.Context, id string, change func(*sarv1.Incident) (*sarv1.Event, error)) (*sarv1.Incident, error) {
	for attempt := 0; attempt < 10; attempt++ {
		inc, ver, err := s.GetIncident(ctx, id)
		if err != nil {
			return nil, err
		}
		before := inc.GetState()
		ev, err := change(inc)
		if err != nil {
			return nil, err
		}
		if _, err := s.rdb.SAdd(ctx, kIdxOutbox, id).Result(); err != nil {
			return nil, fail(err, "incident")
		}
		_, err = s.putIncident(ctx, inc, ver, ev)
		if errors.Is(err, errConflict) {
			continue
		}
		if err != nil {
			return nil, err
		}
		s.indexAfterUpdate(ctx, inc, before)
		return inc, nil
	}
	return nil, sar.Errorf(sar.KindAborted, "incident is being changed concurrently; retry")
}

// errConflict says another writer changed the incident first.
var errConflict = errors.New("store: conflict")

// indexAfterUpdate keeps the cross-incident indexes in step. They are
// derived data: a failure here is repaired by the next update, and readers
// check every indexed incident themselves.
func (s *Store) indexAfterUpdate(ctx context.Context, inc *sarv1.Incident, before sarv1.IncidentState) {
	id := inc.GetId()
	_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, a := range inc.GetAgencyIds() {
			p.ZAdd(ctx, kIdxAgency(a), redis.Z{Member: id})
		}
		for _, t := range inc.GetTeamRefs() {
			p.ZAdd(ctx, kIdxTeam(t), redis.Z{Member: id})
		}
		if inc.GetState() == sarv1.IncidentState_INCIDENT_STATE_CLOSED && before != inc.GetState() {
			p.SRem(ctx, kIdxOpen, id)
		}
		return nil
	})
}

func indexKeys(ix sar.IncidentIndex) []string {
	var keys []string
	switch {
	case ix.All:
		keys = append(keys, kIdxAll)
	case ix.Jurisdiction != "":
		keys = append(keys, kIdxJur(ix.Jurisdiction))
	}
	if ix.Agency != "" {
		keys = append(keys, kIdxAgency(ix.Agency))
	}
	if ix.TeamRef != "" {
		keys = append(keys, kIdxTeam(ix.TeamRef))
	}
	return keys
}

// ListIncidents pages through an index, newest first. before is the id to
// continue after ("" for the start). It returns the incidents found (ids
// whose record is missing are skipped) and the id to continue from, or "".
func (s *Store) ListIncidents(ctx context.Context, ix sar.IncidentIndex, before string, limit int) ([]*sarv1.Incident, string, error) {
	maxLex := "+"
	if before != "" {
		maxLex = "(" + before
	}
	seen := map[string]bool{}
	var ids []string
	full := false
	for _, key := range indexKeys(ix) {
		got, err := s.rdb.ZRevRangeByLex(ctx, key, &redis.ZRangeBy{Max: maxLex, Min: "-", Count: int64(limit)}).Result()
		if err != nil {
			return nil, "", fail(err, "incident")
		}
		if len(got) == limit {
			full = true
		}
		for _, id := range got {
			if !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
	}
	sortDesc(ids)
	if len(ids) > limit {
		ids, full = ids[:limit], true
	}
	cmds := make([]*redis.StringCmd, len(ids))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HGet(ctx, kInc(id), "pb")
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, "", fail(err, "incident")
	}
	out := make([]*sarv1.Incident, 0, len(ids))
	for _, c := range cmds {
		pb, err := c.Result()
		if err != nil {
			continue // indexed but not (yet) written
		}
		inc := &sarv1.Incident{}
		if err := unmarshal(pb, inc); err != nil {
			return nil, "", err
		}
		out = append(out, inc)
	}
	next := ""
	if full && len(ids) > 0 {
		next = ids[len(ids)-1]
	}
	return out, next, nil
}
