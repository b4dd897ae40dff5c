package store

import (
	"context"
	"errors"

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
		if topologyChanged(err) {
			h.cc.ReloadState(ctx)
		}
		return err
	}
}

func (h reloadHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		if topologyChanged(err) {
			h.cc.ReloadState(ctx)
			return err
		}
		for _, c := range cmds { // a pipeline's error is its first command's; look at each
			if topologyChanged(c.Err()) {
				h.cc.ReloadState(ctx)
				break
			}
		}
		return err
	}
}

// topologyChanged tells whether a Redis Cluster node's error means the
// client's slot map may be out of date: the node is unreachable (not a
// Redis error reply, not the caller's context ending), or the cluster
// answered MOVED, ASK, CLUSTERDOWN or TRYAGAIN.
func topologyChanged(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return true // a network error: the node is gone or going
	}
	for _, p := range []string{"MOVED", "ASK", "CLUSTERDOWN", "TRYAGAIN"} {
		if redis.HasErrorPrefix(err, p) {
			return true
		}
	}
	return false
}
