// Package server is the gRPC and HTTP side: it authenticates every call,
// hands it to the domain (internal/core), maps domain errors to gRPC status
// codes with field details, and serves health, reflection, Prometheus
// metrics and the JSON gateway.
//
// One handler, two doors: every service is registered on the gRPC server
// and on an in-process channel (grpchan's inprocgrpc) that the JSON gateway
// calls. Both doors run the same interceptor chain (metrics, logging,
// panic recovery, authentication, rate limit, error mapping), so a JSON
// call behaves as the same gRPC call would, without a loopback connection
// and without marshaling to bytes and back.
package server

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fullstorydev/grpchan"
	"github.com/fullstorydev/grpchan/inprocgrpc"
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
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	sarv1gw "github.com/mountain-sar/sar/gen/gateway/sar/v1"
	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/auth"
	"github.com/mountain-sar/sar/internal/core"
	"github.com/mountain-sar/sar/internal/sar"
	"github.com/mountain-sar/sar/web"
)

// Options configure a Server.
type Options struct {
	Log         *slog.Logger
	Registry    *prometheus.Registry // metrics are registered here and served on /metrics
	MaxMsgBytes int                  // largest request message (default 1 MiB)
	RateLimit   float64              // requests (and stream messages) per second per credential (default 50)
	RateBurst   int                  // burst (default 100)
	// LinkRateLimit and LinkRateBurst limit each share link's credential
	// (default 2 per second, burst 30: a page sends a batch every few
	// seconds and polls its status).
	LinkRateLimit float64
	LinkRateBurst int
	// AddrRateLimit and AddrRateBurst limit, per client address, the calls
	// refused for their credential, and apart from them the share-link
	// calls (default 5 per second, burst 60, each).
	AddrRateLimit float64
	AddrRateBurst int
	// WatchRecheck is how often watch streams re-check their credential
	// (default 10 s).
	WatchRecheck time.Duration
	// WatchOutageGrace is how long a stream (a watch, or a device's
	// StreamFixes) rides out a store outage since its last successful
	// check or read (default 30 s).
	WatchOutageGrace time.Duration
	// Ready reports whether the backends answer (for /readyz and health).
	Ready func(ctx context.Context) error
	// ReadyInterval is how often gRPC health checks Ready (default 1 s).
	ReadyInterval time.Duration
	// TLS, when set, secures both listeners (see server/tls.go).
	TLS *tls.Config
	// ClientCAs, with TLS, admits client certificates that the CAs of
	// the pool it returns signed, on both listeners (mutual TLS, see
	// server/mtls.go). It is asked at every handshake and HTTP request,
	// so a reloaded bundle applies to new connections at once.
	ClientCAs func() *x509.CertPool
	// TrustedProxies are the addresses whose X-Forwarded-For is believed
	// (see server/proxy.go).
	TrustedProxies []netip.Prefix
}

// Server serves the sar.v1 API over gRPC and HTTP.
type Server struct {
	core      *core.Service
	opt       Options
	log       *slog.Logger
	grpc      *grpc.Server
	inproc    *inprocgrpc.Channel // the JSON gateway's door to the same services
	health    *health.Server
	mux       *http.ServeMux
	mu        sync.Mutex // guards http, set by Serve
	http      *http.Server
	base      context.Context // every HTTP request's context descends from it
	cut       context.CancelFunc
	draining  chan struct{}
	drainCtx  context.Context // ends with draining: ends StreamFixes streams waiting in Recv (streams.go)
	drained   context.CancelFunc
	drain     sync.Once
	creds     *keyedLimiters // per credential id
	links     *keyedLimiters // per share link's credential id
	addrs     *keyedLimiters // per client address: calls refused for their credential
	linkAddrs *keyedLimiters // per client address: share-link calls
	gw        *runtime.ServeMux
	bg        sync.WaitGroup // followReady
}

type presentedKey struct{}

