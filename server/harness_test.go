package server_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/app"
	"github.com/mountain-sar/sar/internal/auth"
	"github.com/mountain-sar/sar/internal/testenv"
)

// env is a whole server on real Redis and NATS, with gRPC clients.
type env struct {
	t      *testing.T
	app    *app.App
	redis  *testenv.Redis
	nats   *testenv.NATS
	rdb    redis.UniversalClient
	conn   *grpc.ClientConn
	admin  string
	auth   sarv1.AuthServiceClient
	agency sarv1.AgencyServiceClient
	inc    sarv1.IncidentServiceClient
	loc    sarv1.LocationServiceClient
	logTo  io.Writer // the server's log, at debug level, when set (else testLogger)
}

type envOption func(*app.Config)

func startEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	return startEnvLogging(t, nil, opts...)
}

// startEnvLogging is startEnv with the server's log written to w.
func startEnvLogging(t *testing.T, w io.Writer, opts ...envOption) *env {
	t.Helper()
	e := &env{t: t, redis: testenv.StartRedis(t, testenv.WithAOF()), nats: testenv.StartNATS(t), logTo: w}
	e.admin, _, _ = auth.NewToken()
	cfg := app.Defaults()
	cfg.GRPCAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.RedisURL, cfg.NATSURL, cfg.AdminToken = e.redis.URL(), e.nats.URL(), e.admin
	cfg.RateLimit, cfg.RateBurst = 10000, 10000
	cfg.RelayInterval = 200 * time.Millisecond
	cfg.WatchRecheck = 200 * time.Millisecond
	cfg.ShutdownTimeout = 5 * time.Second
	for _, o := range opts {
		o(&cfg)
	}
	e.start(cfg)
	return e
}

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("SAR_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func (e *env) start(cfg app.Config) {
	t := e.t
	t.Helper()
	log := testLogger(t)
	if e.logTo != nil {
		log = jsonLogger(e.logTo)
	}
	a, err := app.Start(context.Background(), cfg, log)
	if err != nil {
		t.Fatalf("app.Start: %v", err)
	}
	t.Cleanup(func() { _ = a.Close() })
	e.app = a
	opt, _ := redis.ParseURL(e.redis.URL())
	e.rdb = redis.NewClient(opt)
	t.Cleanup(func() { _ = e.rdb.Close() })
	e.connect()
}

// connect makes the gRPC clients.
func (e *env) connect() {
	t := e.t
	var err error
	e.conn, err = grpc.NewClient(e.app.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	conn := e.conn
	t.Cleanup(func() { _ = conn.Close() })
	e.auth = sarv1.NewAuthServiceClient(e.conn)
	e.agency = sarv1.NewAgencyServiceClient(e.conn)
	e.inc = sarv1.NewIncidentServiceClient(e.conn)
	e.loc = sarv1.NewLocationServiceClient(e.conn)
}

// as returns a context that carries token, with a test deadline.
func (e *env) as(token string) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	e.t.Cleanup(cancel)
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

func must[T any](t *testing.T, what string) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return v
	}
}

func (e *env) createAgency(id, jurisdiction string, kind sarv1.AgencyKind) {
	e.t.Helper()
	must[*sarv1.CreateAgencyResponse](e.t, "CreateAgency "+id)(e.agency.CreateAgency(e.as(e.admin), &sarv1.CreateAgencyRequest{
		Agency: &sarv1.Agency{Id: id, Name: id, Kind: kind, Jurisdiction: jurisdiction}}))
}

func (e *env) credential(req *sarv1.CreateCredentialRequest) string {
	e.t.Helper()
	if req.DisplayName == "" {
		req.DisplayName = "test " + req.GetRole().String()
	}
	return must[*sarv1.CreateCredentialResponse](e.t, "CreateCredential")(e.auth.CreateCredential(e.as(e.admin), req)).GetToken()
}

func (e *env) operator(jurisdiction string) string {
	return e.credential(&sarv1.CreateCredentialRequest{Role: sarv1.Role_ROLE_OPERATOR, Jurisdiction: jurisdiction})
}

func (e *env) rescuer(agency, team string) string {
	return e.credential(&sarv1.CreateCredentialRequest{Role: sarv1.Role_ROLE_RESCUER, AgencyId: agency, TeamId: team})
}

func (e *env) createIncident(op string, agencies ...string) *sarv1.Incident {
	e.t.Helper()
	return must[*sarv1.CreateIncidentResponse](e.t, "CreateIncident")(e.inc.CreateIncident(e.as(op), &sarv1.CreateIncidentRequest{
		Title: "Mother and daughter lost off the north ridge trail", AgencyIds: agencies,
		InitialPlanningPoint: &sarv1.PlanningPoint{Position: &sarv1.LatLng{Lat: 30.2458, Lng: 119.7156}, AccuracyM: 50},
		Subject:              &sarv1.SubjectProfile{Category: sarv1.SubjectCategory_SUBJECT_CATEGORY_HIKER, NumberOfPeople: 2},
	})).GetIncident()
}

