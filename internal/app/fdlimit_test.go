package app

import (
	"bytes"
	"log/slog"
	"runtime"
	"strings"
	"testing"
)

func TestWarnOpenFileLimit(t *testing.T) {
	for _, c := range []struct {
		limit uint64
		known bool
		warn  bool
	}{{1024, true, true}, {minOpenFiles, true, false}, {1 << 20, true, false}, {0, false, false}} {
		var b bytes.Buffer
		warnOpenFileLimit(slog.New(slog.NewTextHandler(&b, nil)), c.limit, c.known)
		if got := strings.Contains(b.String(), "open_files_limit"); got != c.warn {
			t.Errorf("warnOpenFileLimit(%d, %v) logged %q; want a warning: %v", c.limit, c.known, b.String(), c.warn)
		}
	}
	if n, ok := openFileLimit(); runtime.GOOS == "linux" && (!ok || n == 0) {
		t.Errorf("openFileLimit() = %d, %v, want this process's limit", n, ok)
	}
}
