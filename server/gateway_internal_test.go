package server

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/mountain-sar/sar/dispatch"
	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/auth"
	"github.com/mountain-sar/sar/internal/core"
	"github.com/mountain-sar/sar/internal/store"
	"github.com/mountain-sar/sar/internal/testenv"
)

// countingListener counts the connections the gRPC server accepts.
type countingListener struct {
	net.Listener
	n atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// TestJSONDoorIsInProcess: JSON calls, unary and the watch stream, reach the
// services without a single connection to the gRPC port, and pass through
// the same chain as gRPC calls: authentication, the credential's rate
// limit (one limiter for both doors), metrics, logging with the HTTP
// client as peer, and the message size limit.
func TestJSONDoorIsInProcess(t *testing.T) {
	r := testenv.StartRedis(t)
	n := testenv.StartNATS(t)
	opt, _ := redis.ParseURL(r.URL())
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	nc, err := nats.Connect(n.URL())
	if err != nil {
		t.Fatalf("nats.Connect: %v", err)
	}
	defer nc.Close()
	bus, err := dispatch.New(nc)
	if err != nil {
		t.Fatalf("dispatch.New: %v", err)
	}
	logs := &lockedBuffer{}
	log := slog.New(slog.NewTextHandler(io.MultiWriter(logs), &slog.HandlerOptions{Level: slog.LevelDebug}))
	svc := core.New(core.DefaultConfig(), store.New(rdb), bus, log, nil)
	ctx := context.Background()
	admin, _, err := svc.IssueCredential(ctx, &sarv1.Principal{Role: sarv1.Role_ROLE_ADMIN}, time.Hour)
	if err != nil {
		t.Fatalf("IssueCredential: %v", err)
	}
	op, _, err := svc.IssueCredential(ctx, &sarv1.Principal{Role: sarv1.Role_ROLE_OPERATOR, Jurisdiction: "north"}, time.Hour)
	if err != nil {
		t.Fatalf("IssueCredential: %v", err)
	}

	const burst = 5
	s := New(svc, Options{Log: log, RateLimit: 0.001, RateBurst: burst, MaxMsgBytes: 4096})
	gl, _ := net.Listen("tcp", "127.0.0.1:0")
	counted := &countingListener{Listener: gl}
	hl, _ := net.Listen("tcp", "127.0.0.1:0")
	served := make(chan error, 1)
	go func() { served <- s.Serve(counted, hl) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
		<-served
	}()
	base := "http://" + hl.Addr().String()
	call := func(method, path, token, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	// Unary calls and a watch stream over JSON.
	code, body := call("POST", "/v1/incidents", admin, `{"title":"Overdue hiker","jurisdiction":"north"}`)
	if code != 200 {
		t.Fatalf("create incident over JSON = %d %s", code, body)
	}
	code, body = call("GET", "/v1/whoami", admin, "")
	if code != 200 || !strings.Contains(body, "ROLE_ADMIN") {
		t.Fatalf("whoami over JSON = %d %s", code, body)
	}
	code, body = call("GET", "/v1/incidents?pageSize=10", admin, "")
	if code != 200 {
		t.Fatalf("list incidents over JSON = %d %s", code, body)
	}
	incID := between(body, `"id":"`, `"`)
	wctx, wcancel := context.WithCancel(ctx)
	req, _ := http.NewRequestWithContext(wctx, "GET", base+"/v1/incidents/"+incID+"/watch", nil)
	req.Header.Set("Authorization", "Bearer "+admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	line := make([]byte, 64)
	k, _ := io.ReadAtLeast(resp.Body, line, 12)
	wcancel()
	resp.Body.Close()
	if !strings.Contains(string(line[:k]), `"snapshot"`) {
		t.Errorf("watch over JSON began %q, want the snapshot", line[:k])
	}
	if got := counted.n.Load(); got != 0 {
		t.Fatalf("JSON calls opened %d connections to the gRPC port, want none", got)
	}

	// Authentication: the gateway guard lets a well-formed token pass; the
	// chain refuses an unknown one, as over gRPC.
	unknown, _, _ := auth.NewToken()
	if code, body := call("GET", "/v1/whoami", unknown, ""); code != 401 {
		t.Errorf("unknown token over JSON = %d %s, want 401", code, body)
	}

	// One limiter per credential behind both doors: gRPC spends the burst,
	// the JSON call is refused.
	conn, err := grpc.NewClient(gl.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	defer conn.Close()
	octx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+op)
	for i := 0; i < burst; i++ {
		if _, err := sarv1.NewAuthServiceClient(conn).WhoAmI(octx, &sarv1.WhoAmIRequest{}); err != nil {
			t.Fatalf("gRPC WhoAmI %d: %v", i, err)
		}
	}
	if code, body := call("GET", "/v1/whoami", op, ""); code != http.StatusTooManyRequests || !strings.Contains(body, "rate limit") {
		t.Errorf("JSON call after the burst spent over gRPC = %d %s, want 429 rate limit", code, body)
	}
	if _, err := sarv1.NewAuthServiceClient(conn).WhoAmI(octx, &sarv1.WhoAmIRequest{}); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("gRPC call after = %v, want RESOURCE_EXHAUSTED", err)
	}
	if got := counted.n.Load(); got != 1 {
		t.Errorf("gRPC port accepted %d connections, want 1 (the gRPC client's): the counter is not counting", got)
	}

	// The size limit holds for what the body cap does not see: a query.
	if code, body := call("GET", "/v1/incidents?pageToken="+strings.Repeat("x", 5000), admin, ""); code != http.StatusTooManyRequests || !strings.Contains(body, "larger than max") {
		t.Errorf("5000-byte query with a 4096-byte limit = %d %s, want 429 message too large", code, body)
	}

	// Metrics and logs record the JSON calls as gRPC calls, the HTTP client as peer.
	code, body = call("GET", "/metrics", admin, "")
	if code != 200 || !strings.Contains(body, `grpc_server_handled_total{grpc_code="OK",grpc_method="WhoAmI",grpc_service="sar.v1.AuthService",grpc_type="unary"} 6`) {
		t.Errorf("metrics do not count the JSON and gRPC WhoAmI calls together (want 6 OK):\n%s", grep(body, "WhoAmI"))
	}
	if !strings.Contains(logs.String(), "grpc.method=WhoAmI") || !strings.Contains(logs.String(), "peer.address=127.0.0.1 ") {
		t.Errorf("logs do not record the JSON call with the HTTP client as peer:\n%s", logs.String())
	}
}

func between(s, from, to string) string {
	_, after, _ := strings.Cut(s, from)
	v, _, _ := strings.Cut(after, to)
	return v
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
