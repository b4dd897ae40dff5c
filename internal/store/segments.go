package store

import (
	"context"
	"encoding/json"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/sar"
)

// An incident's segmentation is kept in one hash, kSegs: "ver" (grows with
// every write, the compare-and-set of PutSegmentation) and "json" (a
// sar.Segmentation). It is small beside the grid (cell lists of a few hundred
// segments) and written rarely: when segments are cut and when one is
// assigned or freed.

// sar.Segmentation returns an incident's segmentation, or nil if none was cut.
func (s *Store) Segmentation(ctx context.Context, id string) (*sar.Segmentation, error) {
	vals, err := s.rdb.HMGet(ctx, kSegs(id), "ver", "json").Result()
	if err != nil {
		return nil, fail(err, "segments")
	}
	js, ok := vals[1].(string)
	if !ok {
		return nil, nil
	}
	out := &sar.Segmentation{}
	if err := json.Unmarshal([]byte(js), out); err != nil {
		return nil, sar.Wrap(sar.KindInternal, err, "corrupt segments")
	}
	var f fields
	out.Version = f.int(vals[0])
	return out, f.err
}

// PutSegmentation writes a segmentation if the stored one is still at
// seg.Version (0: none), with an event, and returns the new version.
func (s *Store) PutSegmentation(ctx context.Context, id string, seg *sar.Segmentation, ev *sarv1.Event) (int64, error) {
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
		return 0, sar.ErrSegmentsConflict
	}
	if err != nil {
		return 0, fail(err, "incident")
	}
	return intReply("put segments", res)
}
