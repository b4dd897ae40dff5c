package server_test

import (
	"fmt"
	"net/http"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/app"
)

// TestTrustedProxies: the per-address budget of refused credentials sees
// the client a trusted proxy names in X-Forwarded-For, and only then; a
// client cannot choose its address by writing the header itself.
func TestTrustedProxies(t *testing.T) {
	const burst = 3
	guess := "sar_" + fmt.Sprintf("%043d", 0)
	// httpCodes sends n refused JSON calls with the given X-Forwarded-For
	// lines and returns their statuses.
	httpCodes := func(e *env, n int, xff ...string) (out []int) {
		t.Helper()
		for range n {
			req, _ := http.NewRequest(http.MethodGet, "http://"+e.app.HTTPAddr()+"/v1/whoami", nil)
			req.Header.Set("Authorization", "Bearer "+guess)
			for _, v := range xff {
				req.Header.Add("X-Forwarded-For", v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("GET /v1/whoami: %v", err)
			}
			resp.Body.Close()
			out = append(out, resp.StatusCode)
		}
		return out
	}
	grpcCodes := func(e *env, n int, xff string) (out []codes.Code) {
		t.Helper()
		for range n {
			ctx := e.as(guess)
			if xff != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, "x-forwarded-for", xff)
			}
			_, err := e.auth.WhoAmI(ctx, &sarv1.WhoAmIRequest{})
			out = append(out, status.Code(err))
		}
		return out
	}
	limits := func(c *app.Config) { c.AddrRateLimit, c.AddrRateBurst = 0.001, burst }

	t.Run("untrusted", func(t *testing.T) {
		e := startEnv(t, limits)
		// A client that writes a new address into each request is still
		// one address.
		var got []int
		for i := range burst + 1 {
			got = append(got, httpCodes(e, 1, fmt.Sprintf("198.51.100.%d", i))...)
		}
		if fmt.Sprint(got) != "[401 401 401 429]" {
			t.Errorf("spoofed X-Forwarded-For from an untrusted peer: %v, want [401 401 401 429] (one budget)", got)
		}
		if c := grpcCodes(e, 1, "198.51.100.99"); c[0] != codes.ResourceExhausted {
			t.Errorf("gRPC with spoofed x-forwarded-for: %v, want ResourceExhausted (the same address)", c)
		}
	})

	t.Run("trusted", func(t *testing.T) {
		e := startEnv(t, limits, func(c *app.Config) { c.TrustedProxies = []string{"127.0.0.0/8", "10.0.0.0/8"} })
		// Behind two proxies (10.1.2.3 and this one): the client is
		// 203.0.113.7, whatever it wrote before it.
		a := httpCodes(e, burst+1, "6.6.6.6, 203.0.113.7, 10.1.2.3")
		if fmt.Sprint(a) != "[401 401 401 429]" {
			t.Errorf("client A through trusted proxies: %v, want [401 401 401 429]", a)
		}
		// The same client writing other addresses on the left: the same budget.
		if c := httpCodes(e, 1, "1.1.1.1, 203.0.113.7", "10.1.2.3"); c[0] != http.StatusTooManyRequests {
			t.Errorf("client A with a forged prefix, header in two lines: %v, want 429", c)
		}
		// Another client behind the same proxies has its own budget.
		if b := httpCodes(e, 1, "203.0.113.8"); b[0] != http.StatusUnauthorized {
			t.Errorf("client B: %v, want 401 (its own budget)", b)
		}
		// gRPC through a trusted proxy (the test client is on 127.0.0.1).
		g := grpcCodes(e, burst+1, "203.0.113.9")
		if fmt.Sprint(g) != "[Unauthenticated Unauthenticated Unauthenticated ResourceExhausted]" {
			t.Errorf("gRPC client C through a trusted proxy: %v", g)
		}
		if g := grpcCodes(e, 1, "203.0.113.10"); g[0] != codes.Unauthenticated {
			t.Errorf("gRPC client D: %v, want Unauthenticated (its own budget)", g)
		}
	})
}