// presentedFromContext is what the call authenticated with (streams check it again).
func presentedFromContext(ctx context.Context) core.Presented {
	p, _ := ctx.Value(presentedKey{}).(core.Presented)
	return p
}

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
	opt.LinkRateLimit = cmp.Or(opt.LinkRateLimit, 2)
	opt.LinkRateBurst = cmp.Or(opt.LinkRateBurst, 30)
	opt.AddrRateLimit = cmp.Or(opt.AddrRateLimit, 5)
	opt.AddrRateBurst = cmp.Or(opt.AddrRateBurst, 60)
	if opt.WatchRecheck == 0 {
		opt.WatchRecheck = 10 * time.Second
	}
	if opt.WatchOutageGrace == 0 {
		opt.WatchOutageGrace = 30 * time.Second
	}
	if opt.ReadyInterval <= 0 {
		opt.ReadyInterval = time.Second
	}
	s := &Server{core: svc, opt: opt, log: opt.Log, health: health.NewServer(), draining: make(chan struct{}), mux: http.NewServeMux()}
	s.base, s.cut = context.WithCancel(context.Background())
	s.drainCtx, s.drained = context.WithCancel(context.Background())
	s.creds = newKeyedLimiters(opt.RateLimit, opt.RateBurst)
	s.links = newKeyedLimiters(opt.LinkRateLimit, opt.LinkRateBurst)
	s.addrs = newKeyedLimiters(opt.AddrRateLimit, opt.AddrRateBurst)
	s.linkAddrs = newKeyedLimiters(opt.AddrRateLimit, opt.AddrRateBurst)

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
	// The one interceptor chain of both doors, outermost first.
	unary := []grpc.UnaryServerInterceptor{
		metrics.UnaryServerInterceptor(),
		logging.UnaryServerInterceptor(slogAdapter(s.log), logOpts...),
		recovery.UnaryServerInterceptor(recover),
		selector.UnaryServerInterceptor(grpcauth.UnaryServerInterceptor(s.authenticate), authMatch),
		s.unaryLimit,
		s.unaryEnums, // an enum number its enum does not declare: INVALID_ARGUMENT
		s.unaryErrors,
	}
	stream := []grpc.StreamServerInterceptor{
		metrics.StreamServerInterceptor(),
		logging.StreamServerInterceptor(slogAdapter(s.log), logOpts...),
		recovery.StreamServerInterceptor(recover),
		selector.StreamServerInterceptor(grpcauth.StreamServerInterceptor(s.authenticate), authMatch),
		s.streamLimit,
		s.streamEnums,
		s.streamErrors,
	}
	// The gRPC door decodes bytes: a request that does not decode is
	// refused INVALID_ARGUMENT after metrics and logging have seen it.
	codec := newDecodeCodec()
	s.grpc = grpc.NewServer(append(s.transportOptions(),
		grpc.ForceServerCodecV2(codec),
		grpc.MaxRecvMsgSize(opt.MaxMsgBytes),
		grpc.ReadBufferSize(s.readBufferSize()),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.ChainUnaryInterceptor(slices.Insert(slices.Clone(unary), 2, codec.unary)...),
		grpc.ChainStreamInterceptor(slices.Insert(slices.Clone(stream), 2, codec.stream)...),
	)...)
	// The in-process door first does what the gRPC transport does before
	// the chain (the message size limit, the peer), then the same chain.
	s.inproc = (&inprocgrpc.Channel{}).WithServerUnaryInterceptor(s.gatewayUnary).WithServerStreamInterceptor(s.gatewayStream)
	inproc := grpchan.WithStreamInterceptors(grpchan.WithUnaryInterceptors(s.inproc, unary...), stream...)
	both := doors{s.grpc, inproc}
	sarv1.RegisterAuthServiceServer(both, &authService{core: svc})
	sarv1.RegisterAgencyServiceServer(both, &agencyService{core: svc})
	sarv1.RegisterIncidentServiceServer(both, &incidentService{core: svc, log: s.log, draining: s.draining, recheck: opt.WatchRecheck, grace: opt.WatchOutageGrace})
	sarv1.RegisterLocationServiceServer(both, &locationService{core: svc, log: s.log, drainCtx: s.drainCtx, grace: opt.WatchOutageGrace})
	sarv1.RegisterSearchServiceServer(both, &searchService{core: svc})
	sarv1.RegisterTaskServiceServer(both, &taskService{core: svc, log: s.log, draining: s.draining, recheck: opt.WatchRecheck, grace: opt.WatchOutageGrace})
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	metrics.InitializeMetrics(s.grpc)

	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(opt.Registry, promhttp.HandlerOpts{Registry: opt.Registry}))
	s.mux.Handle("/v1/", s.gatewayGuard(s.gateway()))
	pages, err := Pages(web.FS())
	if err != nil { // the files are embedded: cannot fail
		panic(err)
	}
	s.mux.Handle("/", pages) // the least specific pattern: only what nothing else takes
	return s
}

// readBufferSize is each gRPC connection's read buffer. gRPC-Go's default
// is 32 KiB. On a plaintext TCP connection it comes from a pool and is held
// only while data is waiting; 4 KiB keeps that pool small. On a TLS
// connection it would be a bufio.Reader of its own for the connection's
// life (160 MiB at 32 KiB, 20 MiB at 4 KiB, for 5,000 phones that each
// keep a connection open), and it buys nothing there: the TLS connection
// already reads a whole record at a time and hands the framer its bytes
// from memory, so over TLS there is none. (docs/bench.md, memory
// benchmark.)
func (s *Server) readBufferSize() int {
	if s.opt.TLS != nil {
		return 0
	}
	return 4 << 10
}

