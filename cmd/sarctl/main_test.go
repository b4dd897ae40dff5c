package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kong"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/app"
	"github.com/mountain-sar/sar/internal/auth"
	"github.com/mountain-sar/sar/internal/testenv"
	"github.com/mountain-sar/sar/internal/tlsutil"
)

func TestParseFlags(t *testing.T) {
	t.Setenv("SAR_GRPC_ADDR", "10.0.0.1:7000")
	t.Setenv("SAR_TOKEN", "tok")
	var cli CLI
	p, err := kong.New(&cli, kong.Name("sarctl"), kong.Vars{"version": "test"})
	if err != nil {
		t.Fatalf("kong.New: %v", err)
	}
	if _, err := p.Parse([]string{"bench", "ingest", "--devices", "4", "--rate", "500"}); err != nil {
		t.Fatalf("Parse: %v", err)
	}
	in := cli.Bench.Ingest
	checks := []struct {
		name      string
		got, want any
	}{
		{"addr", cli.Addr, "10.0.0.1:7000"},
		{"token", cli.Token, "tok"},
		{"devices", in.Devices, 4},
		{"rate", in.Rate, 500.0},
		{"batch", in.Batch, 10},
		{"duration", in.Duration, 20 * time.Second},
		{"inflight", in.Inflight, 1},
		{"redis-url", in.RedisURL, ""},
		{"http-addr", in.HTTPAddr, "127.0.0.1:8080"},
		{"metrics-url", in.MetricsURL, ""},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("flag %s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestTokenIsWellFormed(t *testing.T) {
	var b bytes.Buffer
	if err := (tokenCmd{}).Run(&b); err != nil {
		t.Fatalf("token: %v", err)
	}
	if tok := strings.TrimSpace(b.String()); !auth.WellFormed(tok) {
		t.Errorf("auth.WellFormed(%q) = false, want true", tok)
	}
}

// server is sard in-process on real Redis and NATS.
type server struct {
	addr, admin string
	httpAddr    string
	natsURL     string
	redis       *testenv.Redis
}

func startServer(t *testing.T, mods ...func(*app.Config)) *server {
	t.Helper()
	s := &server{redis: testenv.StartRedis(t)}
	nats := testenv.StartNATS(t)
	s.admin, _, _ = auth.NewToken()
	cfg := app.Defaults()
	cfg.GRPCAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.RedisURL, cfg.NATSURL, cfg.AdminToken = s.redis.URL(), nats.URL(), s.admin
	cfg.RateLimit, cfg.RateBurst = 100_000, 100_000
	cfg.ShutdownTimeout = 5 * time.Second
	// Offers may lapse after 1 s, swept twice a second (bench dispatch).
	cfg.MinAnswerWithin, cfg.EscalationInterval = time.Second, 500*time.Millisecond
	for _, m := range mods {
		m(&cfg)
	}
	a, err := app.Start(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("app.Start: %v", err)
	}
	t.Cleanup(func() { _ = a.Close() })
	s.addr = a.GRPCAddr()
	s.httpAddr, s.natsURL = a.HTTPAddr(), nats.URL()
	return s
}

func (s *server) globals(token string) *Globals {
	return &Globals{Addr: s.addr, Token: token, Timeout: 10 * time.Second}
}

type runner interface {
	Run(context.Context, *Globals, io.Writer) error
}

// run runs a command and decodes its protojson answer into out.
func run[T proto.Message](t *testing.T, g *Globals, cmd runner, out T) T {
	t.Helper()
	var b bytes.Buffer
	if err := cmd.Run(t.Context(), g, &b); err != nil {
		t.Fatalf("%T.Run: %v", cmd, err)
	}
	if err := protojson.Unmarshal(b.Bytes(), out); err != nil {
		t.Fatalf("%T printed %q: not a %T: %v", cmd, b.String(), out, err)
	}
	return out
}

// cancelOnWrite cancels a context at the first write.
type cancelOnWrite struct {
	bytes.Buffer
	cancel context.CancelFunc
}

func (w *cancelOnWrite) Write(p []byte) (int, error) {
	defer w.cancel()
	return w.Buffer.Write(p)
}

func TestAgainstServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Redis, NATS and sard")
	}
	s := startServer(t)
	t.Run("AdminCommands", func(t *testing.T) { testAdminCommands(t, s) })
	t.Run("SearchCommands", func(t *testing.T) { testSearchCommands(t, s) })
	t.Run("BenchIngest", func(t *testing.T) { testBenchIngest(t, s) })
	t.Run("BenchIngestPaced", func(t *testing.T) { testBenchIngestPaced(t, s) })
	t.Run("BenchIngestReport", func(t *testing.T) { testBenchIngestReport(t, s) })
	t.Run("BenchDispatch", func(t *testing.T) { testBenchDispatch(t, s) })
}

