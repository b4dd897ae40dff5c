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

// FlaglessScripts is a go-redis hook for a server that does not read Redis
// 7's script flags line ("#!lua flags=no-writes"), such as the in-process
// miniredis of the embedded mode: it removes that line from the scripts
// this package sends (EVAL, EVAL_RO, SCRIPT LOAD) and sends EVALSHA and
// EVALSHA_RO of such a script with the hash of the script without it. On
// Redis itself the line stays: read-only scripts keep running on replicas
// and when Redis is out of memory.
func FlaglessScripts() redis.Hook { return flaglessHook{} }

// flaglessSHA maps the hash of each script with a flags line to the hash
// of the same script without it.
var flaglessSHA = func() map[string]string {
	out := map[string]string{}
	for name, sc := range scripts {
		src, _ := luaFiles.ReadFile("lua/" + name + ".lua")
		if stripped, ok := stripFlags(string(src)); ok {
			out[sc.Hash()] = redis.NewScript(stripped).Hash()
		}
	}
	return out
}()

func stripFlags(src string) (string, bool) {
	if !strings.HasPrefix(src, "#!") {
		return src, false
	}
	_, rest, _ := strings.Cut(src, "\n")
	return rest, true
}

type flaglessHook struct{}

func (flaglessHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (flaglessHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		unflag(cmd)
		return next(ctx, cmd)
	}
}

func (flaglessHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			unflag(c)
		}
		return next(ctx, cmds)
	}
}

// unflag rewrites one command in place (see FlaglessScripts).
func unflag(cmd redis.Cmder) {
	args := cmd.Args()
	if len(args) < 2 {
		return
	}
	at := 1
	switch strings.ToLower(cmd.Name()) {
	case "eval", "eval_ro":
	case "script":
		if s, _ := args[1].(string); !strings.EqualFold(s, "load") || len(args) < 3 {
			return
		}
		at = 2
	case "evalsha", "evalsha_ro":
		if sha, ok := args[1].(string); ok {
			if to, ok := flaglessSHA[sha]; ok {
				args[1] = to
			}
		}
		return
	default:
		return
	}
	if src, ok := args[at].(string); ok {
		if stripped, ok := stripFlags(src); ok {
			args[at] = stripped
		}
	}
}
