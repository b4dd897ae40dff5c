package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kong"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/tlsutil"
)

func TestBenchStreamsFlags(t *testing.T) {
	var cli CLI
	p, err := kong.New(&cli, kong.Name("sarctl"), kong.Vars{"version": "test"})
	if err != nil {
		t.Fatalf("kong.New: %v", err)
	}
	if _, err := p.Parse([]string{"bench", "streams", "--conns", "10"}); err != nil {
		t.Fatalf("Parse: %v", err)
	}
	c := cli.Bench.Streams
	if c.Devices != 5000 || c.Interval != 10*time.Second || c.Batch != 10 || c.Duration != 2*time.Minute || c.Conns != 10 {
		t.Errorf("bench streams defaults: devices %d, interval %v, batch %d, duration %v, conns %d; want 5000, 10s, 10, 2m, 10",
			c.Devices, c.Interval, c.Batch, c.Duration, c.Conns)
	}
	ok := streamsOptions{Token: "t", Devices: 1, Batch: 1, Interval: time.Second, Duration: time.Second, Sample: time.Second, Setup: 1, MetricsURL: "http://x/metrics"}
	if err := ok.check(); err != nil {
		t.Errorf("check(%+v) = %v, want nil", ok, err)
	}
	for name, bad := range map[string]func(*streamsOptions){
		"no token":                func(o *streamsOptions) { o.Token = "" },
		"duration below interval": func(o *streamsOptions) { o.Duration = o.Interval / 2 },
		"no metrics":              func(o *streamsOptions) { o.MetricsURL = "" },
		"no devices":              func(o *streamsOptions) { o.Devices = 0 },
		"negative conns":          func(o *streamsOptions) { o.Conns = -1 },
	} {
		o := ok
		bad(&o)
		if err := o.check(); err == nil {
			t.Errorf("check() with %s = nil, want an error", name)
		}
	}
}