func testAdminCommands(t *testing.T, s *server) {
	admin := s.globals(s.admin)
	who := run(t, admin, whoamiCmd{}, &sarv1.WhoAmIResponse{})
	if got := who.GetPrincipal().GetRole(); got != sarv1.Role_ROLE_ADMIN {
		t.Errorf("whoami role = %v, want ROLE_ADMIN", got)
	}
	ag := run(t, admin, &agencyCreateCmd{ID: "valley-rescue", Name: "Valley rescue", Kind: "volunteer-rescue", Jurisdiction: "valley"},
		&sarv1.CreateAgencyResponse{})
	if got := ag.GetAgency().GetKind(); got != sarv1.AgencyKind_AGENCY_KIND_VOLUNTEER_RESCUE {
		t.Errorf("agency create --kind volunteer-rescue: kind = %v, want AGENCY_KIND_VOLUNTEER_RESCUE", got)
	}
	run(t, admin, &teamCreateCmd{Agency: "valley-rescue", ID: "alpha", Name: "Alpha"}, &sarv1.CreateTeamResponse{})
	lat, lng := 46.6, 7.9
	inc := run(t, admin, &incidentCreateCmd{Title: "Two hikers overdue", Jurisdiction: "valley", Lat: &lat, Lng: &lng, Accuracy: 200,
		Agency: []string{"valley-rescue"}, Category: "hiker", People: 2}, &sarv1.CreateIncidentResponse{}).GetIncident()
	if got := inc.GetInitialPlanningPoint().GetPosition().GetLat(); got != lat {
		t.Errorf("incident create --lat %v: ipp lat = %v, want %v", lat, got, lat)
	}
	if got := inc.GetSubject().GetCategory(); got != sarv1.SubjectCategory_SUBJECT_CATEGORY_HIKER {
		t.Errorf("incident create --category hiker: category = %v, want SUBJECT_CATEGORY_HIKER", got)
	}
	got := run(t, admin, &incidentGetCmd{ID: inc.GetId()}, &sarv1.GetIncidentResponse{}).GetIncident()
	if !proto.Equal(got, inc) {
		t.Errorf("incident get %s = %v, want %v", inc.GetId(), got, inc)
	}
	cred := run(t, admin, &credentialCreateCmd{Role: "rescuer", Agency: "valley-rescue", Team: "alpha", Name: "Anna", TTL: time.Hour},
		&sarv1.CreateCredentialResponse{})
	who = run(t, s.globals(cred.GetToken()), whoamiCmd{}, &sarv1.WhoAmIResponse{})
	if got, want := who.GetPrincipal().GetTeamId(), "alpha"; got != want {
		t.Errorf("whoami (rescuer) team = %q, want %q", got, want)
	}
	link := run(t, admin, &linkCreateCmd{ID: inc.GetId(), Name: "Caller", JSON: true}, &sarv1.CreateShareLinkResponse{})
	if !auth.WellFormed(link.GetToken()) {
		t.Errorf("link create token %q is not well formed", link.GetToken())
	}
	// Without --json: what the officer reads and copies.
	var out bytes.Buffer
	svg := filepath.Join(t.TempDir(), "qr.svg")
	if err := (&linkCreateCmd{ID: inc.GetId(), Name: "Caller (mother)", SVG: svg}).Run(t.Context(), admin, &out); err != nil {
		t.Fatalf("link create: %v", err)
	}
	text := out.String()
	for _, want := range []string{"/share#sar_", "SMS (zh):", "【山地搜救】", "SMS (en):", "Mountain rescue:", "█", "sarctl link revoke "} {
		if !strings.Contains(text, want) {
			t.Errorf("link create prints no %q:\n%s", want, text)
		}
	}
	if b, err := os.ReadFile(svg); err != nil || !bytes.HasPrefix(b, []byte("<svg")) {
		t.Errorf("--svg wrote %q, %v", b, err)
	}
	credID := text[strings.LastIndex(text, "link revoke ")+len("link revoke "):]
	credID = strings.TrimSpace(credID)
	run(t, admin, &linkRevokeCmd{CredentialID: credID}, &sarv1.RevokeCredentialResponse{})
	i := strings.Index(text, "/share#")
	revoked := text[i+len("/share#") : i+len("/share#")+47]
	if err := (whoamiCmd{}).Run(t.Context(), s.globals(revoked), io.Discard); status.Code(err) != codes.Unauthenticated {
		t.Errorf("whoami with the revoked link: %v, want Unauthenticated", err)
	}
	run(t, s.globals(link.GetToken()), whoamiCmd{}, &sarv1.WhoAmIResponse{}) // the other link still works

	// watch prints the snapshot as one JSON line; the writer ends the
	// watch at its first line, as Ctrl-C would.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	w := &cancelOnWrite{cancel: cancel}
	if err := (&watchCmd{ID: inc.GetId(), For: time.Minute}).Run(ctx, admin, w); err != nil {
		t.Fatalf("watch: %v", err)
	}
	var snap sarv1.WatchIncidentResponse
	line := strings.TrimSuffix(w.String(), "\n")
	if err := protojson.Unmarshal([]byte(line), &snap); err != nil || strings.Contains(line, "\n") {
		t.Fatalf("watch printed %q, want one JSON line (%v)", w.String(), err)
	}
	if got := snap.GetSnapshot().GetIncident().GetId(); got != inc.GetId() {
		t.Errorf("watch snapshot incident = %q, want %q", got, inc.GetId())
	}

	closed := run(t, admin, &incidentCloseCmd{ID: inc.GetId(), Outcome: "found-alive"}, &sarv1.CloseIncidentResponse{}).GetIncident()
	if got := closed.GetOutcome(); got != sarv1.IncidentOutcome_INCIDENT_OUTCOME_FOUND_ALIVE {
		t.Errorf("incident close --outcome found-alive: outcome = %v, want INCIDENT_OUTCOME_FOUND_ALIVE", got)
	}
	list := run(t, admin, &incidentListCmd{State: "closed", Jurisdiction: "valley", PageSize: 50}, &sarv1.ListIncidentsResponse{})
	if n := len(list.GetIncidents()); n != 1 || list.GetIncidents()[0].GetId() != inc.GetId() {
		t.Errorf("incident list --state closed = %d incidents, want just %s", n, inc.GetId())
	}
}

