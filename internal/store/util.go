package store

import (
	"fmt"
	"sort"
	"strconv"

	"github.com/mountain-sar/sar/internal/sar"
)

// parseInt reads a stored decimal integer; "" (absent) is 0. A value that
// is not one, or does not fit, is corrupt storage and an error: never a
// capped or zeroed number that would pass for a real one.
func parseInt(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, sar.Wrap(sar.KindInternal, fmt.Errorf("stored integer %q: %w", s, err), "corrupt record in storage")
	}
	return n, nil
}

// parseUint is parseInt for an unsigned integer (a sequence).
func parseUint(s string) (uint64, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, sar.Wrap(sar.KindInternal, fmt.Errorf("stored unsigned integer %q: %w", s, err), "corrupt record in storage")
	}
	return n, nil
}

// parseFloat reads a stored float; "" (absent) is 0.
func parseFloat(s string) (float64, error) {
	if s == "" {
		return 0, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, sar.Wrap(sar.KindInternal, fmt.Errorf("stored number %q: %w", s, err), "corrupt record in storage")
	}
	return f, nil
}

// fields reads several stored values of one record, keeping the first
// error: pass the values, then check err.
type fields struct{ err error }

func (f *fields) int(v any) int64 {
	s, _ := v.(string)
	n, err := parseInt(s)
	if f.err == nil {
		f.err = err
	}
	return n
}

func (f *fields) float(v any) float64 {
	s, _ := v.(string)
	n, err := parseFloat(s)
	if f.err == nil {
		f.err = err
	}
	return n
}

func sortDesc(ids []string) { sort.Sort(sort.Reverse(sort.StringSlice(ids))) }
