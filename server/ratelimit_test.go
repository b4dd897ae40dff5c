package server_test

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/app"
)

// TestRateLimitPerCredential: a credential that calls too fast gets
// RESOURCE_EXHAUSTED, and another credential is not affected.
func TestRateLimitPerCredential(t *testing.T) {
	e := startEnv(t, func(c *app.Config) { c.RateLimit, c.RateBurst = 5, 10 })
	// The admin's limiter is spent here: each call of the helpers is one.
	op := e.operator("north")
	limited := 0
	for i := 0; i < 40; i++ {
		_, err := e.auth.WhoAmI(e.as(op), &sarv1.WhoAmIRequest{})
		if status.Code(err) == codes.ResourceExhausted {
			limited++
		} else if err != nil {
			t.Fatalf("WhoAmI: %v", err)
		}
	}
	if limited == 0 {
		t.Fatalf("40 calls at once with a burst of 10: none limited")
	}
	if limited > 31 {
		t.Errorf("%d of 40 calls limited, want the burst of 10 to pass", limited)
	}
	other := e.operator("south")
	if _, err := e.auth.WhoAmI(e.as(other), &sarv1.WhoAmIRequest{}); err != nil {
		t.Errorf("another credential's first call = %v, want it unaffected", err)
	}
}
