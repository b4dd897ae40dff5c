package app

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mountain-sar/sar/internal/sar"
)

// Check refuses a configuration that cannot work, before anything starts,
// with one line per bad value naming its flag (as cmd/sard spells it).
func (c Config) Check() error {
	var errs []error
	bad := func(flag string, v any, why string) {
		errs = append(errs, fmt.Errorf("--%s %v: %s", flag, v, why))
	}
	addr := func(flag, v string, required bool) {
		if v == "" && !required {
			return
		}
		host, port, err := net.SplitHostPort(v)
		if err != nil {
			bad(flag, strconv.Quote(v), "want host:port, e.g. 127.0.0.1:8080 or :8080")
			return
		}
		if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			bad(flag, strconv.Quote(v), "the port must be a number from 0 to 65535")
		}
		if strings.ContainsAny(host, " /") {
			bad(flag, strconv.Quote(v), "the host is not a host name or an IP address")
		}
	}
	addr("grpc-addr", c.GRPCAddr, true)
	addr("http-addr", c.HTTPAddr, true)
	addr("nats-listen", c.NATSListen, false)
	if c.GRPCAddr == c.HTTPAddr && !strings.HasSuffix(c.GRPCAddr, ":0") {
		bad("http-addr", strconv.Quote(c.HTTPAddr), "is also --grpc-addr: they need different ports")
	}
	if c.RedisURL != "" {
		var err error
		if c.RedisCluster {
			_, err = redis.ParseClusterURL(c.RedisURL)
		} else {
			_, err = redis.ParseURL(c.RedisURL)
		}
		if err != nil {
			bad("redis-url", redactURL(c.RedisURL), "not a Redis URL (redis://[:password@]host:port[/db], rediss://... or unix://...): "+redactErr(err, c.RedisURL))
		}
		if u, uerr := url.Parse(c.RedisURL); err == nil && uerr == nil && u.Query().Has("skip_verify") {
			bad("redis-url", redactURL(c.RedisURL), "skip_verify turns off the check of Redis's certificate, so anyone on the path could read and change the positions: give its CA with --redis-ca-file instead")
		}
	}
	if c.NATSURL != "" {
		for _, one := range strings.Split(c.NATSURL, ",") {
			u, err := url.Parse(strings.TrimSpace(one))
			switch {
			case err != nil || u.Host == "":
				bad("nats-url", redactURL(one), "not a NATS URL, e.g. nats://host:4222 (several: comma-separated)")
			case u.Scheme != "nats" && u.Scheme != "tls" && u.Scheme != "ws" && u.Scheme != "wss":
				bad("nats-url", redactURL(one), "the scheme must be nats, tls, ws or wss")
			}
		}
	}
	switch {
	case c.NATSReplicas < 1 || c.NATSReplicas > 5:
		bad("nats-replicas", c.NATSReplicas, "must be from 1 to 5 (JetStream's limit; 3 on a NATS cluster of 3 nodes)")
	case c.NATSReplicas > 1 && c.NATSURL == "":
		bad("nats-replicas", c.NATSReplicas, "the embedded NATS server is one node: replicas need --nats-url of a NATS cluster")
	}
	if c.RedisURL == "" && strings.TrimSpace(c.DataDir) == "" {
		bad("data-dir", strconv.Quote(c.DataDir), "embedded mode keeps its data there: name a directory")
	}
	if c.Resolution < 5 || c.Resolution > 12 {
		bad("resolution", c.Resolution, "must be from 5 to 12")
	}
	if c.TrackMax < 1 || c.TrackMax > 1_000_000 {
		bad("track-max", c.TrackMax, "must be from 1 to 1,000,000")
	}
	if c.Retention < time.Minute {
		bad("retention", c.Retention, "must be at least 1m")
	}
	if math.IsNaN(c.RateLimit) || c.RateLimit <= 0 || math.IsInf(c.RateLimit, 0) {
		bad("rate-limit", c.RateLimit, "must be a number above 0 (requests per second)")
	}
	if c.RateBurst < 1 {
		bad("rate-burst", c.RateBurst, "must be at least 1")
	}
	for _, r := range []struct {
		flag string
		v    float64
	}{{"link-rate-limit", c.LinkRateLimit}, {"addr-rate-limit", c.AddrRateLimit}} {
		if math.IsNaN(r.v) || r.v < 0 || math.IsInf(r.v, 0) {
			bad(r.flag, r.v, "must be a number, 0 or above (0: the default)")
		}
	}
	for _, r := range []struct {
		flag string
		v    int
	}{{"link-rate-burst", c.LinkRateBurst}, {"addr-rate-burst", c.AddrRateBurst}} {
		if r.v < 0 {
			bad(r.flag, r.v, "must be 0 or above (0: the default)")
		}
	}
	if err := checkPublicURL(c.PublicURL); err != nil {
		errs = append(errs, err)
	}
	positive := func(flag string, d time.Duration) {
		if d <= 0 {
			bad(flag, d, "must be above 0")
		}
	}
	positive("shutdown-timeout", c.ShutdownTimeout)
	positive("escalation-interval", c.EscalationInterval)
	positive("min-answer-within", c.MinAnswerWithin)
	if c.RedisWaitReplicas < 0 || c.RedisWaitReplicas > 16 {
		bad("redis-wait-replicas", c.RedisWaitReplicas, "must be 0 (do not wait) to 16")
	}
	if c.RedisWaitReplicas > 0 {
		if c.RedisURL == "" {
			bad("redis-wait-replicas", c.RedisWaitReplicas, "needs --redis-url: the embedded Redis has no replicas")
		}
		if c.RedisWaitTimeout <= 0 || c.RedisWaitTimeout > 2*time.Second {
			bad("redis-wait-timeout", c.RedisWaitTimeout, "must be above 0 and at most 2s (a device waits for its ack meanwhile)")
		}
	}
	if c.RelayInterval < 0 || c.WatchRecheck < 0 || c.WatchGrace < 0 || c.CredentialCache < 0 {
		errs = append(errs, errors.New("relay interval, watch re-check and credential cache must not be negative"))
	}
	if c.EmbeddedJurisdiction != "" && !sar.ValidSlug(c.EmbeddedJurisdiction) {
		errs = append(errs, fmt.Errorf("embedded jurisdiction %q: want lowercase letters, digits, '-' and '_'", c.EmbeddedJurisdiction))
	}
	if len(errs) > 0 {
		return fmt.Errorf("configuration refused: %w", errors.Join(errs...))
	}
	return nil
}

// redactErr is err's text without the URL's password, should the parser
// have quoted it.
func redactErr(err error, rawURL string) string {
	msg := err.Error()
	if u, perr := url.Parse(rawURL); perr == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok && pw != "" {
			msg = strings.ReplaceAll(msg, pw, "xxxxx")
		}
	}
	return msg
}
