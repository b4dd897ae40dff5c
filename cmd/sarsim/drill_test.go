package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kong"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/app"
	"github.com/mountain-sar/sar/internal/auth"
	"github.com/mountain-sar/sar/internal/testenv"
)

func TestParseFlags(t *testing.T) {
	t.Setenv("SAR_GRPC_ADDR", "10.0.0.1:7000")
	t.Setenv("SAR_HTTP_ADDR", "10.0.0.1:7080")
	t.Setenv("SAR_TOKEN", "tok")
	t.Setenv("SARSIM_TEAMS", "5")
	var cli CLI
	p, err := kong.New(&cli, kong.Name("sarsim"), kong.Vars{"version": "test"})
	if err != nil {
		t.Fatalf("kong.New: %v", err)
	}
	if _, err := p.Parse([]string{"drill", "--speedup", "20", "--close"}); err != nil {
		t.Fatalf("Parse: %v", err)
	}
	dr := cli.Drill
	checks := []struct {
		name      string
		got, want any
	}{
		{"addr", cli.Addr, "10.0.0.1:7000"},
		{"http-addr", cli.HTTPAddr, "10.0.0.1:7080"},
		{"token", cli.Token, "tok"},
		{"teams", dr.Teams, 5},
		{"rescuers-per-team", dr.RescuersPerTeam, 2},
		{"speedup", dr.Speedup, 20.0},
		{"duration", dr.Duration, 2 * time.Minute},
		{"fix-interval", dr.FixInterval, time.Second},
		{"batch-interval", dr.BatchInterval, 10 * time.Second},
		{"lat", dr.Lat, 46.5935},
		{"jurisdiction", dr.Jurisdiction, "local"},
		{"close", dr.Close, true},
		{"fix-call", dr.FixCall, "report"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("flag %s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestOptionsChecked(t *testing.T) {
	good := drillOptions{Token: "t", Teams: 1, RescuersPerTeam: 1, Duration: time.Second, Speedup: 1,
		FixInterval: time.Second, BatchInterval: 10 * time.Second, Lat: 46, Lng: 7, CallerAccuracy: 10}
	if err := good.check(); err != nil {
		t.Fatalf("check(%+v) = %v", good, err)
	}
	for name, bad := range map[string]func(*drillOptions){
		"no token":          func(o *drillOptions) { o.Token = "" },
		"speedup 0":         func(o *drillOptions) { o.Speedup = 0 },
		"speedup 1000":      func(o *drillOptions) { o.Speedup = 1000 },
		"batch > 500 fixes": func(o *drillOptions) { o.FixInterval, o.BatchInterval = 100*time.Millisecond, time.Minute },
		"0,0":               func(o *drillOptions) { o.Lat, o.Lng = 0, 0 },
		"flaky 1":           func(o *drillOptions) { o.Flaky = 1 },
		"fix-call carrier":  func(o *drillOptions) { o.FixCall = "carrier pigeon" },
	} {
		o := good
		bad(&o)
		if err := o.check(); err == nil {
			t.Errorf("%s: check passed", name)
		}
	}
}

// TestDrillAgainstServer plays a short drill, much faster than real time,
// against sard in-process on real Redis and NATS, and checks through the
// API what it left: the incident with its agencies, a participant for the
// caller and for every rescuer, every fix made stored exactly once, a
// segment assigned to every team, the caller's last position, coverage,
// and the incident closed; with the phones sending a ReportFixes call per
// batch (the default, as the rescuer app does), and on StreamFixes streams.
func TestDrillAgainstServer(t *testing.T) {
	t.Run("ReportFixes", func(t *testing.T) { testDrill(t, "report") })
	t.Run("StreamFixes", func(t *testing.T) { testDrill(t, "stream") })
}

func testDrill(t *testing.T, fixCall string) {
	rdb, broker := testenv.StartRedis(t), testenv.StartNATS(t)
	admin, _, _ := auth.NewToken()
	cfg := app.Defaults()
	cfg.GRPCAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.RedisURL, cfg.NATSURL, cfg.AdminToken = rdb.URL(), broker.URL(), admin
	cfg.ShutdownTimeout = 5 * time.Second // sard's default rate limit: the drill must live with it
	a, err := app.Start(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("app.Start: %v", err)
	}
	t.Cleanup(func() { _ = a.Close() })

	const teams, perTeam = 3, 2
	var log bytes.Buffer
	o := drillOptions{Addr: a.GRPCAddr(), HTTPAddr: a.HTTPAddr(), Token: admin, Timeout: 10 * time.Second,
		Jurisdiction: "valley", Teams: teams, RescuersPerTeam: perTeam, Duration: 4 * time.Second, Speedup: 150,
		FixInterval: time.Second, BatchInterval: 10 * time.Second, Seed: 3, Lat: 46.5935, Lng: 7.9091,
		CallerAccuracy: 600, CallerFor: 3 * time.Minute, Flaky: 0.1, FixCall: fixCall, Close: true, Log: &log}
	// sard's answers to the phones' batches by each call, from its /metrics.
	const reported = `grpc_server_handled_total{grpc_code="OK",grpc_method="ReportFixes",grpc_service="sar.v1.LocationService",grpc_type="unary"}`
	const streamed = `grpc_server_msg_sent_total{grpc_method="StreamFixes",grpc_service="sar.v1.LocationService",grpc_type="bidi_stream"}`
	metrics := "http://" + a.HTTPAddr() + "/metrics"
	chosen, other := reported, streamed
	if fixCall == "stream" {
		chosen, other = streamed, reported
	}
	before, otherBefore := scrapeMetric(t, metrics, chosen), scrapeMetric(t, metrics, other)
	res, err := runDrill(t.Context(), o)
	if err != nil {
		t.Fatalf("runDrill: %v\n%s", err, log.String())
	}
	var out bytes.Buffer
	if err := res.write(&out, true); err != nil {
		t.Fatal(err)
	}
	t.Logf("setup and progress:\n%s\nsummary:\n%s", log.String(), out.String())
	if len(res.ErrorSamples) > 0 {
		t.Errorf("errors during the drill: %q", res.ErrorSamples)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var decoded drillResult
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &decoded); err != nil || decoded.IncidentID != res.IncidentID {
		t.Errorf("--json line %q: %v; want the result", lines[len(lines)-1], err)
	}

	conn, err := grpc.NewClient(a.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := withToken(t.Context(), admin)
	incs, loc, search := sarv1.NewIncidentServiceClient(conn), sarv1.NewLocationServiceClient(conn), sarv1.NewSearchServiceClient(conn)

	inc, err := incs.GetIncident(ctx, &sarv1.GetIncidentRequest{IncidentId: res.IncidentID})
	if err != nil {
		t.Fatalf("GetIncident(%q): %v", res.IncidentID, err)
	}
	if got := inc.GetIncident(); got.GetJurisdiction() != "valley" || got.GetState() != sarv1.IncidentState_INCIDENT_STATE_CLOSED ||
		got.GetSubject().GetCategory() != sarv1.SubjectCategory_SUBJECT_CATEGORY_HIKER ||
		strings.Join(got.GetAgencyIds(), ",") != "valley-firebrigade,valley-police,valley-volunteers" &&
			strings.Join(got.GetAgencyIds(), ",") != "valley-police,valley-volunteers,valley-firebrigade" {
		t.Errorf("incident = %v; want a closed hiker incident of jurisdiction valley with the police, volunteers and fire brigade", got)
	}

	parts, err := incs.ListParticipants(ctx, &sarv1.ListParticipantsRequest{IncidentId: res.IncidentID})
	if err != nil {
		t.Fatalf("ListParticipants: %v", err)
	}
	var callers, rescuers int
	var trackFixes int64
	teamsSeen := map[string]int{}
	for _, p := range parts.GetParticipants() {
		switch p.GetKind() {
		case sarv1.ParticipantKind_PARTICIPANT_KIND_CALLER:
			callers++
			lf := p.GetLastFix()
			if lf == nil || lf.GetSource() != sarv1.FixSource_FIX_SOURCE_BROWSER || lf.GetHorizontalAccuracyM() > 1.1*600 {
				t.Errorf("caller's last fix = %v, want a browser fix of about 600 m accuracy", lf)
			}
		case sarv1.ParticipantKind_PARTICIPANT_KIND_RESCUER:
			rescuers++
			teamsSeen[p.GetAgencyId()+"/"+p.GetTeamId()]++
			if p.GetLastFix() == nil {
				t.Errorf("rescuer %s has no last position", p.GetDisplayName())
			}
		}
		tr, err := loc.GetTrack(ctx, &sarv1.GetTrackRequest{IncidentId: res.IncidentID, ParticipantId: p.GetId()})
		if err != nil {
			t.Fatalf("GetTrack(%s): %v", p.GetId(), err)
		}
		if len(tr.GetFixes()) == 0 {
			t.Errorf("participant %s (%v) has an empty track", p.GetDisplayName(), p.GetKind())
		}
		if p.GetKind() == sarv1.ParticipantKind_PARTICIPANT_KIND_RESCUER {
			trackFixes += int64(len(tr.GetFixes()))
		}
	}
	if callers != 1 || rescuers != teams*perTeam || len(teamsSeen) != teams {
		t.Errorf("participants: %d callers, %d rescuers in teams %v; want 1 caller and %d rescuers in %d teams",
			callers, rescuers, teamsSeen, teams*perTeam, teams)
	}

	// 10 minutes of search: ~600 fixes per phone, every one stored once.
	r := res.Rescuers
	if r.Devices != teams*perTeam || r.Sent < int64(teams*perTeam*500) {
		t.Errorf("rescuers' counts %+v: want %d devices with ~600 fixes each", r, teams*perTeam)
	}
	if r.Rejected != 0 || r.Unacked != 0 || r.Problems != 0 {
		t.Errorf("rescuers' counts %+v: want nothing rejected, refused or left unacknowledged", r)
	}
	if trackFixes != r.Sent {
		t.Errorf("rescuers' tracks hold %d fixes, want the %d sent (each stored once)", trackFixes, r.Sent)
	}
	if r.Stored+r.Duplicates < r.Sent || r.Stored > r.Sent {
		t.Errorf("acks: %d stored + %d duplicates for %d fixes sent: some fix was never acknowledged, or stored twice", r.Stored, r.Duplicates, r.Sent)
	}
	if r.Reconnects == 0 {
		t.Errorf("no reconnects with --flaky 0.1 over %d batches: the resend path was not exercised", r.Batches)
	}
	if got := scrapeMetric(t, metrics, chosen) - before; got < float64(r.Batches)/2 {
		t.Errorf("sard answered %v batches by --fix-call %s, want most of the %d the phones sent that way", got, fixCall, r.Batches)
	}
	// The caller's posts go to ReportFixes through the gateway.
	var callerPosts float64
	if fixCall == "stream" && res.Caller != nil {
		callerPosts = float64(res.Caller.Batches)
	}
	if got := scrapeMetric(t, metrics, other) - otherBefore; got > callerPosts {
		t.Errorf("sard answered %v batches the other way than --fix-call %s, want none from the rescuers (the caller posted %v)", got, fixCall, callerPosts)
	}
	c := res.Caller
	if c == nil || c.Sent != 19 || c.Stored != c.Sent || c.Unacked != 0 { // a fix every 10 s for 3 minutes, and the first
		t.Errorf("caller's counts %+v, want 19 fixes sent and stored", c)
	}
	if res.ServerFixes != r.Sent+c.Sent {
		t.Errorf("cell visits count %d fixes, want %d", res.ServerFixes, r.Sent+c.Sent)
	}

	segs, err := search.ListSegments(ctx, &sarv1.ListSegmentsRequest{IncidentId: res.IncidentID})
	if err != nil {
		t.Fatalf("ListSegments: %v", err)
	}
	assigned := map[string][]int32{}
	for _, s := range segs.GetSegments() {
		if at := s.GetAssignedTeam(); at.GetAgencyId() != "" {
			assigned[at.GetAgencyId()+"/"+at.GetTeamId()] = append(assigned[at.GetAgencyId()+"/"+at.GetTeamId()], s.GetId())
		}
	}
	for _, tr := range res.Teams {
		if len(tr.Segments) == 0 || len(assigned[tr.Ref]) != len(tr.Segments) {
			t.Errorf("team %s: drill says segments %v, server has %v assigned to it", tr.Ref, tr.Segments, assigned[tr.Ref])
		}
	}
	if g := segs.GetGrid(); g.GetProfile() != "fix" || g.GetProbabilityOfSuccess() <= 0 || res.POS != g.GetProbabilityOfSuccess() {
		t.Errorf("grid %v (summary POS %v): want one seeded from the caller's fix, with some probability of success from the sweeps", g, res.POS)
	}
}

// scrapeMetric reads one sample, named as the page prints it (labels
// included), from a Prometheus text page.
func scrapeMetric(t *testing.T, url, name string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %q: %v", name, v, err)
			}
			return f
		}
	}
	t.Fatalf("%s not on %s (%v)", name, url, sc.Err())
	return 0
}
