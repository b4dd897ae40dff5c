package app

import (
	"context"
	"fmt"
	"log/slog"
	"net"
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
	if _, has := u.User.Password(); u.User != nil && !has && u.User.Username() != "" {
		u.User = url.User("xxxxx") // a user alone is a NATS token
	}
	return u.Redacted()
}

// redisLogger routes go-redis's own messages (dial failures while Redis
// restarts) into the structured log.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, "redis client", "msg", fmt.Sprintf(format, v...))
}

// checkPublicURL refuses a public base URL that cannot start a link: it
// must be absolute http(s), with a host and no query or fragment.
func checkPublicURL(s string) error {
	if s == "" {
		return nil
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return fmt.Errorf("--public-url %q: %w", s, err)
	case u.Scheme != "https" && u.Scheme != "http":
		return fmt.Errorf("--public-url %q: must start with https:// (or http:// for a test on this machine)", s)
	case u.Host == "":
		return fmt.Errorf("--public-url %q: no host", s)
	case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		return fmt.Errorf("--public-url %q: only scheme, host, port and path are allowed", s)
	}
	return nil
}

// loopbackHost reports whether a host name is this machine.
func loopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// minOpenFiles is the open-file limit below which sard warns at start:
// every device holds a connection (a file) while it streams, and Redis,
// NATS and the listeners need some more.
const minOpenFiles = 8192

// warnOpenFileLimit warns when the open-file limit would refuse devices
// early. Go has already raised the soft limit to the hard one; what is
// left to raise is the hard limit (systemd's LimitNOFILE, ulimit -Hn,
// the container's nofile).
func warnOpenFileLimit(log *slog.Logger, n uint64, known bool) {
	if known && n < minOpenFiles {
		log.Warn("the open-file limit is low: each connected device holds one open file, so connections beyond it are refused; raise the hard limit (systemd LimitNOFILE, ulimit -Hn)",
			"open_files_limit", n, "recommended_at_least", minOpenFiles)
	}
}
