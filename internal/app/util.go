package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"
)

func tsOf(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }

// redactURL hides a password in a URL for the logs.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable url)"
	}
	return u.Redacted()
}

// redisLogger routes go-redis's own messages (dial failures while Redis
// restarts) into the structured log.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, "redis client", "msg", fmt.Sprintf(format, v...))
}