func testBenchIngest(t *testing.T, s *server) {
	o := benchOptions{Addr: s.addr, Token: s.admin, Devices: 4, Batch: 10, Duration: 2 * time.Second,
		Inflight: 1, RedisURL: s.redis.URL(), Log: t.Output(), MetricsURL: "http://" + s.httpAddr + "/metrics", MetricsRequired: true}
	res, err := runBench(t.Context(), o)
	if err != nil {
		t.Fatalf("runBench: %v", err)
	}
	// sard's CPU per stored fix, read from its /metrics (see the JSON and
	// text output below).
	if res.CPUUsPerFix <= 0 || res.SardCPUS <= 0 {
		t.Errorf("runBench: cpu_us_per_fix, sard_cpu_s = %v, %v, want > 0", res.CPUUsPerFix, res.SardCPUS)
	}

	if res.Sent <= 0 || res.Stored != res.Sent {
		t.Errorf("runBench: stored, sent = %d, %d, want equal and > 0", res.Stored, res.Sent)
	}
	if res.Errors != 0 {
		t.Errorf("runBench: errors = %d, want 0; samples: %q", res.Errors, res.ErrorSamples)
	}
	if res.AckedBatches != res.Batches {
		t.Errorf("runBench: acked batches = %d, want %d", res.AckedBatches, res.Batches)
	}
	if res.LatencySamples == 0 || res.EventsMissing != 0 {
		t.Errorf("runBench: latency samples, events missing = %d, %d, want > 0, 0", res.LatencySamples, res.EventsMissing)
	}
	if !(res.P50Ms > 0 && res.P50Ms <= res.P99Ms && res.P99Ms <= res.MaxMs) {
		t.Errorf("runBench: p50, p99, max = %v, %v, %v ms, want 0 < p50 <= p99 <= max", res.P50Ms, res.P99Ms, res.MaxMs)
	}
	if res.FixesPerS <= 0 || res.FloorFixesPerS <= 0 || res.Ratio <= 0 {
		t.Errorf("runBench: fixes/s, floor, ratio = %v, %v, %v, want all > 0", res.FixesPerS, res.FloorFixesPerS, res.Ratio)
	}

	// The stored fixes are in the incident's cells, as the server counts them.
	cc, err := dial(tlsutil.Client{}, s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx := withToken(t.Context(), s.admin)
	cells, err := sarv1.NewLocationServiceClient(cc).ListCellVisits(ctx, &sarv1.ListCellVisitsRequest{IncidentId: res.IncidentID})
	if err != nil {
		t.Fatalf("ListCellVisits: %v", err)
	}
	var inCells int64
	for _, c := range cells.GetCells() {
		inCells += c.GetFixes()
	}
	if inCells != res.Stored {
		t.Errorf("ListCellVisits(bench incident): %d fixes in cells, want %d (stored)", inCells, res.Stored)
	}
	inc, err := sarv1.NewIncidentServiceClient(cc).GetIncident(ctx, &sarv1.GetIncidentRequest{IncidentId: res.IncidentID})
	if err != nil {
		t.Fatalf("GetIncident: %v", err)
	}
	if got := inc.GetIncident().GetState(); got != sarv1.IncidentState_INCIDENT_STATE_CLOSED {
		t.Errorf("bench incident state after the run = %v, want INCIDENT_STATE_CLOSED", got)
	}

	// The floor deleted its keys.
	opt, _ := redis.ParseURL(s.redis.URL())
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	left, _, err := rdb.Scan(t.Context(), 0, "bench:*", 10_000).Result()
	if err != nil || len(left) != 0 {
		t.Errorf("SCAN bench:* after the run = %q (%v), want no keys", left, err)
	}

	// --json: the last line is one JSON object with the figures.
	var out bytes.Buffer
	if err := res.write(&out, true); err != nil {
		t.Fatalf("write: %v", err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	var obj map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &obj); err != nil {
		t.Fatalf("last line %q: not JSON: %v", lines[len(lines)-1], err)
	}
	want := map[string]float64{"fixes_per_s": res.FixesPerS, "p50_ms": res.P50Ms, "p99_ms": res.P99Ms,
		"stored": float64(res.Stored), "sent": float64(res.Sent), "floor_fixes_per_s": res.FloorFixesPerS, "ratio": res.Ratio,
		"devices": 4, "batch": 10, "duration_s": res.DurationS, "errors": 0, "cpu_us_per_fix": res.CPUUsPerFix}
	for k, v := range want {
		if got, ok := obj[k].(float64); !ok || got != v {
			t.Errorf("JSON line[%q] = %v, want %v", k, obj[k], v)
		}
	}
	if got, _ := obj["cpu_us_per_fix"].(float64); got <= 0 {
		t.Errorf("JSON line[cpu_us_per_fix] = %v, want > 0", obj["cpu_us_per_fix"])
	}
	if !strings.Contains(out.String(), "  sard CPU ") || !strings.Contains(out.String(), "cpu_us_per_fix") {
		t.Errorf("text output has no sard CPU line with cpu_us_per_fix:\n%s", out.String())
	}
}

// --report: each batch is one ReportFixes call; every fix stored, every
// batch's event seen, and sard answered one call per batch.
func testBenchIngestReport(t *testing.T, s *server) {
	o := benchOptions{Addr: s.addr, Token: s.admin, Devices: 3, Batch: 10, Duration: time.Second, Inflight: 1, Report: true,
		Log: t.Output(), MetricsURL: "http://" + s.httpAddr + "/metrics", MetricsRequired: true}
	calls := func() float64 { return reportFixesAnswered(t, o.MetricsURL) }
	before := calls()
	res, err := runBench(t.Context(), o)
	if err != nil {
		t.Fatalf("runBench(--report): %v", err)
	}
	if res.Mode != "report" || res.Sent <= 0 || res.Stored != res.Sent || res.AckedBatches != res.Batches || res.Errors != 0 {
		t.Errorf("runBench(--report): mode %q, stored %d of %d sent, %d of %d batches acked, errors %d (%q); want report, all stored and acked, no errors",
			res.Mode, res.Stored, res.Sent, res.AckedBatches, res.Batches, res.Errors, res.ErrorSamples)
	}
	if res.LatencySamples == 0 || res.EventsMissing != 0 || res.CPUUsPerFix <= 0 {
		t.Errorf("runBench(--report): latency samples %d, events missing %d, cpu_us_per_fix %v; want > 0, 0, > 0",
			res.LatencySamples, res.EventsMissing, res.CPUUsPerFix)
	}
	if got := calls() - before; got != float64(res.Batches) {
		t.Errorf("sard answered %v ReportFixes calls with OK during the run, want one per batch (%d)", got, res.Batches)
	}
	o.Inflight = 2
	if _, err := runBench(t.Context(), o); err == nil || !strings.Contains(err.Error(), "--inflight") {
		t.Errorf("runBench(--report --inflight 2) = %v, want refused", err)
	}
}

// TestBenchIngestReportRateLimited: against sard's per-credential rate
// limit, which refuses a call where it makes a stream wait, --report
// devices send the refused batch again after a pause: every fix stored
// once, no sequence gap, no error.
func TestBenchIngestReportRateLimited(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Redis, NATS and sard")
	}
	s := startServer(t, func(c *app.Config) { c.RateLimit, c.RateBurst = 20, 5 })
	o := benchOptions{Addr: s.addr, Token: s.admin, Devices: 2, Batch: 10, Duration: 1500 * time.Millisecond, Inflight: 1,
		Report: true, Log: t.Output()}
	res, err := runBench(t.Context(), o)
	if err != nil {
		t.Fatalf("runBench(--report): %v", err)
	}
	// Unpaced, each device meets the limit (20 calls a second) within its
	// first quarter second.
	if res.Errors != 0 || res.Stored != res.Sent || res.AckedBatches != res.Batches || res.Batches < 2*20 {
		t.Errorf("--report against a limit of 20/s: %d batches (%d acked), %d of %d fixes stored, errors %d (%q); "+
			"want over 40 batches, all acked and stored, no errors", res.Batches, res.AckedBatches, res.Stored, res.Sent, res.Errors, res.ErrorSamples)
	}
}

func testBenchIngestPaced(t *testing.T, s *server) {
	const rate, dur = 200.0, 1500 * time.Millisecond
	// With a search plan: every batch also updates the grid's coverage.
	o := floorOptions(t, benchOptions{Addr: s.addr, Token: s.admin, Devices: 2, Batch: 10, Duration: dur, Rate: rate,
		Inflight: 2, Conns: 1, Plan: true, Keep: true, GRPCFloor: true})
	res, err := runBench(t.Context(), o)
	if err != nil {
		t.Fatalf("runBench: %v", err)
	}
	// One batch per device every 100 ms from a random phase: 280-300 fixes.
	want := rate * dur.Seconds()
	if lo, hi := int64(want/2), int64(want); res.Sent < lo || res.Sent > hi || res.Stored != res.Sent {
		t.Errorf("runBench(--rate %v, %v): stored, sent = %d, %d, want equal and in [%d, %d]", rate, dur, res.Stored, res.Sent, lo, hi)
	}
	if res.Errors != 0 || res.FloorFixesPerS != 0 || res.Ratio != 0 {
		t.Errorf("runBench: errors, floor, ratio = %d, %v, %v, want 0, 0, 0 (no --redis-url); samples: %q",
			res.Errors, res.FloorFixesPerS, res.Ratio, res.ErrorSamples)
	}
	// The gRPC floor ran paced as the run: once, both figures the same.
	if res.GRPCFloorFixesPerS <= 0 || res.GRPCFloorFixesPerS > rate*1.1 || res.GRPCFloorCPUUsPerFix <= 0 ||
		res.GRPCFloorCPUUsAtOurRate != res.GRPCFloorCPUUsPerFix {
		t.Errorf("runBench(--grpc-floor --rate %v): grpc_floor_fixes_per_s %v, grpc_floor_cpu_us_per_fix %v, at our rate %v; "+
			"want a rate up to the target and one CPU figure", rate, res.GRPCFloorFixesPerS, res.GRPCFloorCPUUsPerFix, res.GRPCFloorCPUUsAtOurRate)
	}
	ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+s.admin)
	conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	defer conn.Close()
	grid, err := sarv1.NewSearchServiceClient(conn).GetSearchGrid(ctx, &sarv1.GetSearchGridRequest{IncidentId: res.IncidentID})
	if err != nil {
		t.Fatalf("GetSearchGrid of the bench incident: %v", err)
	}
	// The run waited for the search work its batches made.
	if res.SearchDrainS < 0 || res.CoveredFixesPerS <= 0 || res.CoveredFixesPerS > res.FixesPerS ||
		grid.GetGrid().GetSearchWorkPending() != 0 {
		t.Errorf("bench with --plan: search_drain_s %v, covered_fixes_per_s %v (fixes_per_s %v), pending after the run %d; "+
			"want the drain measured, a covered rate up to the stored rate, nothing pending",
			res.SearchDrainS, res.CoveredFixesPerS, res.FixesPerS, grid.GetGrid().GetSearchWorkPending())
	}
	covered := 0
	for _, c := range grid.GetCells() {
		if c.GetCoverage() > 0 {
			covered++
		}
	}
	if covered == 0 {
		t.Errorf("bench with --plan: no cell has coverage, want the walks to sweep some")
	}
}

