package app

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestEmbeddedStart is the README's run command: no Redis or NATS
// configured. The server starts a redis-server child and an in-process
// NATS, says so in its log, makes working operator and admin credentials,
// keeps its data across a restart, and stops the child on Close.
func TestEmbeddedStart(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redis-server is not on the PATH: run `make test`, which installs it")
	}
	dir := t.TempDir()
	cfg := Defaults()
	cfg.GRPCAddr, cfg.HTTPAddr, cfg.DataDir = "127.0.0.1:0", "127.0.0.1:0", dir
	logs := &syncBuffer{}
	a, err := Start(context.Background(), cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	defer a.Close()
	for _, want := range []string{"embedded Redis: started redis-server child process", "embedded NATS: started in-process with JetStream", "sard serving"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
	if a.Embedded.RedisKind != "redis-server" || !a.Embedded.NATSEmbedded || a.Embedded.OperatorToken == "" || a.Embedded.AdminToken == "" {
		t.Fatalf("Embedded = %+v, want redis-server, NATS and both tokens", a.Embedded)
	}
	if _, err := os.Stat(filepath.Join(dir, "redis", "appendonlydir")); err != nil {
		t.Errorf("no append-only data under the data dir: %v", err)
	}
	conn, err := grpc.NewClient(a.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hr, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health = %v, %v; want SERVING without a credential", hr, err)
	}
	opCtx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+a.Embedded.OperatorToken)
	inc, err := sarv1.NewIncidentServiceClient(conn).CreateIncident(opCtx, &sarv1.CreateIncidentRequest{Title: "drill"})
	if err != nil || inc.GetIncident().GetJurisdiction() != "local" {
		t.Fatalf("operator CreateIncident = %v, %v; want an incident in jurisdiction local", inc, err)
	}
	pid := a.Embedded.redisPID()
	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if pid > 0 && syscall.Kill(pid, 0) == nil {
		t.Errorf("redis-server child %d still runs after Close", pid)
	}

	// Same data dir again: the incident survived (append-only file).
	b, err := Start(context.Background(), cfg, slog.New(slog.NewTextHandler(&syncBuffer{}, nil)))
	if err != nil {
		t.Fatalf("second Start: %v", err)
	}
	defer b.Close()
	got, _, err := b.Store.GetIncident(context.Background(), inc.GetIncident().GetId())
	if err != nil || got.GetTitle() != "drill" {
		t.Fatalf("after restart GetIncident = %v, %v; want the drill incident", got, err)
	}
}

// TestHalfEmbeddedRefused: a server given Redis but not NATS (or the other
// way round) must not quietly start a private backend.
func TestHalfEmbeddedRefused(t *testing.T) {
	cfg := Defaults()
	cfg.GRPCAddr, cfg.HTTPAddr, cfg.DataDir = "127.0.0.1:0", "127.0.0.1:0", t.TempDir()
	cfg.RedisURL = "redis://127.0.0.1:1/0"
	if _, err := Start(context.Background(), cfg, slog.New(slog.NewTextHandler(&syncBuffer{}, nil))); err == nil || !strings.Contains(err.Error(), "--nats-url") {
		t.Errorf("Start with only a Redis URL = %v, want a refusal naming --nats-url", err)
	}
}