// TestBenchStreams runs bench streams small against sard in-process (so
// the memory read is this test process's, sarctl's side included): every
// device opens its own connection and stream, sends, has every batch
// acknowledged and stored, and the memory readings cover the phases.
func TestBenchStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Redis, NATS and sard")
	}
	s := startServer(t)
	const devices = 12
	o := streamsOptions{Addr: s.addr, Token: s.admin, Devices: devices, Batch: 5, Interval: 200 * time.Millisecond,
		Duration: time.Second, Sample: 100 * time.Millisecond, Setup: 4, MetricsURL: "http://" + s.httpAddr + "/metrics", Log: t.Output()}
	res, err := runStreamsBench(t.Context(), o)
	if err != nil {
		t.Fatalf("runStreamsBench: %v", err)
	}
	if res.Streams != devices || res.Conns != devices || res.Mode != "stream" {
		t.Errorf("streams, connections, mode = %d, %d, %q, want %d each (one per device), stream", res.Streams, res.Conns, res.Mode, devices)
	}
	if res.Errors != 0 {
		t.Errorf("errors = %d, want 0; samples: %q", res.Errors, res.ErrorSamples)
	}
	// Every device sends within its first interval, which the hold exceeds.
	if res.Batches < devices || res.Acked != res.Batches || res.Stored != res.Sent || res.Sent != res.Batches*5 {
		t.Errorf("batches %d, acked %d, sent %d, stored %d: want at least %d batches, all acknowledged, 5 fixes each, all stored",
			res.Batches, res.Acked, res.Sent, res.Stored, devices)
	}
	if !(0 < res.AckP50Ms && res.AckP50Ms <= res.AckP99Ms && res.AckP99Ms <= res.AckMaxMs) {
		t.Errorf("ack latency p50, p99, max = %v, %v, %v, want 0 < p50 <= p99 <= max", res.AckP50Ms, res.AckP99Ms, res.AckMaxMs)
	}
	phases := map[string]bool{}
	for _, m := range res.Samples {
		phases[m.Phase] = true
	}
	for _, p := range []string{phaseBefore, phaseHold, phaseAfter} {
		if !phases[p] {
			t.Errorf("no memory reading in phase %q; readings: %+v", p, res.Samples)
		}
	}
	if res.Before.RSSMiB <= 0 || res.Plateau.RSSMiB <= 0 || res.Peak.RSSMiB < res.Plateau.RSSMiB || res.After.RSSMiB <= 0 {
		t.Errorf("rss before %v, plateau %v, peak %v, after %v MiB: want all read and peak >= plateau",
			res.Before.RSSMiB, res.Plateau.RSSMiB, res.Peak.RSSMiB, res.After.RSSMiB)
	}
	if res.HoldCPUS <= 0 || res.CPUMsPerBatch <= 0 || res.Plateau.CPUS <= 0 {
		t.Errorf("hold CPU %v s, %v ms per batch, plateau cpu_s %v: want sard's CPU read", res.HoldCPUS, res.CPUMsPerBatch, res.Plateau.CPUS)
	}
	if res.Plateau.Phase != phaseHold {
		t.Errorf("plateau reading from phase %q, want %q", res.Plateau.Phase, phaseHold)
	}
	// sard and the devices share this process: each connection is two
	// open files, and each open stream holds goroutines on both sides.
	if res.Plateau.OpenFDs < res.Before.OpenFDs+2*devices || res.Plateau.Goroutines < res.Before.Goroutines+2*devices {
		t.Errorf("open files %v -> %v, goroutines %v -> %v: want the %d connections and streams seen",
			res.Before.OpenFDs, res.Plateau.OpenFDs, res.Before.Goroutines, res.Plateau.Goroutines, devices)
	}

	// The bench incident is closed.
	g := s.globals(s.admin)
	inc := run(t, g, &incidentGetCmd{ID: res.IncidentID}, &sarv1.GetIncidentResponse{}).GetIncident()
	if inc.GetState() != sarv1.IncidentState_INCIDENT_STATE_CLOSED {
		t.Errorf("bench incident state after the run = %v, want INCIDENT_STATE_CLOSED", inc.GetState())
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
	for k, v := range map[string]float64{"devices": devices, "streams": devices, "plateau_rss_mib": res.PlateauRSSMiB,
		"peak_rss_mib": res.PeakRSSMiB, "per_stream_kib": res.PerStreamKiB, "ack_p99_ms": res.AckP99Ms, "hold_cpu_s": res.HoldCPUS,
		"errors": 0} {
		if got, ok := obj[k].(float64); !ok || got != v {
			t.Errorf("JSON line[%q] = %v, want %v", k, obj[k], v)
		}
	}
	if !strings.Contains(out.String(), "plateau") || !strings.Contains(out.String(), "per stream") {
		t.Errorf("text output has no plateau or per-stream line:\n%s", out.String())
	}

	// Devices sharing connections: --conns 3 opens three.
	o.Conns, o.Devices, o.Duration = 3, 6, 400*time.Millisecond
	res, err = runStreamsBench(t.Context(), o)
	if err != nil {
		t.Fatalf("runStreamsBench(--conns 3): %v", err)
	}
	if res.Conns != 3 || res.Streams != 6 || res.Errors != 0 || res.Acked != res.Batches || res.Batches < 6 {
		t.Errorf("--conns 3, 6 devices: connections %d, streams %d, errors %d, batches %d acked %d; want 3, 6, 0, at least 6 all acked",
			res.Conns, res.Streams, res.Errors, res.Batches, res.Acked)
	}

	// --report: no stream; each batch is one ReportFixes call, all stored.
	calls := func() float64 { return reportFixesAnswered(t, o.MetricsURL) }
	callsBefore := calls()
	o.Conns, o.Devices, o.Duration, o.Report = 0, 6, 400*time.Millisecond, true
	res, err = runStreamsBench(t.Context(), o)
	if err != nil {
		t.Fatalf("runStreamsBench(--report): %v", err)
	}
	if res.Mode != "report" || res.Conns != 6 || res.Errors != 0 || res.Batches < 6 || res.Acked != res.Batches || res.Stored != res.Sent {
		t.Errorf("--report, 6 devices: mode %q, connections %d, errors %d, batches %d acked %d, fixes sent %d stored %d; "+
			"want report, 6, 0, at least 6 all acked, all stored", res.Mode, res.Conns, res.Errors, res.Batches, res.Acked, res.Sent, res.Stored)
	}
	if got := calls() - callsBefore; got != float64(res.Batches) {
		t.Errorf("sard answered %v ReportFixes calls with OK during the --report run, want one per batch (%d)", got, res.Batches)
	}
}

// reportFixesAnswered is how many ReportFixes calls sard answered OK, from
// its /metrics page.
func reportFixesAnswered(t *testing.T, page string) float64 {
	t.Helper()
	const handled = `grpc_server_handled_total{grpc_code="OK",grpc_method="ReportFixes",grpc_service="sar.v1.LocationService",grpc_type="unary"}`
	m, err := scrapeMetrics(t.Context(), tlsutil.Client{}, page, handled)
	if err != nil {
		t.Fatalf("read sard's metrics: %v", err)
	}
	return m[handled]
}
