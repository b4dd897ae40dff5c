package main

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	"github.com/mountain-sar/sar/geo"
)

// Parameters of the floor, as sard's defaults.
const (
	floorResolution = geo.DefaultResolution // sard --resolution
	floorTrackMax   = 5000                  // sard --track-max
)

// runFloor measures the floor under the server: the same fixes (same
// walks, batch size and number of writers) written straight to Redis, one
// pipeline per batch holding the writes of the server's ingest script, with
// no Lua, no reads, no validation, no gRPC and no NATS:
//
//	HSET  seq   device maxSeq                  (acked-through sequence)
//	ZADD  trk:<device> t1 pb1 ... tn pbn        (track breadcrumbs)
//	ZREMRANGEBYRANK trk:<device> 0 -(max+1)     (bounded track)
//	HINCRBY cells cell count                    (one per distinct cell)
//	ZADD  cellt GT t cell ...                   (newest fix per cell)
//	HSET  last  device "<ms>|<pb>"              (last known position)
//
// Keys are "bench:{<run>}:..." (one hash slot, like an incident's keys) and
// are deleted afterwards. Each writer has its own connection and one
// pipeline in flight, like a stream with --inflight 1.
func runFloor(ctx context.Context, o benchOptions, runID string) (fixesPerS, seconds float64, err error) {
	opt, err := redis.ParseURL(o.RedisURL)
	if err != nil {
		return 0, 0, err
	}
	opt.PoolSize = o.Devices + 1
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	if err := rdb.Ping(ctx).Err(); err != nil {
		return 0, 0, err
	}
	prefix := "bench:{" + runID + "}:"
	kSeq, kCells, kCellT, kLast := prefix+"seq", prefix+"cells", prefix+"cellt", prefix+"last"
	keys := []string{kSeq, kCells, kCellT, kLast}
	for i := range o.Devices {
		keys = append(keys, prefix+"trk:"+strconv.Itoa(i))
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		for len(keys) > 0 {
			n := min(len(keys), 500)
			if derr := rdb.Unlink(cctx, keys[:n]...).Err(); derr != nil && err == nil {
				err = derr
			}
			keys = keys[n:]
		}
	}()

	fctx, cancel := context.WithTimeout(ctx, o.Duration)
	defer cancel()
	var total atomic.Int64
	var errMu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	start := time.Now()
	for i := range o.Devices {
		wg.Go(func() {
			device, kTrk := strconv.Itoa(i), prefix+"trk:"+strconv.Itoa(i)
			w := newWalker(uint64(i) + 1)
			seq := uint64(1)
			members := make([]redis.Z, o.Batch)
			for fctx.Err() == nil {
				fixes := w.Batch(seq, o.Batch, time.Now())
				counts := map[string]int64{}
				newest := map[string]int64{}
				var lastMs int64
				var lastPb []byte
				for j, f := range fixes {
					c, err := geo.CellAt(f.GetLat(), f.GetLng(), floorResolution)
					if err != nil {
						panic(err) // the walk stays on Earth
					}
					f.Cell = geo.CellString(c)
					pb, err := proto.Marshal(f)
					if err != nil {
						panic(err)
					}
					t := f.GetTime().AsTime().UnixMilli()
					members[j] = redis.Z{Score: float64(t), Member: pb}
					counts[f.Cell]++
					newest[f.Cell] = max(newest[f.Cell], t)
					lastMs, lastPb = t, pb
				}
				cellt := make([]redis.Z, 0, len(newest))
				for c, t := range newest {
					cellt = append(cellt, redis.Z{Score: float64(t), Member: c})
				}
				maxSeq := seq + uint64(o.Batch) - 1
				_, err := rdb.Pipelined(fctx, func(p redis.Pipeliner) error {
					p.HSet(fctx, kSeq, device, maxSeq)
					p.ZAdd(fctx, kTrk, members...)
					p.ZRemRangeByRank(fctx, kTrk, 0, -(floorTrackMax + 1))
					for c, n := range counts {
						p.HIncrBy(fctx, kCells, c, n)
					}
					p.ZAddGT(fctx, kCellT, cellt...)
					p.HSet(fctx, kLast, device, strconv.FormatInt(lastMs, 10)+"|"+string(lastPb))
					return nil
				})
				if err != nil {
					if fctx.Err() == nil {
						errMu.Lock()
						if firstErr == nil {
							firstErr = err
						}
						errMu.Unlock()
					}
					return
				}
				total.Add(int64(o.Batch))
				seq = maxSeq + 1
			}
		})
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	if firstErr != nil {
		return 0, secs, firstErr
	}
	return float64(total.Load()) / secs, secs, nil
}
