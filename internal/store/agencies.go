package store

import (
	"context"
	"errors"
	"sort"
	"strings"

	"github.com/redis/go-redis/v9"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/geo"
	"github.com/mountain-sar/sar/internal/sar"
)

// CreateAgency stores a new agency; AlreadyExists if the id is taken.
func (s *Store) CreateAgency(ctx context.Context, a *sarv1.Agency) error {
	ok, err := s.rdb.SetNX(ctx, kAgency(a.GetId()), marshal(a), 0).Result()
	if err != nil {
		return fail(err, "agency")
	}
	if !ok {
		return sar.Errorf(sar.KindAlreadyExists, "agency %q already exists", a.GetId())
	}
	return fail(s.rdb.SAdd(ctx, kIdxAgencies, a.GetId()).Err(), "agency")
}

// Agency returns one agency.
func (s *Store) Agency(ctx context.Context, id string) (*sarv1.Agency, error) {
	if !sar.ValidSlug(id) {
		return nil, sar.NotFound("agency")
	}
	pb, err := s.rdb.Get(ctx, kAgency(id)).Result()
	if err == redis.Nil {
		return nil, sar.NotFound("agency")
	}
	if err != nil {
		return nil, fail(err, "agency")
	}
	a := &sarv1.Agency{}
	return a, unmarshal(pb, a)
}

// Agencies returns all agencies ordered by id (one GET per agency,
// pipelined, so it works on Cluster where they live in different slots).
func (s *Store) Agencies(ctx context.Context) ([]*sarv1.Agency, error) {
	ids, err := s.rdb.SMembers(ctx, kIdxAgencies).Result()
	if err != nil {
		return nil, fail(err, "agency")
	}
	sort.Strings(ids)
	cmds := make([]*redis.StringCmd, len(ids))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.Get(ctx, kAgency(id))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fail(err, "agency")
	}
	out := make([]*sarv1.Agency, 0, len(ids))
	for _, c := range cmds {
		pb, err := c.Result()
		if err != nil {
			continue
		}
		a := &sarv1.Agency{}
		if err := unmarshal(pb, a); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// CreateTeam stores a new team of an agency; AlreadyExists if taken. Its
// place is indexed first, so that a crash in between leaves at most a
// reference that reads skip.
func (s *Store) CreateTeam(ctx context.Context, t *sarv1.Team) error {
	if c := teamCell(t); c != 0 {
		if err := s.rdb.SAdd(ctx, kTeamCell(c), teamRef(t.GetAgencyId(), t.GetId())).Err(); err != nil {
			return fail(err, "team")
		}
	}
	ok, err := s.rdb.HSetNX(ctx, kAgencyTeams(t.GetAgencyId()), t.GetId(), marshal(t)).Result()
	if err != nil {
		return fail(err, "team")
	}
	if !ok {
		return sar.Errorf(sar.KindAlreadyExists, "team %q already exists", t.GetId())
	}
	return nil
}

// Teams returns an agency's teams ordered by id.
func (s *Store) Teams(ctx context.Context, agencyID string) ([]*sarv1.Team, error) {
	m, err := s.rdb.HGetAll(ctx, kAgencyTeams(agencyID)).Result()
	if err != nil {
		return nil, fail(err, "team")
	}
	out := make([]*sarv1.Team, 0, len(m))
	for _, pb := range m {
		t := &sarv1.Team{}
		if err := unmarshal(pb, t); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetId() < out[j].GetId() })
	return out, nil
}

// TeamExists reports whether an agency has a team.
func (s *Store) TeamExists(ctx context.Context, agencyID, teamID string) (bool, error) {
	ok, err := s.rdb.HExists(ctx, kAgencyTeams(agencyID), teamID).Result()
	return ok, fail(err, "team")
}

// Teams are indexed by where they are (their reported position, else their
// home) on coarse H3 cells (geo.IndexResolution): one set per cell of
// "<agency>/<team>" references, each used alone in a command so that the
// index works on Cluster. The team record is the truth: a reference whose
// team has since moved to another cell is skipped (and removed) on read,
// so a crash between the record and the index leaves nothing wrong.

func teamRef(agencyID, teamID string) string { return agencyID + "/" + teamID }

// teamCell returns the index cell of a team, or 0 if it has no position.
func teamCell(t *sarv1.Team) uint64 {
	ll := t.GetPosition()
	if ll == nil {
		ll = t.GetHome()
	}
	if ll == nil {
		return 0
	}
	c, err := geo.IndexCell(ll.GetLat(), ll.GetLng())
	if err != nil {
		return 0 // validated at the edge; an unplaceable team is simply not indexed
	}
	return c
}

