// Package server is the gRPC and HTTP side: it authenticates every call,
// hands it to the domain (internal/core), maps domain errors to gRPC status
// codes with field details, and serves health, reflection, Prometheus
// metrics and the JSON gateway.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	grpcauth "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	sarv1gw "github.com/mountain-sar/sar/gen/gateway/sar/v1"
	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/auth"
	"github.com/mountain-sar/sar/internal/core"
)

// Options configure a Server.
type Options struct {
	Log         *slog.Logger
	Registry    *prometheus.Registry // metrics are registered here and served on /metrics
	MaxMsgBytes int                  // largest request message (default 1 MiB)
	RateLimit   float64              // requests (and stream messages) per second per credential (default 50)
	RateBurst   int                  // burst (default 100)
	// WatchRecheck is how often watch streams re-check their credential
	// (default 10 s).
	WatchRecheck time.Duration
	// Ready reports whether the backends answer (for /readyz and health).
	Ready func(ctx context.Context) error
}

// Server serves the sar.v1 API over gRPC and HTTP.
type Server struct {
	core     *core.Service
	opt      Options
	log      *slog.Logger
	grpc     *grpc.Server
	health   *health.Server
	mux      *http.ServeMux
	mu       sync.Mutex // guards http and gwConn, set by Serve
	http     *http.Server
	gwConn   *grpc.ClientConn
	draining chan struct{}
	drain    sync.Once
	limiters sync.Map // credential id -> *rate.Limiter
	nLimiter int64
	limMu    sync.Mutex
}

type tokenKey struct{}

func tokenFromContext(ctx context.Context) string { s, _ := ctx.Value(tokenKey{}).(string); return s }

// New builds a Server around the domain service.
func New(svc *core.Service, opt Options) *Server {
	if opt.Log == nil {
		opt.Log = slog.Default()
	}
	if opt.Registry == nil {
		opt.Registry = prometheus.NewRegistry()
	}
	if opt.MaxMsgBytes == 0 {
		opt.MaxMsgBytes = 1 << 20
	}
	if opt.RateLimit == 0 {
		opt.RateLimit = 50
	}
	if opt.RateBurst == 0 {
		opt.RateBurst = 100
	}
	if opt.WatchRecheck == 0 {
		opt.WatchRecheck = 10 * time.Second
	}
	s := &Server{core: svc, opt: opt, log: opt.Log, health: health.NewServer(), draining: make(chan struct{}), mux: http.NewServeMux()}

	metrics := grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(
		grpcprom.WithHistogramBuckets([]float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5})))
	opt.Registry.MustRegister(metrics)

	recover := recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		s.log.Error("panic in handler", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		return status.Error(codes.Internal, "internal error")
	})
	logOpts := []logging.Option{
		logging.WithLogOnEvents(logging.FinishCall),
		logging.WithLevels(func(c codes.Code) logging.Level {
			switch c {
			case codes.OK, codes.Canceled, codes.NotFound, codes.InvalidArgument, codes.AlreadyExists, codes.FailedPrecondition:
				return logging.LevelDebug
			case codes.Internal, codes.Unknown, codes.DataLoss:
				return logging.LevelError
			}
			return logging.LevelInfo
		}),
	}
	authMatch := selector.MatchFunc(func(_ context.Context, c interceptors.CallMeta) bool {
		return !strings.HasPrefix(c.FullMethod(), "/grpc.health.") && !strings.HasPrefix(c.FullMethod(), "/grpc.reflection.")
	})
	s.grpc = grpc.NewServer(
		grpc.MaxRecvMsgSize(opt.MaxMsgBytes),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.ChainUnaryInterceptor(
			metrics.UnaryServerInterceptor(),
			logging.UnaryServerInterceptor(slogAdapter(s.log), logOpts...),
			recovery.UnaryServerInterceptor(recover),
			selector.UnaryServerInterceptor(grpcauth.UnaryServerInterceptor(s.authenticate), authMatch),
			s.unaryLimit,
			s.unaryErrors,
		),
		grpc.ChainStreamInterceptor(
			metrics.StreamServerInterceptor(),
			logging.StreamServerInterceptor(slogAdapter(s.log), logOpts...),
			recovery.StreamServerInterceptor(recover),
			selector.StreamServerInterceptor(grpcauth.StreamServerInterceptor(s.authenticate), authMatch),
			s.streamLimit,
			s.streamErrors,
		),
	)
	sarv1.RegisterAuthServiceServer(s.grpc, &authService{core: svc})
	sarv1.RegisterAgencyServiceServer(s.grpc, &agencyService{core: svc})
	sarv1.RegisterIncidentServiceServer(s.grpc, &incidentService{core: svc, log: s.log, draining: s.draining, recheck: opt.WatchRecheck})
	sarv1.RegisterLocationServiceServer(s.grpc, &locationService{core: svc, log: s.log, draining: s.draining})
	sarv1.RegisterSearchServiceServer(s.grpc, &searchService{core: svc})
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	metrics.InitializeMetrics(s.grpc)

	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(opt.Registry, promhttp.HandlerOpts{Registry: opt.Registry}))
	return s
}

// Handle adds an HTTP handler (pages, more APIs) to the HTTP listener.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// authenticate resolves the bearer token of a call to its principal.
func (s *Server) authenticate(ctx context.Context) (context.Context, error) {
	token, err := grpcauth.AuthFromMD(ctx, "bearer")
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, "missing credential: send \"authorization: Bearer <token>\"")
	}
	p, err := s.core.Authenticate(ctx, token)
	if err != nil {
		return nil, toStatus(s.log, "authenticate", err)
	}
	ctx = auth.WithPrincipal(ctx, p)
	return context.WithValue(ctx, tokenKey{}, token), nil
}

