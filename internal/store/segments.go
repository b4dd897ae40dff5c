package store

import (
	"context"
	"encoding/json"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/sar"
)

// An incident's segmentation is kept in one hash, kSegs: "ver" (grows with
// every write, the compare-and-set of PutSegmentation) and "json" (a
// Segmentation). It is small beside the grid (cell lists of a few hundred
// segments) and written rarely: when segments are cut and when one is
// assigned or freed.

// Segmentation is an incident's segments as cut from its grid.
type Segmentation struct {
	Version      int64           `json:"-"`
	SeedVersion  int64           `json:"seed_version"` // grid seed the unassigned segments were cut from
	TargetAreaM2 float64         `json:"target_area_m2"`
	NextID       int             `json:"next_id"` // ids are never reused within an incident
	Segments     []StoredSegment `json:"segments"`
}

// StoredSegment is one segment and its assignment.
type StoredSegment struct {
	ID       int      `json:"id"`
	Cells    []uint64 `json:"cells"`
	AreaM2   float64  `json:"area_m2"`
	Lat      float64  `json:"lat"`
	Lng      float64  `json:"lng"`
	Agency   string   `json:"agency,omitempty"` // assigned team's agency ("" when free)
	Team     string   `json:"team,omitempty"`
	AssignMs int64    `json:"assign_ms,omitempty"`
}

// Assigned reports whether the segment is assigned to a team.
func (s StoredSegment) Assigned() bool { return s.Agency != "" }

// ErrSegmentsConflict says the segmentation changed since it was read.
var ErrSegmentsConflict = sar.Errorf(sar.KindAborted, "segments changed concurrently; retry")

// Segmentation returns an incident's segmentation, or nil if none was cut.
func (s *Store) Segmentation(ctx context.Context, id string) (*Segmentation, error) {
	vals, err := s.rdb.HMGet(ctx, kSegs(id), "ver", "json").Result()
	if err != nil {
		return nil, fail(err, "segments")
	}
	js, ok := vals[1].(string)
	if !ok {
		return nil, nil
	}
	out := &Segmentation{}
	if err := json.Unmarshal([]byte(js), out); err != nil {
		return nil, sar.Wrap(sar.KindInternal, err, "corrupt segments")
	}
	out.Version = pint(vals[0])
	return out, nil
}

// PutSegmentation writes a segmentation if the stored one is still at
// seg.Version (0: none), with an event, and returns the new version.
func (s *Store) PutSegmentation(ctx context.Context, id string, seg *Segmentation, ev *sarv1.Event) (int64, error) {
	js, err := json.Marshal(seg)
	if err != nil {
		return 0, sar.Wrap(sar.KindInternal, err, "segments")
	}
	if _, err := s.rdb.SAdd(ctx, kIdxOutbox, id).Result(); err != nil {
		return 0, fail(err, "incident")
	}
	res, err := putSegmentsScript.Run(ctx, s.rdb, []string{kInc(id), kSegs(id), kOutbox(id)},
		seg.Version, string(js), ev.GetId(), marshal(ev)).Result()
	if scriptCode(err) == codeConflict {
		return 0, ErrSegmentsConflict
	}
	if err != nil {
		return 0, fail(err, "incident")
	}
	return intReply("put segments", res)
}