// unindexTeam removes a team's reference from an index cell, then reads
// the team again and puts the reference back if the record now places the
// team there: a concurrent move back into the cell (whose own add found
// the reference still present) must not leave the team unindexed. The two
// keys live in different slots, so this cannot be one script on Cluster.
func (s *Store) unindexTeam(ctx context.Context, cell uint64, agencyID, teamID string) {
	ref := teamRef(agencyID, teamID)
	if err := s.rdb.SRem(ctx, kTeamCell(cell), ref).Err(); err != nil {
		return
	}
	t, err := s.Team(ctx, agencyID, teamID)
	if err == nil && teamCell(t) == cell {
		_ = s.rdb.SAdd(ctx, kTeamCell(cell), ref).Err()
	}
}

// Team returns one team of an agency.
func (s *Store) Team(ctx context.Context, agencyID, teamID string) (*sarv1.Team, error) {
	pb, err := s.rdb.HGet(ctx, kAgencyTeams(agencyID), teamID).Result()
	if err == redis.Nil {
		return nil, sar.NotFound("team")
	}
	if err != nil {
		return nil, fail(err, "team")
	}
	t := &sarv1.Team{}
	return t, unmarshal(pb, t)
}

// UpdateTeam changes a team by read-modify-write under WATCH (retried when
// another writer changed the agency's teams first) and keeps the position
// index in step: the new cell is indexed before the record is written and
// the old one unindexed after. change must not fail for a reason the
// retry would not cure: it runs again on a conflict.
func (s *Store) UpdateTeam(ctx context.Context, agencyID, teamID string, change func(*sarv1.Team) error) (*sarv1.Team, error) {
	key := kAgencyTeams(agencyID)
	var out *sarv1.Team
	var oldCell, newCell uint64
	tx := func(tx *redis.Tx) error {
		pb, err := tx.HGet(ctx, key, teamID).Result()
		if err == redis.Nil {
			return sar.NotFound("team")
		}
		if err != nil {
			return err
		}
		t := &sarv1.Team{}
		if err := unmarshal(pb, t); err != nil {
			return err
		}
		oldCell = teamCell(t)
		if err := change(t); err != nil {
			return err
		}
		newCell = teamCell(t)
		if newCell != 0 { // also when unchanged: heals a reference a crash left out
			if err := s.rdb.SAdd(ctx, kTeamCell(newCell), teamRef(agencyID, teamID)).Err(); err != nil {
				return err
			}
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.HSet(ctx, key, teamID, marshal(t))
			return nil
		})
		out = t
		return err
	}
	for range 10 {
		err := s.rdb.Watch(ctx, tx, key)
		if errors.Is(err, redis.TxFailedErr) {
			continue
		}
		if err != nil {
			return nil, fail(err, "team")
		}
		if oldCell != 0 && oldCell != newCell {
			// Best effort: a stale reference is skipped and removed on read.
			s.unindexTeam(ctx, oldCell, agencyID, teamID)
		}
		return out, nil
	}
	return nil, sar.Errorf(sar.KindAborted, "team is being changed concurrently; retry")
}

// TeamsIn returns the teams indexed in the given cells (geo.IndexResolution)
// whose record still places them there: two pipelined round trips whatever
// the number of cells.
func (s *Store) TeamsIn(ctx context.Context, cells []uint64) ([]*sarv1.Team, error) {
	sets := make([]*redis.StringSliceCmd, len(cells))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, c := range cells {
			sets[i] = p.SMembers(ctx, kTeamCell(c))
		}
		return nil
	})
	if err != nil {
		return nil, fail(err, "team")
	}
	type found struct {
		cell      uint64
		agency, t string
		cmd       *redis.StringCmd
	}
	var refs []*found
	for i, c := range sets {
		for _, ref := range c.Val() {
			a, t, ok := strings.Cut(ref, "/")
			if !ok {
				continue
			}
			refs = append(refs, &found{cell: cells[i], agency: a, t: t})
		}
	}
	if len(refs) == 0 {
		return nil, nil
	}
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, f := range refs {
			f.cmd = p.HGet(ctx, kAgencyTeams(f.agency), f.t)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fail(err, "team")
	}
	out := make([]*sarv1.Team, 0, len(refs))
	for _, f := range refs {
		pb, err := f.cmd.Result()
		t := &sarv1.Team{}
		if err == nil {
			err = unmarshal(pb, t)
		}
		if err != nil || teamCell(t) != f.cell {
			s.unindexTeam(ctx, f.cell, f.agency, f.t) // stale
			continue
		}
		out = append(out, t)
	}
	return out, nil
}