func (e *env) join(token, incident, device string) *sarv1.JoinIncidentResponse {
	e.t.Helper()
	return must[*sarv1.JoinIncidentResponse](e.t, "JoinIncident")(e.inc.JoinIncident(e.as(token), &sarv1.JoinIncidentRequest{
		IncidentId: incident, DeviceId: device, DisplayName: device}))
}

// walk makes n fixes from sequence first, one every 10 s ending at end,
// moving north-east by ~20 m per fix.
func walk(first uint64, n int, end time.Time) []*sarv1.LocationFix {
	out := make([]*sarv1.LocationFix, n)
	for i := range n {
		out[i] = &sarv1.LocationFix{
			Sequence: first + uint64(i), Lat: 30.2458 + 0.0002*float64(int(first)+i), Lng: 119.7156 + 0.0002*float64(int(first)+i),
			HorizontalAccuracyM: 6, Time: timestamppb.New(end.Add(-time.Duration(n-1-i) * 10 * time.Second)),
			Source: sarv1.FixSource_FIX_SOURCE_GNSS,
		}
	}
	return out
}

// device is one open StreamFixes stream.
type device struct {
	t        *testing.T
	id, inc  string
	stream   sarv1.LocationService_StreamFixesClient
	cancel   context.CancelFunc
	batchSeq uint64
	e        *env
}

func (e *env) openDevice(token, incident, id string) *device {
	e.t.Helper()
	ctx, cancel := context.WithCancel(e.as(token))
	s, err := e.loc.StreamFixes(ctx)
	if err != nil {
		cancel()
		e.t.Fatalf("StreamFixes: %v", err)
	}
	d := &device{t: e.t, id: id, inc: incident, stream: s, cancel: cancel, e: e}
	e.t.Cleanup(d.close)
	return d
}

func (d *device) close() { _ = d.stream.CloseSend(); d.cancel() }

// send sends one batch and returns its acknowledgement.
func (d *device) send(fixes ...*sarv1.LocationFix) *sarv1.FixAck {
	d.t.Helper()
	d.batchSeq++
	if err := d.stream.Send(&sarv1.StreamFixesRequest{Batch: &sarv1.FixBatch{IncidentId: d.inc, DeviceId: d.id, Fixes: fixes, BatchId: d.batchSeq}}); err != nil {
		d.t.Fatalf("Send: %v", err)
	}
	r, err := d.stream.Recv()
	if err != nil {
		d.t.Fatalf("Recv: %v", err)
	}
	if r.GetAck().GetBatchId() != d.batchSeq {
		d.t.Fatalf("ack batch_id = %d, want %d", r.GetAck().GetBatchId(), d.batchSeq)
	}
	if len(r.GetAck().GetStored()) > 0 {
		d.e.settle(d.inc)
	}
	return r.GetAck()
}

// settle waits (up to 15 s) until the incident's queue of search work is
// empty: the coverage and caller collapses of the batches acknowledged so
// far are done (they run after the ack). Tests of the search model read
// the grid after it; a queue that does not drain is only logged here, the
// test's own checks of the grid then fail.
func (e *env) settle(incidentID string) {
	e.t.Helper()
	if e.rdb == nil {
		return // an env without a Redis client of its own (TLS-only or cluster backends): nothing to wait on
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		n, err := e.rdb.ZCard(context.Background(), "sar:{"+incidentID+"}:workt").Result()
		if err != nil || n == 0 {
			return // Redis down (a fault test): nothing to wait for here
		}
		if time.Now().After(deadline) {
			e.t.Logf("search work of incident %s still queued after 15 s (%d entries)", incidentID, n)
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func seqs(v ...uint64) []uint64 { return v }

func equalSeqs(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// wantCode fails unless err is a status with code want, and returns it.
func wantCode(t *testing.T, what string, err error, want codes.Code) *status.Status {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != want {
		t.Fatalf("%s: error = %v, want code %v", what, err, want)
	}
	return st
}

// fieldViolations returns the BadRequest field names of a status.
func fieldViolations(st *status.Status) []string {
	var out []string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, f := range br.GetFieldViolations() {
				out = append(out, f.GetField())
			}
		}
	}
	return out
}

// eventually polls cond until it holds or 10 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if sub != "" && strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

var errStop = errors.New("stop")

// officerOnIncident is the smallest search: a police station of jurisdiction
// north, its operator, one officer, and an incident the officer's "phone"
// has joined.
func (e *env) officerOnIncident() (op, officer string, inc *sarv1.Incident) {
	e.t.Helper()
	e.createAgency("police-north", "north", sarv1.AgencyKind_AGENCY_KIND_POLICE_STATION)
	op = e.operator("north")
	officer = e.rescuer("police-north", "")
	inc = e.createIncident(op, "police-north")
	e.join(officer, inc.GetId(), "phone")
	return op, officer, inc
}