func (s *Server) limiter(ctx context.Context) *rate.Limiter {
	p := auth.FromContext(ctx)
	if p == nil {
		return nil
	}
	if l, ok := s.limiters.Load(p.GetCredentialId()); ok {
		return l.(*rate.Limiter)
	}
	s.limMu.Lock()
	defer s.limMu.Unlock()
	if s.nLimiter > 100_000 { // bounded: start afresh rather than grow without end
		s.limiters.Clear()
		s.nLimiter = 0
	}
	l, loaded := s.limiters.LoadOrStore(p.GetCredentialId(), rate.NewLimiter(rate.Limit(s.opt.RateLimit), s.opt.RateBurst))
	if !loaded {
		s.nLimiter++
	}
	return l.(*rate.Limiter)
}

func (s *Server) unaryLimit(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if l := s.limiter(ctx); l != nil && !l.Allow() {
		return nil, status.Error(codes.ResourceExhausted, "rate limit exceeded for this credential; retry with backoff")
	}
	return handler(ctx, req)
}

// limitedStream slows a stream's messages down to the credential's rate
// instead of failing it: a device with a backlog drains it steadily.
type limitedStream struct {
	grpc.ServerStream
	l *rate.Limiter
}

func (ls *limitedStream) RecvMsg(m any) error {
	if err := ls.l.Wait(ls.Context()); err != nil {
		return status.FromContextError(ls.Context().Err()).Err()
	}
	return ls.ServerStream.RecvMsg(m)
}

func (s *Server) streamLimit(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if l := s.limiter(ss.Context()); l != nil {
		ss = &limitedStream{ServerStream: ss, l: l}
	}
	return handler(srv, ss)
}

func (s *Server) unaryErrors(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	resp, err := handler(ctx, req)
	if err != nil {
		return nil, toStatus(s.log, info.FullMethod, err)
	}
	return resp, nil
}

func (s *Server) streamErrors(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return toStatus(s.log, info.FullMethod, handler(srv, ss))
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.opt.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := s.opt.Ready(ctx); err != nil {
			s.log.Warn("not ready", "err", err)
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
	}
	select {
	case <-s.draining:
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
	default:
		_, _ = w.Write([]byte("ok\n"))
	}
}

// Serve serves gRPC on gl and HTTP (health, metrics, gateway, pages) on hl
// until Shutdown. It returns when both have stopped.
func (s *Server) Serve(gl, hl net.Listener) error {
	// A search grid export of a 95 % area is several MB: above gRPC's
	// default 4 MB receive limit.
	conn, err := grpc.NewClient(gl.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		return fmt.Errorf("server: gateway client: %w", err)
	}
	gw := runtime.NewServeMux()
	ctx := context.Background()
	for _, reg := range []func(context.Context, *runtime.ServeMux, *grpc.ClientConn) error{
		sarv1gw.RegisterAuthServiceHandler, sarv1gw.RegisterAgencyServiceHandler,
		sarv1gw.RegisterIncidentServiceHandler, sarv1gw.RegisterLocationServiceHandler, sarv1gw.RegisterSearchServiceHandler,
	} {
		if err := reg(ctx, gw, conn); err != nil {
			return fmt.Errorf("server: gateway: %w", err)
		}
	}
	s.mux.Handle("/v1/", s.gatewayGuard(gw))
	hs := &http.Server{Handler: s.mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	s.mu.Lock()
	select {
	case <-s.draining: // Shutdown came first: nothing to serve
		s.mu.Unlock()
		_ = conn.Close()
		return nil
	default:
	}
	s.http, s.gwConn = hs, conn
	s.mu.Unlock()
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	for _, name := range []string{sarv1.AuthService_ServiceDesc.ServiceName, sarv1.AgencyService_ServiceDesc.ServiceName,
		sarv1.IncidentService_ServiceDesc.ServiceName, sarv1.LocationService_ServiceDesc.ServiceName,
		sarv1.SearchService_ServiceDesc.ServiceName} {
		s.health.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	errc := make(chan error, 2)
	go func() { errc <- s.grpc.Serve(gl) }()
	go func() {
		err := hs.Serve(hl)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		errc <- err
	}()
	err = <-errc
	if err2 := <-errc; err == nil {
		err = err2
	}
	return err
}

// gatewayGuard protects the JSON gateway before it decodes a body: a request
// without a well-formed bearer token is refused at once, and bodies are
// capped at the gRPC message limit (the gateway would otherwise read a
// body of any size into memory before gRPC's limit applies).
func (s *Server) gatewayGuard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || !auth.WellFormed(token) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"code":16,"message":"missing or malformed credential: send \"Authorization: Bearer <token>\""}` + "\n"))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, int64(s.opt.MaxMsgBytes))
		next.ServeHTTP(w, r)
	})
}

// Shutdown drains the server: health goes NOT_SERVING, device and watch
// streams finish the batch in hand and end with UNAVAILABLE, in-flight
// calls complete (until ctx ends, then they are cut), and the HTTP server
// closes.
func (s *Server) Shutdown(ctx context.Context) error {
	s.health.Shutdown()
	s.mu.Lock()
	s.drain.Do(func() { close(s.draining) })
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.grpc.Stop()
	}
	s.mu.Lock()
	hs, conn := s.http, s.gwConn
	s.mu.Unlock()
	var err error
	if hs != nil {
		err = hs.Shutdown(ctx)
	}
	if conn != nil {
		_ = conn.Close()
	}
	return err
}

// slogAdapter logs gRPC calls through slog.
func slogAdapter(l *slog.Logger) logging.Logger {
	return logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		l.Log(ctx, slog.Level(lvl), msg, fields...)
	})
}
