package store

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/mountain-sar/sar/internal/sar"
)

// reply reads a script's reply with index and type checks instead of
// type assertions: a reply of the wrong shape (a script and its caller
// out of step) becomes a KindInternal error saying which script and which
// element, never a panic. The first problem is kept; later reads return
// zero values.
//
// Lua values arrive as: a number as int64 (truncated), a string as string,
// false or nil as nil, a table as []any.
type reply struct {
	script string
	v      []any
	err    error
}

// newReply checks that v is an array of at least minLen elements.
func newReply(script string, v any, minLen int) *reply {
	r := &reply{script: script}
	a, ok := v.([]any)
	switch {
	case !ok:
		r.failf("got %s, want an array", describe(v))
	case len(a) < minLen:
		r.failf("%d elements, want at least %d", len(a), minLen)
	}
	r.v = a
	return r
}

// replyError makes the error of a reply of the wrong shape.
func replyError(script, format string, args ...any) error {
	return sar.Wrap(sar.KindInternal, errors.New("store: "+script+" script reply: "+fmt.Sprintf(format, args...)),
		"storage returned an unexpected reply")
}

func (r *reply) failf(format string, args ...any) {
	if r.err == nil {
		r.err = replyError(r.script, format, args...)
	}
}

// len returns the number of elements.
func (r *reply) len() int { return len(r.v) }

func (r *reply) at(i int) (any, bool) {
	if r.err != nil {
		return nil, false
	}
	if i < 0 || i >= len(r.v) {
		r.failf("no element %d (%d elements)", i, len(r.v))
		return nil, false
	}
	return r.v[i], true
}

// str reads element i, a string.
func (r *reply) str(i int) string {
	s, _ := r.optStr(i, false)
	return s
}

// optStr reads element i, a string or (with nilOK) nil; ok is false for
// nil.
func (r *reply) optStr(i int, nilOK bool) (s string, ok bool) {
	v, found := r.at(i)
	if !found {
		return "", false
	}
	switch v := v.(type) {
	case string:
		return v, true
	case nil:
		if nilOK {
			return "", false
		}
	}
	r.failf("element %d is %s, want a string", i, describe(v))
	return "", false
}

// int reads element i, an integer (a Lua number).
func (r *reply) int(i int) int64 {
	v, found := r.at(i)
	if !found {
		return 0
	}
	n, ok := v.(int64)
	if !ok {
		r.failf("element %d is %s, want an integer", i, describe(v))
	}
	return n
}

// flag reads element i, an integer 0 or 1.
func (r *reply) flag(i int) bool {
	n := r.int(i)
	if n != 0 && n != 1 {
		r.failf("element %d is %d, want 0 or 1", i, n)
	}
	return n == 1
}

// decimal reads element i, a string holding a decimal integer (Lua sends
// numbers beyond 2^53 and versions as strings).
func (r *reply) decimal(i int) int64 {
	s := r.str(i)
	if r.err != nil {
		return 0
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		r.failf("element %d is %q, want a decimal integer", i, s)
	}
	return n
}

// float reads element i, a string holding a number (Redis sends floats as
// strings).
func (r *reply) float(i int) float64 {
	s := r.str(i)
	if r.err != nil {
		return 0
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		r.failf("element %d is %q, want a number", i, s)
	}
	return f
}

// udecimal is decimal for an unsigned integer.
func (r *reply) udecimal(i int) uint64 {
	s := r.str(i)
	if r.err != nil {
		return 0
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		r.failf("element %d is %q, want a decimal integer", i, s)
	}
	return n
}

// word reads element i, a string that must be one of words.
func (r *reply) word(i int, words ...string) string {
	s := r.str(i)
	if r.err != nil {
		return ""
	}
	for _, w := range words {
		if s == w {
			return s
		}
	}
	r.failf("element %d is %q, want one of %q", i, s, words)
	return ""
}

// slice returns elements from..to-1 (for decodeMeta).
func (r *reply) slice(from, to int) []any {
	if r.err != nil {
		return make([]any, to-from)
	}
	if from < 0 || to > len(r.v) || from > to {
		r.failf("no elements %d..%d (%d elements)", from, to-1, len(r.v))
		return make([]any, to-from)
	}
	for i := from; i < to; i++ {
		if _, ok := r.optStr(i, true); !ok && r.err != nil {
			return make([]any, to-from)
		}
	}
	return r.v[from:to]
}

// intReply checks a reply that is a single integer.
func intReply(script string, v any) (int64, error) {
	n, ok := v.(int64)
	if !ok {
		return 0, replyError(script, "got %s, want an integer", describe(v))
	}
	return n, nil
}

func describe(v any) string {
	switch v := v.(type) {
	case nil:
		return "nil"
	case string:
		if len(v) > 40 {
			v = v[:40] + "..."
		}
		return fmt.Sprintf("string %q", v)
	case int64:
		return fmt.Sprintf("integer %d", v)
	case []any:
		return fmt.Sprintf("an array of %d", len(v))
	}
	return fmt.Sprintf("%T", v)
}
