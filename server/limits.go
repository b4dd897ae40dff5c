package server

import (
	"context"
	"net"
	"sync"

	"golang.org/x/time/rate"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/auth"
)

// keyedLimiters hands out one token bucket per key (a credential, a client
// address). The map is bounded: past maxKeys it starts afresh rather than
// grow without end, which at worst gives every key a full bucket again.
type keyedLimiters struct {
	mu    sync.Mutex
	m     map[string]*rate.Limiter
	limit rate.Limit
	burst int
}

const maxLimiterKeys = 100_000

func newKeyedLimiters(perSecond float64, burst int) *keyedLimiters {
	return &keyedLimiters{m: map[string]*rate.Limiter{}, limit: rate.Limit(perSecond), burst: burst}
}

func (k *keyedLimiters) get(key string) *rate.Limiter {
	k.mu.Lock()
	defer k.mu.Unlock()
	l, ok := k.m[key]
	if !ok {
		if len(k.m) >= maxLimiterKeys {
			clear(k.m)
		}
		l = rate.NewLimiter(k.limit, k.burst)
		k.m[key] = l
	}
	return l
}

func hostOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// Per client address there are two budgets, each of AddrRateLimit and
// AddrRateBurst: one for calls refused for their credential (a guessing
// client, a scanner without a token), one for share-link calls (so that a
// leaked link cannot flood an incident from one place). They are apart so
// that guessing from an address never throttles a real lost person's page
// behind the same address (a carrier's NAT). Operators and rescuers are
// limited per credential only: a command post behind one address is not
// throttled.
//
// refusedSpend and linkSpend spend one request of an address's budget and
// report whether there was budget for it.
func (s *Server) refusedSpend(addr string) bool {
	return addr == "" || s.addrs.get(addr).Allow()
}

func (s *Server) linkSpend(addr string) bool {
	return addr == "" || s.linkAddrs.get(addr).Allow()
}

// linkTraffic reports whether a principal's calls count against its
// address: callers (share links).
func linkTraffic(p *sarv1.Principal) bool { return p.GetRole() == sarv1.Role_ROLE_CALLER }

// limiter is the per-credential bucket of the call's principal (nil
// before authentication): share links get the smaller link budget.
func (s *Server) limiter(ctx context.Context) *rate.Limiter {
	p := auth.FromContext(ctx)
	if p == nil {
		return nil
	}
	if linkTraffic(p) {
		return s.links.get(p.GetCredentialId())
	}
	return s.creds.get(p.GetCredentialId())
}