// doors registers a service on the gRPC server and on the JSON gateway's
// in-process channel: one implementation behind both.
type doors []grpc.ServiceRegistrar

func (d doors) RegisterService(desc *grpc.ServiceDesc, impl any) {
	for _, r := range d {
		r.RegisterService(desc, impl)
	}
}

// gateway is the JSON gateway over the in-process channel.
func (s *Server) gateway() http.Handler {
	register := func(gw *runtime.ServeMux) {
		ctx := context.Background()
		for _, err := range []error{
			sarv1gw.RegisterAuthServiceHandlerClient(ctx, gw, sarv1.NewAuthServiceClient(s.inproc)),
			sarv1gw.RegisterAgencyServiceHandlerClient(ctx, gw, sarv1.NewAgencyServiceClient(s.inproc)),
			sarv1gw.RegisterIncidentServiceHandlerClient(ctx, gw, sarv1.NewIncidentServiceClient(s.inproc)),
			sarv1gw.RegisterLocationServiceHandlerClient(ctx, gw, sarv1.NewLocationServiceClient(s.inproc)),
			sarv1gw.RegisterSearchServiceHandlerClient(ctx, gw, sarv1.NewSearchServiceClient(s.inproc)),
			sarv1gw.RegisterTaskServiceHandlerClient(ctx, gw, sarv1.NewTaskServiceClient(s.inproc)),
		} {
			if err != nil { // only a conflicting pattern, a bug: the routes are generated
				panic(fmt.Sprintf("server: gateway: %v", err))
			}
		}
	}
	gw := runtime.NewServeMux(methodRouting(register), // a wrong method: 405 with Allow
		runtime.WithMarshalerOption(runtime.MIMEWildcard, newJSONIn())) // unknown enum names and missing coordinates refused
	s.gw = gw
	register(gw)
	return gw
}

// gatewayUnary and gatewayStream stand, on the in-process door, for what the
// gRPC transport does before the interceptors: refuse a message above the
// size limit (the gateway guard caps the JSON body, not the query string or
// the decoded message), and name the peer: the HTTP client, found in the
// X-Forwarded-For the gateway appended the connection's address to
// (gatewayPeer, server/proxy.go); the metadata keeps the whole header as
// the gateway sent it.
func (s *Server) gatewayUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := s.checkSize(req); err != nil {
		return nil, err
	}
	return handler(withGatewayCertificate(s.gatewayPeer(ctx)), req)
}

func (s *Server) gatewayStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, &gatewayServerStream{ServerStream: ss, ctx: withGatewayCertificate(s.gatewayPeer(ss.Context())), s: s})
}

func (s *Server) checkSize(m any) error {
	if pm, ok := m.(proto.Message); ok {
		if n := proto.Size(pm); n > s.opt.MaxMsgBytes {
			return status.Errorf(codes.ResourceExhausted, "grpc: received message larger than max (%d vs. %d)", n, s.opt.MaxMsgBytes)
		}
	}
	return nil
}

type gatewayServerStream struct {
	grpc.ServerStream
	ctx context.Context
	s   *Server
}

func (g *gatewayServerStream) Context() context.Context { return g.ctx }

func (g *gatewayServerStream) RecvMsg(m any) error {
	if err := g.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return g.s.checkSize(m)
}

// httpAddr is the address of an HTTP client of the JSON gateway.
type httpAddr string

func (a httpAddr) Network() string { return "http" }
func (a httpAddr) String() string  { return string(a) }

// Handle adds an HTTP handler (pages, more APIs) to the HTTP listener. The
// embedded pages (package web) answer "/" and whatever no other pattern
// takes.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// authenticate resolves the bearer token of a call to its principal. An
// address that has spent its budget on refused credentials and share-link
// calls gets ResourceExhausted for every call that would spend more; an
// operator's or rescuer's valid credential still works from it (a command
// post shares one address with whoever else is there).
func (s *Server) authenticate(ctx context.Context) (context.Context, error) {
	addr := s.clientAddr(ctx)
	token, err := grpcauth.AuthFromMD(ctx, "bearer")
	if err != nil {
		if id, ok := clientCertCredential(ctx); ok { // mutual TLS (mtls.go)
			return s.authenticateCertificate(ctx, addr, id)
		}
		return nil, s.refuse(addr, core.Unauthenticated(sar.CredentialRequired))
	}
	p, err := s.core.Authenticate(ctx, token)
	if err != nil {
		if sar.KindOf(err) == sar.KindUnauthenticated {
			return nil, s.refuse(addr, err)
		}
		return nil, toStatus(s.log, "authenticate", err)
	}
	if linkTraffic(p) && !s.linkSpend(addr) {
		return nil, errAddrLimited
	}
	ctx = auth.WithPrincipal(ctx, p)
	return context.WithValue(ctx, presentedKey{}, core.Presented{Token: token}), nil
}

