package store

import (
	"context"
	"io/fs"
	"regexp"
	"strings"
	"testing"
)

// writeCommands are the Redis commands the scripts may write with.
var writeCommands = regexp.MustCompile(`redis\.call\('(HSET|HDEL|HINCRBY|HINCRBYFLOAT|ZADD|ZREM|ZREMRANGEBYRANK|ZUNIONSTORE|DEL|UNLINK|EXPIRE|PERSIST|RENAME|SET)'`)

// TestScriptSources checks every embedded script: a header naming KEYS,
// ARGV and what it returns; the no-writes shebang exactly on the scripts
// that do not write; no key name built inside a script (every key comes
// through KEYS); error replies that carry a known code and a detail (Redis
// 7 turns a reply without a space into "ERR <text>", which no code
// matches); no DEL (UNLINK frees large hashes in the background).
func TestScriptSources(t *testing.T) {
	names, _ := fs.Glob(luaFiles, "lua/*.lua")
	if len(names) != len(scripts) || len(names) < 10 {
		t.Fatalf("%d files, %d scripts; want every file a script", len(names), len(scripts))
	}
	errReply := regexp.MustCompile(`redis\.error_reply\('([^']*)'\)`)
	for _, n := range names {
		b, _ := luaFiles.ReadFile(n)
		src := string(b)
		for _, h := range []string{"\n-- KEYS: ", "\n-- ARGV: ", "\n-- Returns: "} {
			if !strings.Contains(src, h) {
				t.Errorf("%s: no header line %q", n, strings.TrimSpace(h))
			}
		}
		writes := writeCommands.MatchString(src)
		flagged := strings.HasPrefix(src, "#!lua flags=no-writes\n")
		if writes == flagged {
			t.Errorf("%s: writes %v but no-writes shebang %v", n, writes, flagged)
		}
		if strings.HasPrefix(src, "#!") && !flagged {
			t.Errorf("%s: unexpected shebang %q", n, strings.SplitN(src, "\n", 2)[0])
		}
		if strings.Contains(src, "sar:") || strings.Contains(src, "'}:") {
			t.Errorf("%s: builds a key name; pass every key in KEYS", n)
		}
		if strings.Contains(src, "'DEL'") {
			t.Errorf("%s: DEL; use UNLINK", n)
		}
		if strings.Contains(src, "math.exp") {
			t.Errorf("%s: math.exp; the detection model is geo's", n)
		}
		if strings.Count(src, "redis.error_reply(") != len(errReply.FindAllString(src, -1)) {
			t.Errorf("%s: an error reply that is not a literal", n)
		}
		for _, m := range errReply.FindAllStringSubmatch(src, -1) {
			code, detail, _ := strings.Cut(m[1], " ")
			if _, ok := scriptErrors[code]; !ok || detail == "" {
				t.Errorf("%s: error reply %q: want a code of scriptErrors, a space and a detail", n, m[1])
			}
			if !strings.Contains(header(src), code) {
				t.Errorf("%s: error code %s not named in the header", n, code)
			}
		}
	}
}

// TestLoadScripts: LoadScripts loads every embedded script.
func TestLoadScripts(t *testing.T) {
	s, rdb := newStore(t)
	ctx := context.Background()
	if err := s.LoadScripts(ctx); err != nil {
		t.Fatalf("LoadScripts: %v", err)
	}
	for n, sc := range scripts {
		if ok, err := rdb.ScriptExists(ctx, sc.Hash()).Result(); err != nil || !ok[0] {
			t.Errorf("script %s not loaded: %v %v", n, ok, err)
		}
	}
}

// header returns the comment lines a script starts with.
func header(src string) string {
	var b strings.Builder
	for _, l := range strings.Split(src, "\n") {
		if !strings.HasPrefix(l, "--") && !strings.HasPrefix(l, "#!") {
			break
		}
		b.WriteString(l + "\n")
	}
	return b.String()
}
