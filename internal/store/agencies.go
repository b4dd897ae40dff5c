package store

import (
	"context"
	"errors"
	"sort"

	"github.com/redis/go-redis/v9"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
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

// CreateTeam stores a new team of an agency; AlreadyExists if taken.
func (s *Store) CreateTeam(ctx context.Context, t *sarv1.Team) error {
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
