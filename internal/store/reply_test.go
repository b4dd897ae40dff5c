package store

import (
	"strings"
	"testing"

	"github.com/mountain-sar/sar/internal/sar"
)

// TestReplyShapes feeds the reply readers replies of the wrong shape: each
// becomes an Internal error naming the script, never a panic.
func TestReplyShapes(t *testing.T) {
	check := func(name, script string, f func() error) {
		t.Helper()
		var err error
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Errorf("%s: panic %v", name, p)
				}
			}()
			err = f()
		}()
		if sar.KindOf(err) != sar.KindInternal || !strings.Contains(err.Error(), "store: "+script+" script reply: ") {
			t.Errorf("%s: %v, want an Internal error about the %s script reply", name, err, script)
		}
	}
	ingest := func(v any) func() error {
		return func() error { _, err := ingestReply(v); return err }
	}
	check("ingest: not an array", "ingest", ingest("1"))
	check("ingest: short", "ingest", ingest([]any{"1", "2"}))
	check("ingest: number as string", "ingest", ingest([]any{"1", "2", "3", int64(0), "", int64(0), int64(0)}))
	check("ingest: flag 2", "ingest", ingest([]any{"1", "2", int64(3), int64(2), "", int64(0), int64(0)}))
	check("ingest: nil last", "ingest", ingest([]any{"1", "2", int64(3), int64(0), nil, int64(0), int64(0)}))
	check("ingest: long", "ingest", ingest([]any{"1", "2", int64(3), int64(0), "", int64(0), int64(0), "x"}))
	check("ingest: sequence not decimal", "ingest", ingest([]any{"1.5", "2", int64(3), int64(0), "", int64(0), int64(0)}))
	join := func(v any) func() error { return func() error { _, err := joinReply(v); return err } }
	check("join: short", "join", join([]any{"p", int64(1), "0", "pb"}))
	check("join: nil pb", "join", join([]any{"p", int64(1), "0", nil, ""}))
	changed := func(v any) func() error { return func() error { _, err := loadChangedReply(v); return err } }
	meta := []any{"", "3", "1", "0.1", "1", "0", "1"}
	check("load changed: not an array", "load changed", changed(int64(1)))
	check("load changed: short meta", "load changed", changed(meta[:5]))
	check("load changed: half a cell", "load changed", changed(append(append([]any{}, meta...), "8928308280fffff", "0.5")))
	check("load changed: integer version", "load changed",
		changed(append(append([]any{}, meta...), "8928308280fffff", "0.5", nil, int64(3))))
	check("load changed: integer in meta", "load changed", changed([]any{"", int64(3), "1", "0.1", "1", "0", "1"}))
	flush := func(v any) func() error { return func() error { _, err := flushReply(v); return err } }
	check("flush: unknown word", "flush grid event", flush([]any{"later"}))
	check("flush: wait without ms", "flush grid event", flush([]any{"wait"}))
	check("flush: wait ms as string", "flush grid event", flush([]any{"wait", "5"}))
	check("flush: due short", "flush grid event", flush([]any{"due", "", "3"}))
	cover := func(v any) func() error { return func() error { _, err := coverReadReply(v); return err } }
	check("cover read: unknown word", "cover read", cover([]any{"maybe"}))
	check("cover read: short meta", "cover read", cover([]any{"ok", "1", "0", "", "", "0", "", "3"}))
	check("cover read: half a fix", "cover read", cover(append([]any{"ok", "1", "0", "", "", "0"}, append(append([]any{}, meta...), "pb")...)))
	check("cover read: checkpoint not decimal", "cover read", cover(append([]any{"ok", "1", "0", "", "", "1.5"}, meta...)))
	check("put incident: string", "put incident", func() error { _, err := intReply("put incident", "2"); return err })

	// Well-formed replies still read.
	if r, err := ingestReply([]any{"1", "18446744073709551615", int64(3), int64(0), "", int64(1), int64(1)}); err != nil ||
		r.AckedThrough != 18446744073709551615 || !r.HasGrid || r.Stored != 3 || !r.Queued {
		t.Errorf("ingestReply = %+v, %v", r, err)
	}
	if g, err := loadChangedReply(append(append([]any{}, meta...), "8928308280fffff", "0.5", nil, "3", "8928308280bffff", nil, "1", "3")); err != nil ||
		len(g.Cells) != 1 || g.Cells[0x8928308280fffff].Version != 3 || g.Meta.Version != 3 {
		t.Errorf("loadChangedReply = %+v, %v", g, err)
	}
	if _, err := loadChangedReply([]any{}); sar.KindOf(err) != sar.KindNotFound {
		t.Errorf("loadChangedReply(empty) = %v, want NotFound", err)
	}
	if e, err := flushReply([]any{"wait", int64(5)}); err != nil || e.WaitMs != 5 {
		t.Errorf("flushReply(wait 5) = %+v, %v", e, err)
	}
}
