package store

import (
	"context"
	"embed"
	"io/fs"
	"path"
	"slices"
	"strings"

	"github.com/redis/go-redis/v9"
)

// The Lua scripts live in lua/*.lua, one script a file. Each starts with a
// header comment naming its KEYS and ARGV, what it returns and the error
// codes it raises (see errors.go); a script that only reads carries the
// Redis 7 shebang "#!lua flags=no-writes" on its first line and is run
// with RunRO. Every key a script touches is passed in KEYS, never built
// inside the script, so each run is routed to the one slot of the
// incident's hash tag.
//
//go:embed lua/*.lua
var luaFiles embed.FS

// scripts holds every embedded script by file name without ".lua";
// LoadScripts loads them all.
var scripts = func() map[string]*redis.Script {
	names, err := fs.Glob(luaFiles, "lua/*.lua")
	if err != nil {
		panic(err)
	}
	out := make(map[string]*redis.Script, len(names))
	for _, n := range names {
		src, err := luaFiles.ReadFile(n)
		if err != nil {
			panic(err)
		}
		out[strings.TrimSuffix(path.Base(n), ".lua")] = redis.NewScript(string(src))
	}
	return out
}()

// script returns the embedded script name; a missing file is a bug.
func script(name string) *redis.Script {
	s, ok := scripts[name]
	if !ok {
		panic("store: no script lua/" + name + ".lua")
	}
	return s
}

var (
	ingestScript            = script("ingest")
	putIncidentScript       = script("put_incident")
	joinScript              = script("join")
	addParticipantScript    = script("add_participant")
	putGridScript           = script("put_grid")
	coverageScript          = script("coverage")
	coverageTotalScript     = script("coverage_total")
	coverReadScript         = script("cover_read")
	workDoneScript          = script("work_done")
	flushGridEventScript    = script("flush_grid_event")
	loadChangedScript       = script("load_changed")
	updateGridSummaryScript = script("update_grid_summary")
	putSegmentsScript       = script("put_segments")
	revokeScript            = script("revoke_credential")
)

// LoadScripts loads every embedded Lua script into Redis (every master of
// a Cluster), so the first batches do not pay a NOSCRIPT round trip.
func (s *Store) LoadScripts(ctx context.Context) error {
	names := make([]string, 0, len(scripts))
	for n := range scripts {
		names = append(names, n)
	}
	slices.Sort(names)
	load := func(ctx context.Context, c *redis.Client) error {
		for _, n := range names {
			if err := scripts[n].Load(ctx, c).Err(); err != nil {
				return err
			}
		}
		return nil
	}
	var err error
	switch c := s.rdb.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, load)
	case *redis.Client:
		err = load(ctx, c)
	}
	return fail(err, "scripts")
}
