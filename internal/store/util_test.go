package store

import (
	"testing"

	"github.com/mountain-sar/sar/internal/sar"
)

// TestParseHelpersFailLoudly: a stored number that does not parse or does
// not fit is an internal error, never a capped or zero value; absent is 0.
func TestParseHelpersFailLoudly(t *testing.T) {
	for _, s := range []string{"9223372036854775808", "18446744073709551616", "1.5", "x", " 1"} {
		if n, err := parseInt(s); sar.KindOf(err) != sar.KindInternal {
			t.Errorf("parseInt(%q) = %d, %v; want an internal error", s, n, err)
		}
	}
	for _, s := range []string{"18446744073709551616", "-1", "x"} {
		if n, err := parseUint(s); sar.KindOf(err) != sar.KindInternal {
			t.Errorf("parseUint(%q) = %d, %v; want an internal error", s, n, err)
		}
	}
	if f, err := parseFloat("0.5x"); sar.KindOf(err) != sar.KindInternal {
		t.Errorf("parseFloat(0.5x) = %v, %v; want an internal error", f, err)
	}
	var f fields
	if n := f.int(nil); n != 0 || f.err != nil {
		t.Errorf("absent value = %d, %v; want 0", n, f.err)
	}
	if n, err := parseUint("9007199254740991"); n != 1<<53-1 || err != nil {
		t.Errorf("parseUint(2^53-1) = %d, %v", n, err)
	}
}
