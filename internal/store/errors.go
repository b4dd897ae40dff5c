package store

import (
	"context"
	"errors"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/mountain-sar/sar/internal/sar"
)

// Error codes of the scripts. A script fails with
// redis.error_reply('<CODE> <detail>'); Redis sends the text as the error
// reply and go-redis returns it as a redis.Error whose message is that
// text, so the code is its first word, matched exactly. (The detail is
// not optional: Redis 7 prefixes "ERR " to an error reply without a
// space.)
const (
	codeNotFound     = "SAR_NOTFOUND"
	codeClosed       = "SAR_CLOSED"
	codeNotJoined    = "SAR_NOTJOINED"
	codeConflict     = "SAR_CONFLICT"
	codeExists       = "SAR_EXISTS"
	codeDeviceTaken  = "SAR_DEVICE_TAKEN"
	codePartsChanged = "SAR_PARTS_CHANGED"
	codeStageLost    = "SAR_STAGE_LOST"
	codeSegConflict  = "SAR_SEG_CONFLICT"
	codeSkipTooFar   = "SAR_SKIP_TOO_FAR"
)

// scriptErrors is the one table from a script's error code to the domain
// error; what names the object of the call. The compare-and-set codes
// (SAR_CONFLICT, SAR_PARTS_CHANGED) are handled by their callers first;
// here they are the error left when a caller gave up retrying.
var scriptErrors = map[string]func(what string) error{
	codeNotFound: func(what string) error { return sar.NotFound(what) },
	codeClosed: func(what string) error {
		e := sar.Errorf(sar.KindFailedPrecondition, "%s is closed", what)
		if what == "incident" {
			e.Reason = sar.IncidentClosed
		}
		return e
	},
	codeNotJoined: func(string) error {
		return sar.Errorf(sar.KindFailedPrecondition, "device has not joined the incident (call JoinIncident)")
	},
	codeExists: func(what string) error { return sar.Errorf(sar.KindAlreadyExists, "%s already exists", what) },
	codeDeviceTaken: func(string) error {
		return &sar.Error{Kind: sar.KindFailedPrecondition, Err: sar.ErrDeviceTaken,
			Message: "device is bound to another participant of this incident"}
	},
	codeConflict: func(what string) error { return sar.Errorf(sar.KindAborted, "%s changed concurrently; retry", what) },
	codePartsChanged: func(what string) error {
		return sar.Errorf(sar.KindAborted, "%s is being changed concurrently; retry", what)
	},
	codeSegConflict: func(string) error { return sar.ErrSegmentsConflict },
	codeSkipTooFar: func(string) error {
		return sar.Invalid("invalid batch", sar.Field("batch.skipped_through", "TOO_FAR",
			"skipped_through may be at most %d past the device's acked_through", sar.MaxSkip))
	},
	codeStageLost: func(what string) error { return sar.Errorf(sar.KindUnavailable, "%s write took too long; retry", what) },
}

// scriptCode returns the error code of a script's error reply, "" if err
// is not one: the first word of a Redis error reply when it starts with
// "SAR_".
func scriptCode(err error) string {
	var re redis.Error
	if !errors.As(err, &re) {
		return ""
	}
	code, _, _ := strings.Cut(re.Error(), " ")
	if !strings.HasPrefix(code, "SAR_") {
		return ""
	}
	return code
}

// fail turns a Redis error into a domain error: script error codes become
// their kinds through scriptErrors (an unknown code is a bug: Internal),
// everything else (connection refused, timeouts, cluster down) is
// Unavailable, and the cause is kept for the logs only.
func fail(err error, what string) error {
	if err == nil {
		return nil
	}
	var se *sar.Error
	if errors.As(err, &se) {
		return err
	}
	if code := scriptCode(err); code != "" {
		if f, ok := scriptErrors[code]; ok {
			return f(what)
		}
		return sar.Wrap(sar.KindInternal, err, "storage script failed with an unknown error code")
	}
	msg := err.Error()
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return sar.Wrap(sar.KindUnavailable, err, "storage did not answer in time")
	case strings.HasPrefix(msg, "ERR SAR_"), strings.HasPrefix(msg, "ERR ") && strings.Contains(msg, "script"):
		return sar.Wrap(sar.KindInternal, err, "storage script failed") // a bug: retrying will not help
	}
	return sar.Wrap(sar.KindUnavailable, err, "storage unavailable")
}
