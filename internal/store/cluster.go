package store

import (
	"context"
	"errors"
	"net"

	"github.com/redis/go-redis/v9"
)

// ReloadOnTopologyErrors returns a hook for a Redis Cluster client that
// asks it to reload its slot map whenever a command or pipeline fails in a
// way that says the map may be out of date (topologyChanged).
//
// go-redis reloads the map by itself only when a node answers MOVED or
// ASK, and otherwise once a minute. When a master dies, its replica takes
// its slots over, but nothing answers MOVED for them: the client keeps
// sending the slots' commands to the dead address, and every request on
// those incidents fails for up to a minute after the failover ended
// (TestRedisMasterFailoverLosesNothingAcknowledged). Reloads are
// asynchronous and coalesced by go-redis (one at a time, then at most one
// more after 200 ms), so a burst of failures costs a few CLUSTER SLOTS.
func ReloadOnTopologyErrors(cc *redis.ClusterClient) redis.Hook {
	return reloadHook{cc: cc}
}

type reloadHook struct{ cc *redis.ClusterClient }

func (h reloadHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h reloadHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if topologyChanged(ctx, err) {
			h.cc.ReloadState(ctx)
		}
		return err
	}
}

func (h reloadHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		if topologyChanged(ctx, err) {
			h.cc.ReloadState(ctx)
			return err
		}
		for _, c := range cmds { // a pipeline's error is its first command's; look at each
			if topologyChanged(ctx, c.Err()) {
				h.cc.ReloadState(ctx)
				break
			}
		}
		return err
	}
}

// topologyChanged tells whether a Redis Cluster node's error means the
// client's slot map may be out of date: the node is unreachable (a network
// error, a dial's timeout included, while the caller's ctx still runs), or
// the cluster answered MOVED, ASK, CLUSTERDOWN or TRYAGAIN. A pool without
// a free connection (overload) or a closed client says nothing of the map.
func topologyChanged(ctx context.Context, err error) bool {
	if err == nil || ctx.Err() != nil || errors.Is(err, redis.ErrPoolTimeout) || errors.Is(err, redis.ErrClosed) {
		return false
	}
	var oerr *net.OpError
	if errors.As(err, &oerr) {
		return true // unreachable: refused, reset, or a dial's timeout (which also matches context.DeadlineExceeded)
	}
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) // EOF and the like: the node went away
	}
	for _, p := range []string{"MOVED", "ASK", "CLUSTERDOWN", "TRYAGAIN"} {
		if redis.HasErrorPrefix(err, p) {
			return true
		}
	}
	return false
}
