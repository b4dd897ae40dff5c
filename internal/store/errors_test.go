package store

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/mountain-sar/sar/internal/sar"
)

// redisError is an error reply as go-redis returns it (a redis.Error).
type redisError string

func (e redisError) Error() string { return string(e) }
func (redisError) RedisError()     {}

// TestFailCodes: a script's error code is the first word of the error
// reply, matched exactly against one table; anything else that merely
// contains a code is not mistaken for it.
func TestFailCodes(t *testing.T) {
	for _, tc := range []struct {
		err  error
		kind sar.Kind
	}{
		{redisError("SAR_NOTFOUND no such incident"), sar.KindNotFound},
		{redisError("SAR_CLOSED incident is closed"), sar.KindFailedPrecondition},
		{redisError("SAR_NOTJOINED device has not joined"), sar.KindFailedPrecondition},
		{redisError("SAR_EXISTS incident exists"), sar.KindAlreadyExists},
		{redisError("SAR_CONFLICT changed"), sar.KindAborted},
		{redisError("SAR_PARTS_CHANGED x"), sar.KindAborted},
		{redisError("SAR_STAGE_LOST x"), sar.KindUnavailable},
		{fmt.Errorf("wrapped: %w", redisError("SAR_NOTFOUND no such incident")), sar.KindNotFound},
		// Not codes: an unknown code, a code as a prefix of a longer word,
		// the code of a reply without detail (Redis prefixes ERR), a
		// message that only contains a code, a non-reply error.
		{redisError("SAR_NOTFOUNDX no such thing"), sar.KindInternal},
		{redisError("SAR_BOGUS x"), sar.KindInternal},
		{redisError("ERR SAR_NOTFOUND"), sar.KindInternal},
		{redisError("ERR user_script:1: SAR_NOTFOUND script: 1234"), sar.KindInternal},
		{redisError("LOADING SAR_NOTFOUND is loading"), sar.KindUnavailable},
		{errors.New("dial tcp: SAR_NOTFOUND"), sar.KindUnavailable},
	} {
		got := fail(tc.err, "incident")
		if sar.KindOf(got) != tc.kind {
			t.Errorf("fail(%q) = %v (%v), want %v", tc.err, got, sar.KindOf(got), tc.kind)
		}
	}
	if err := fail(redisError("SAR_DEVICE_TAKEN device is bound"), "incident"); !errors.Is(err, sar.ErrDeviceTaken) ||
		sar.KindOf(err) != sar.KindFailedPrecondition {
		t.Errorf("fail(SAR_DEVICE_TAKEN) = %v, want FailedPrecondition wrapping sar.ErrDeviceTaken", err)
	}
	if got := fail(redisError("SAR_NOTFOUND x"), "search grid"); !strings.Contains(got.Error(), "search grid not found") {
		t.Errorf("fail(SAR_NOTFOUND, search grid) = %v", got)
	}
	for _, tc := range []struct {
		err  error
		code string
	}{
		{redisError("SAR_CONFLICT grid changed"), codeConflict},
		{redisError("SAR_CONFLICTING x"), "SAR_CONFLICTING"},
		{redisError("ERR SAR_CONFLICT"), ""},
		{errors.New("SAR_CONFLICT x"), ""},
		{nil, ""},
	} {
		if got := scriptCode(tc.err); got != tc.code {
			t.Errorf("scriptCode(%v) = %q, want %q", tc.err, got, tc.code)
		}
	}
}