// refuse answers a refused credential, spending the address's budget;
// once it is spent, with ResourceExhausted.
func (s *Server) refuse(addr string, err error) error {
	if !s.refusedSpend(addr) {
		return errAddrLimited
	}
	return toStatus(s.log, "authenticate", err)
}

var errAddrLimited = status.Error(codes.ResourceExhausted, "too many requests from this address; retry with backoff")

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
	hs := &http.Server{Handler: s.httpHandler(), ErrorLog: s.httpErrorLog(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		BaseContext: func(net.Listener) context.Context { return s.base }}
	s.mu.Lock()
	select {
	case <-s.draining: // Shutdown came first: nothing to serve
		s.mu.Unlock()
		return nil
	default:
	}
	s.http = hs
	s.setHealth(healthpb.HealthCheckResponse_SERVING)
	s.bg.Go(s.followReady) // health follows the backends, as /readyz does (under mu: before Shutdown's Wait)
	s.mu.Unlock()
	errc := make(chan error, 2)
	go func() { errc <- s.grpc.Serve(gl) }()
	go func() {
		err := s.serveHTTP(hs, hl)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		errc <- err
	}()
	err := <-errc
	if err2 := <-errc; err == nil {
		err = err2
	}
	return err
}

// gatewayGuard protects the JSON gateway before it decodes a body: a request
// without a well-formed bearer token or a verified client certificate
// (mtls.go) is refused at once, and bodies are capped at the gRPC message
// limit (the gateway would otherwise read a body of any size into memory
// before gRPC's limit applies).
func (s *Server) gatewayGuard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		addr := s.httpClientAddr(r)
		header := r.Header.Get("Authorization")
		token, ok := strings.CutPrefix(header, "Bearer ")
		var refuse error
		switch {
		case header == "" && r.TLS != nil && len(r.TLS.PeerCertificates) > 0:
			ctx, err := s.gatewayCertificate(r)
			if err != nil { // answered as a certificate the gRPC handshake refuses would be, were it a token
				s.log.Debug("json gateway: client certificate refused", "addr", addr, "err", err)
				refuse = s.refuse(addr, core.Unauthenticated(sar.CredentialInvalid))
				break
			}
			if ctx != nil {
				r = r.WithContext(ctx)
			} else { // mutual TLS is off: a certificate is no credential
				refuse = s.refuse(addr, core.Unauthenticated(sar.CredentialRequired))
			}
		case !ok:
			refuse = s.refuse(addr, core.Unauthenticated(sar.CredentialRequired))
		case !auth.WellFormed(token):
			// Answered exactly as a well-formed unknown token is: a client
			// learns nothing from the shape of what it sent.
			refuse = s.refuse(addr, core.Unauthenticated(sar.CredentialInvalid))
		}
		if refuse != nil {
			_, m := runtime.MarshalerForRequest(s.gw, r)
			runtime.HTTPError(r.Context(), s.gw, m, w, r, refuse)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, int64(s.opt.MaxMsgBytes))
		next.ServeHTTP(w, r)
	})
}

// Shutdown drains the server: health goes NOT_SERVING, device and watch
// streams finish the batch in hand and end with UNAVAILABLE, in-flight
// calls complete (until ctx ends, then they are cut), and the HTTP server
// closes. JSON calls are in-process, not counted by the gRPC server's
// drain: the HTTP server's own drain waits for them, and when ctx ends
// their contexts are cancelled.
func (s *Server) Shutdown(ctx context.Context) error {
	s.health.Shutdown()
	s.mu.Lock()
	s.drain.Do(func() { close(s.draining); s.drained() })
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.grpc.Stop()
	}
	s.mu.Lock()
	hs := s.http
	s.mu.Unlock()
	var err error
	if hs != nil {
		if err = hs.Shutdown(ctx); err != nil {
			s.cut()
			_ = hs.Close()
		}
	}
	s.cut()
	s.bg.Wait()
	return err
}

// slogAdapter logs gRPC calls through slog.
func slogAdapter(l *slog.Logger) logging.Logger {
	return logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		l.Log(ctx, slog.Level(lvl), msg, fields...)
	})
}