func testSearchCommands(t *testing.T, s *server) {
	admin := s.globals(s.admin)
	run(t, admin, &agencyCreateCmd{ID: "ridge-rescue", Name: "Ridge rescue", Kind: "volunteer-rescue", Jurisdiction: "ridge"},
		&sarv1.CreateAgencyResponse{})
	run(t, admin, &teamCreateCmd{Agency: "ridge-rescue", ID: "bravo", Name: "Bravo"}, &sarv1.CreateTeamResponse{})
	lat, lng := 46.6, 7.9
	inc := run(t, admin, &incidentCreateCmd{Title: "Climber overdue", Jurisdiction: "ridge", Lat: &lat, Lng: &lng,
		Agency: []string{"ridge-rescue"}, Category: "hiker", People: 1}, &sarv1.CreateIncidentResponse{}).GetIncident()
	id := inc.GetId()
	plan := run(t, admin, &searchPlanCmd{ID: id, Cut: 0.5, SweepWidth: map[string]float64{"dog": 60}}, &sarv1.SetSearchPlanResponse{}).GetGrid()
	if plan.GetProfile() != "hiker/temperate/mountainous" || plan.GetSweepWidthsM()["dog"] != 60 || plan.GetCellCount() == 0 {
		t.Errorf("search plan = %v, want a hiker grid with a dog sweep width", plan)
	}
	no := false
	widths := run(t, admin, &searchSettingsCmd{ID: id, SweepWidth: map[string]float64{"drone": 35}, MaxSpeed: map[string]float64{"drone": 20},
		FollowCaller: &no}, &sarv1.UpdateSearchSettingsResponse{}).GetGrid()
	if widths.GetSweepWidthsM()["drone"] != 35 || widths.GetSweepWidthsM()["dog"] != 60 || widths.GetMaxSpeedsMS()["drone"] != 20 ||
		widths.GetFollowCallerFixes() || widths.GetSeedVersion() != plan.GetSeedVersion() {
		t.Errorf("search settings --sweep-width drone=35 --max-speed drone=20 --no-follow-caller = %v, want them set without a re-seed", widths)
	}
	segs := run(t, admin, &searchSegmentsCmd{ID: id, Area: 2e6}, &sarv1.ListSegmentsResponse{})
	if len(segs.GetSegments()) < 2 || segs.GetTargetAreaM2() != 2e6 {
		t.Fatalf("search segments --area 2e6 = %d segments of %v m²", len(segs.GetSegments()), segs.GetTargetAreaM2())
	}
	sug := run(t, admin, &searchSuggestCmd{ID: id, Team: "ridge-rescue/bravo", Lat: &lat, Lng: &lng, Searchers: 4, Assign: true},
		&sarv1.SuggestNextTaskResponse{})
	if !sug.GetAssigned() || sug.GetSegment().GetAssignedTeam().GetTeamId() != "bravo" {
		t.Errorf("search suggest --assign = %v, want a segment assigned to bravo", sug)
	}
	seg := sug.GetSegment().GetId()
	cells := run(t, admin, &searchGridCmd{ID: id, Segment: seg}, &sarv1.GetSearchGridResponse{})
	if len(cells.GetCells()) != len(sug.GetSegment().GetCells()) || cells.GetSegment().GetId() != seg {
		t.Errorf("search grid --segment %d = %d cells, want the segment's %d", seg, len(cells.GetCells()), len(sug.GetSegment().GetCells()))
	}
	freed := run(t, admin, &searchAssignCmd{ID: id, Segment: seg}, &sarv1.AssignSegmentResponse{})
	if freed.GetSegment().GetAssignedTeam() != nil {
		t.Errorf("search assign without --team = %v, want the segment freed", freed.GetSegment())
	}
	clue := run(t, admin, &searchClueCmd{ID: id, Lat: 46.61, Lng: 7.9, Radius: 300, Weight: 5, Description: "glove"},
		&sarv1.RecordClueResponse{}).GetGrid()
	if clue.GetVersion() <= plan.GetVersion() {
		t.Errorf("search clue: version %d, want after %d", clue.GetVersion(), plan.GetVersion())
	}
	var b bytes.Buffer
	if err := (&searchExportCmd{ID: id, Format: "kml"}).Run(t.Context(), admin, &b); err != nil {
		t.Fatalf("search export: %v", err)
	}
	if !strings.Contains(b.String(), "<kml") || !strings.Contains(b.String(), "<Polygon>") {
		t.Errorf("search export --format kml printed %.200q, want KML polygons", b.String())
	}
	if err := (&searchSuggestCmd{ID: id, Lat: &lat}).Run(t.Context(), admin, &b); err == nil {
		t.Errorf("search suggest --lat without --lng: no error")
	}
}
