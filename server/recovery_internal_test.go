package server

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/mountain-sar/sar/dispatch"
	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/core"
	"github.com/mountain-sar/sar/internal/store"
	"github.com/mountain-sar/sar/internal/testenv"
)

// lockedBuffer collects log output from the server's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// TestRecoveryTurnsPanicIntoInternal registers a handler with a bug: the
// call gets INTERNAL without details, the panic is logged with its stack,
// and the server keeps serving.
func TestRecoveryTurnsPanicIntoInternal(t *testing.T) {
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
	log := slog.New(slog.NewTextHandler(io.MultiWriter(logs), nil))
	svc := core.New(core.DefaultConfig(), store.New(rdb), bus, log, nil)
	token, _, err := svc.IssueCredential(context.Background(), &sarv1.Principal{Role: sarv1.Role_ROLE_ADMIN}, time.Hour)
	if err != nil {
		t.Fatalf("IssueCredential: %v", err)
	}

	s := New(svc, Options{Log: log})
	s.grpc.RegisterService(&grpc.ServiceDesc{
		ServiceName: "test.Buggy", HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{MethodName: "Crash", Handler: func(_ any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
			in := &emptypb.Empty{}
			if err := dec(in); err != nil {
				return nil, err
			}
			h := func(ctx context.Context, req any) (any, error) {
				var m map[string]int
				m["boom"]++ // nil map write: a bug
				return &emptypb.Empty{}, nil
			}
			return ic(ctx, in, &grpc.UnaryServerInfo{FullMethod: "/test.Buggy/Crash"}, h)
		}}},
	}, struct{}{})
	gl, _ := net.Listen("tcp", "127.0.0.1:0")
	hl, _ := net.Listen("tcp", "127.0.0.1:0")
	served := make(chan error, 1)
	go func() { served <- s.Serve(gl, hl) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
		<-served
	}()

	conn, err := grpc.NewClient(gl.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	defer conn.Close()
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
	err = conn.Invoke(ctx, "/test.Buggy/Crash", &emptypb.Empty{}, &emptypb.Empty{})
	if st, _ := status.FromError(err); st.Code() != codes.Internal || st.Message() != "internal error" {
		t.Fatalf("buggy call = %v, want INTERNAL \"internal error\" with no details", err)
	}
	if !strings.Contains(logs.String(), "panic in handler") || !strings.Contains(logs.String(), "assignment to entry in nil map") {
		t.Errorf("log does not record the panic:\n%s", logs.String())
	}
	who, err := sarv1.NewAuthServiceClient(conn).WhoAmI(ctx, &sarv1.WhoAmIRequest{})
	if err != nil || who.GetPrincipal().GetRole() != sarv1.Role_ROLE_ADMIN {
		t.Fatalf("after the panic WhoAmI = %v, %v; want the server still serving", who, err)
	}
}
