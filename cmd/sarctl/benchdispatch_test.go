package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kong"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mountain-sar/sar/dispatch"
	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/tlsutil"
)

func TestParseDispatchFlags(t *testing.T) {
	t.Setenv("SAR_BENCH_NATS_URL", "nats://10.0.0.1:4222")
	var cli CLI
	p, err := kong.New(&cli, kong.Name("sarctl"), kong.Vars{"version": "test"})
	if err != nil {
		t.Fatalf("kong.New: %v", err)
	}
	if _, err := p.Parse([]string{"bench", "dispatch", "--rounds", "3"}); err != nil {
		t.Fatalf("Parse: %v", err)
	}
	d := cli.Bench.Dispatch
	checks := []struct {
		name      string
		got, want any
	}{
		{"nats-url", d.NATSURL, "nats://10.0.0.1:4222"},
		{"rounds", d.Rounds, 3},
		{"agencies", d.Agencies, 4},
		{"teams", d.Teams, 100},
		{"devices", d.Devices, 1},
		{"escalations", d.Escalations, 1000},
		{"answer-within", d.AnswerWithin, time.Second},
		{"kind", d.Kind, "stand-by"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("flag %s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func testBenchDispatch(t *testing.T, s *server) {
	o := dispatchOptions{Addr: s.addr, Token: s.admin, NATSURL: s.natsURL, MetricsURL: "http://" + s.httpAddr + "/metrics",
		Agencies: 3, Teams: 6, Devices: 2, Rounds: 2, Concurrency: 4, Kind: "go-to-point", Wait: 10 * time.Second,
		Escalations: 20, AnswerWithin: time.Second, Log: t.Output()}
	res, err := runDispatchBench(t.Context(), o)
	if err != nil {
		t.Fatalf("runDispatchBench: %v", err)
	}
	var out bytes.Buffer
	if err := res.write(&out, true); err != nil {
		t.Fatalf("write: %v", err)
	}
	t.Logf("result:\n%s", out.String())

	const tasks = 6 * 2
	counts := []struct {
		name      string
		got, want int64
	}{
		{"tasks", res.Tasks, tasks},
		{"create errors", res.CreateErrors, 0},
		{"consumer expected", res.ConsumerExpected, tasks},
		{"consumer delivered", res.ConsumerDelivered, tasks},
		{"consumer missing", res.ConsumerMissing, 0},
		{"consumer duplicates", res.ConsumerDuplicates, 0},
		{"device expected", res.DeviceExpected, tasks * 2},
		{"device delivered", res.DeviceDelivered, tasks * 2},
		{"device missing", res.DeviceMissing, 0},
		{"device duplicates", res.DeviceDuplicates, 0},
		{"stream errors", res.StreamErrors, 0},
		{"escalation offers created", res.EscCreated, 20},
		{"escalated", res.Escalated, 20},
		{"escalations missing", res.EscMissing, 0},
		{"escalation duplicates", res.EscDuplicates, 0},
		{"escalations unexpected", res.EscUnexpected, 0},
		{"lapsed metric delta", int64(res.LapsedMetricDelta), 20},
		{"ListTasks unanswered", int64(res.ListUnanswered), 20},
		{"ListTasks offered", int64(res.ListOffered), 0},
		{"errors", res.Errors, 0},
	}
	for _, c := range counts {
		if c.got != c.want {
			t.Errorf("bench dispatch: %s = %d, want %d", c.name, c.got, c.want)
		}
	}
	if len(res.ErrorSamples) > 0 {
		t.Errorf("bench dispatch: error samples %q", res.ErrorSamples)
	}
	for _, l := range []struct {
		name          string
		p50, p99, max float64
	}{
		{"create", res.CreateP50Ms, res.CreateP99Ms, res.CreateMaxMs},
		{"create->consumer", res.ConsumerP50Ms, res.ConsumerP99Ms, res.ConsumerMaxMs},
		{"create->device", res.DeviceP50Ms, res.DeviceP99Ms, res.DeviceMaxMs},
		{"deadline->escalated", res.EscLagP50Ms, res.EscLagP99Ms, res.EscLagMaxMs},
	} {
		if !(l.p50 > 0 && l.p50 <= l.p99 && l.p99 <= l.max) {
			t.Errorf("bench dispatch: %s p50, p99, max = %v, %v, %v ms, want 0 < p50 <= p99 <= max", l.name, l.p50, l.p99, l.max)
		}
	}
	// Escalations come within a sweep interval (500 ms) of the deadline,
	// plus the sweep's own time.
	if res.EscalationsPerS <= 0 || res.EscSweeps < 1 || res.EscLagMaxMs > 5000 {
		t.Errorf("bench dispatch: escalations/s, sweeps, lag max = %v, %d, %v ms, want > 0, >= 1, <= 5000",
			res.EscalationsPerS, res.EscSweeps, res.EscLagMaxMs)
	}
	if res.SardCPUS <= 0 {
		t.Errorf("bench dispatch: sard CPU = %v s, want > 0 (read from /metrics)", res.SardCPUS)
	}

	// Both incidents are closed, and the consumers deleted.
	cc, err := dial(tlsutil.Client{}, s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx := withToken(t.Context(), s.admin)
	for _, id := range []string{res.IncidentID, res.EscalationIncidentID} {
		inc, err := sarv1.NewIncidentServiceClient(cc).GetIncident(ctx, &sarv1.GetIncidentRequest{IncidentId: id})
		if err != nil {
			t.Fatalf("GetIncident(%s): %v", id, err)
		}
		if got := inc.GetIncident().GetState(); got != sarv1.IncidentState_INCIDENT_STATE_CLOSED {
			t.Errorf("bench incident %s after the run: state %v, want closed", id, got)
		}
	}
	nc, err := nats.Connect(s.natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	stream, err := js.Stream(t.Context(), dispatch.StreamName)
	if err != nil {
		t.Fatalf("stream %s: %v", dispatch.StreamName, err)
	}
	names := stream.ConsumerNames(t.Context())
	for name := range names.Name() {
		if strings.HasPrefix(name, "bench-") {
			t.Errorf("consumer %s left after the run", name)
		}
	}
	if err := names.Err(); err != nil {
		t.Errorf("consumer names: %v", err)
	}

	// --json: the last line is one JSON object with the figures.
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	var obj map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &obj); err != nil {
		t.Fatalf("last line %q: not JSON: %v", lines[len(lines)-1], err)
	}
	for k, v := range map[string]float64{"tasks": tasks, "consumer_missing": 0, "device_duplicates": 0, "escalated": 20,
		"consumer_p99_ms": res.ConsumerP99Ms, "escalations_per_s": res.EscalationsPerS, "errors": 0} {
		if got, ok := obj[k].(float64); !ok || got != v {
			t.Errorf("JSON line[%q] = %v, want %v", k, obj[k], v)
		}
	}

	// sard says so when it does not allow the answer time.
	o.AnswerWithin, o.Teams, o.Agencies, o.Rounds, o.Devices = 500*time.Millisecond, 1, 1, 1, 1
	if _, err := runDispatchBench(t.Context(), o); err == nil || !strings.Contains(err.Error(), "--min-answer-within") ||
		!strings.Contains(err.Error(), "answer_within must be from 1s") {
		t.Errorf("runDispatchBench(--answer-within 500ms) = %v, want an error that names sard's --min-answer-within", err)
	}
}
