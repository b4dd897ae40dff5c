package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/tlsutil"
)

type benchCmd struct {
	Ingest   benchIngestCmd   `cmd:"" help:"Drive simulated rescuer devices over gRPC against a running sard (on real Redis and NATS) and report fixes/s and ingest-to-event latency."`
	Dispatch benchDispatchCmd `cmd:"" help:"Create tasks for many teams against a running sard (on real Redis and NATS) and time their delivery to each team's JetStream consumer and StreamTasks devices; then time the escalation of lapsed offers."`
	Streams  benchStreamsCmd  `cmd:"" help:"Hold many device streams open against a running sard (one connection per device, a small batch every --interval from each) and report sard's resident memory (before, plateau, peak, after) and the batch-to-ack latency."`
	// The child process of bench ingest --grpc-floor.
	GRPCFloorServer grpcFloorServerCmd `cmd:"" name:"grpc-floor-server" hidden:"" help:"Serve a bare LocationService that acknowledges every fix as stored, until standard input ends (the server of bench ingest --grpc-floor)."`
}

type benchIngestCmd struct {
	Devices   int           `default:"100" help:"Simulated rescuer devices; each gets its own rescuer credential (the rate limit is per credential), joins the bench incident and sends on its own StreamFixes stream (or, with --report, ReportFixes calls)."`
	Batch     int           `default:"10" help:"Fixes per batch (1-500)."`
	Duration  time.Duration `default:"20s" help:"How long the devices send; then they stop, wait for their acks, close their streams, and the run ends."`
	Rate      float64       `default:"0" help:"Target total fixes per second over all devices, paced by a ticker per device (ticks are skipped, not queued, when the server falls behind); 0 sends as fast as acknowledgements allow."`
	Inflight  int           `default:"1" help:"Unacknowledged batches allowed per stream."`
	Report    bool          `help:"Devices send each batch as one ReportFixes call on their connection, waiting for its answer, instead of on a StreamFixes stream (--inflight 1)."`
	Conns     int           `default:"0" help:"gRPC connections the devices share; 0 gives each device its own connection, like real phones."`
	Addrs     []string      `name:"addrs" env:"SAR_BENCH_ADDRS" sep:"," placeholder:"ADDR,..." help:"gRPC addresses of several sard replicas (of one Redis and NATS), comma-separated: devices and their connections are spread over them round-robin; setup and the watcher use the first. Default: --addr alone. Give --metrics-url one page per replica to read their CPU."`
	RedisURL  string        `name:"redis-url" env:"SAR_BENCH_REDIS_URL" help:"Redis the server writes to. If given, also measure the floor: the same fixes written straight to Redis by as many goroutines, in one pipeline per batch of the commands the server's ingest script writes (no Lua, validation, gRPC or NATS), under keys 'bench:{<run>}:*' that are deleted afterwards."`
	JSON      bool          `name:"json" help:"Print the result as one JSON object on the last line of stdout."`
	Keep      bool          `help:"Leave the bench incident open (by default it is closed as a false alarm after the run)."`
	Plan      bool          `help:"Seed a search plan (a 95 % hiker grid) on the bench incident first, so every batch also updates the search grid's coverage."`
	GRPCFloor bool          `name:"grpc-floor" help:"Also measure the gRPC floor: the same devices and batches against a bare gRPC server in a child process that only decodes and acknowledges them (plaintext, no authorization, validation, H3, Redis or NATS), paced as this run, and again paced at the rate this run reached if it was unpaced; reports its fixes/s and CPU microseconds per fix, the least sard's cpu_us_per_fix could be."`
	Quiet     bool          `help:"No setup and progress lines on stderr."`
	HTTPAddr  string        `name:"http-addr" env:"SAR_HTTP_ADDR" default:"127.0.0.1:8080" help:"sard's HTTP address (its --http-addr): the default --metrics-url is http(s)://<http-addr>/metrics (https unless loopback, as for --addr)."`
	// MetricsURL, when given, must answer; the default derived from
	// HTTPAddr may not (then the CPU cost is reported as not read).
	MetricsURL string `name:"metrics-url" env:"SAR_BENCH_METRICS_URL" help:"sard's Prometheus page: its process_cpu_seconds_total is read before and after the run, for cpu_us_per_fix (sard's CPU microseconds per stored fix). With --addrs, one page per replica, comma-separated: their CPU is summed. Default: derived from --http-addr (one sard only)."`
}

func (c *benchIngestCmd) Run(ctx context.Context, g *Globals, w io.Writer) error {
	log := progressLog(c.Quiet)
	metrics, required := c.MetricsURL, c.MetricsURL != ""
	if metrics == "" && len(c.Addrs) > 1 {
		fmt.Fprintln(log, "bench: several --addrs and no --metrics-url: sard's CPU is not read (give one /metrics page per replica)")
	} else if metrics == "" {
		var err error
		if metrics, err = g.metricsURL(c.HTTPAddr); err != nil {
			return err
		}
	}
	res, err := runBench(ctx, benchOptions{Addr: g.Addr, Addrs: c.Addrs, Token: g.Token, TLS: g.Client(), Devices: c.Devices, Batch: c.Batch,
		Duration: c.Duration, Rate: c.Rate, Inflight: c.Inflight, Report: c.Report, Conns: c.Conns, RedisURL: c.RedisURL, Keep: c.Keep, Plan: c.Plan, Log: log,
		MetricsURL: metrics, MetricsRequired: required, GRPCFloor: c.GRPCFloor})
	if err != nil {
		if res != nil { // the run itself was measured; a floor failed after it
			_ = res.write(w, c.JSON)
		}
		return err
	}
	return report(w, c.JSON, res, res.Errors)
}

// benchOptions configures one bench run.
type benchOptions struct {
	Addr, Token string
	Addrs       []string // several replicas: devices spread round-robin (setup on the first); empty: Addr
	TLS         tlsutil.Client
	Devices     int
	Batch       int
	Duration    time.Duration
	Rate        float64 // total fixes/s; 0: as fast as possible
	Inflight    int
	Report      bool   // ReportFixes calls instead of a stream
	Conns       int    // 0: one per device
	RedisURL    string // "": no floor
	Keep        bool
	Plan        bool // seed a search grid first
	GRPCFloor   bool // also measure the gRPC floor
	// FloorCommand starts the floor's server (with the arguments "bench
	// grpc-floor-server" appended), in an environment with FloorEnv
	// added; empty: this executable.
	FloorCommand, FloorEnv []string
	Log                    io.Writer // setup and progress lines
	// MetricsURL is sard's /metrics, or comma-separated those of the
	// replicas, summed ("": CPU not measured); with MetricsRequired a
	// failed read fails the run, else it is logged.
	MetricsURL      string
	MetricsRequired bool
}

func (o benchOptions) check() error {
	switch {
	case o.Token == "":
		return errors.New("bench: an admin --token is required (SAR_TOKEN)")
	case o.Devices < 1 || o.Devices > 10_000:
		return errors.New("bench: --devices must be from 1 to 10000")
	case o.Batch < 1 || o.Batch > 500:
		return errors.New("bench: --batch must be from 1 to 500")
	case o.Duration <= 0 || o.Duration > time.Hour:
		return errors.New("bench: --duration must be more than 0 and at most 1h")
	case o.Rate < 0 || math.IsNaN(o.Rate) || math.IsInf(o.Rate, 0):
		return errors.New("bench: --rate must be 0 or more")
	case o.Inflight < 1 || o.Inflight > 1000:
		return errors.New("bench: --inflight must be from 1 to 1000")
	case o.Report && o.Inflight != 1:
		return errors.New("bench: --report sends one call at a time per device: --inflight must be 1")
	case o.Conns < 0:
		return errors.New("bench: --conns must be 0 or more")
	case o.Conns > 0 && o.Conns < len(o.Addrs):
		return errors.New("bench: --conns must be at least the number of --addrs, so that every replica gets devices")
	}
	for _, a := range o.Addrs {
		if strings.TrimSpace(a) == "" {
			return errors.New("bench: --addrs has an empty address")
		}
	}
	return nil
}

// benchResult is what a run measured. Latencies are in milliseconds.
type benchResult struct {
	IncidentID     string   `json:"incident_id"`
	Devices        int      `json:"devices"`
	Batch          int      `json:"batch"`
	Inflight       int      `json:"inflight"`
	Mode           string   `json:"mode"` // "stream" (StreamFixes) or "report" (a ReportFixes call per batch)
	Conns          int      `json:"conns"`
	Replicas       int      `json:"replicas"` // sard addresses the devices were spread over
	RateTarget     float64  `json:"rate_target"`
	DurationS      float64  `json:"duration_s"` // from the first send to the last device's end of stream
	Sent           int64    `json:"sent"`       // fixes sent
	Stored         int64    `json:"stored"`     // fixes the acks name as stored
	Batches        int64    `json:"batches"`
	AckedBatches   int64    `json:"acked_batches"`
	FixesPerS      float64  `json:"fixes_per_s"` // stored / duration_s
	P50Ms          float64  `json:"p50_ms"`      // ingest to event: event received - batch sent
	P90Ms          float64  `json:"p90_ms"`
	P99Ms          float64  `json:"p99_ms"`
	MaxMs          float64  `json:"max_ms"`
	LatencySamples int      `json:"latency_samples"`
	EventsMissing  int64    `json:"events_missing"` // stored batches whose event never reached the watcher
	AckP50Ms       float64  `json:"ack_p50_ms"`     // batch sent to its ack received
	AckP99Ms       float64  `json:"ack_p99_ms"`
	Rejected       int64    `json:"rejected"`
	Duplicates     int64    `json:"duplicates"`
	Problems       int64    `json:"problems"`      // batches refused whole
	StreamErrors   int64    `json:"stream_errors"` // broken streams and protocol surprises
	Unacked        int64    `json:"unacked"`       // batches sent but never acknowledged
	Errors         int64    `json:"errors"`        // sum of the five above
	ErrorSamples   []string `json:"error_samples,omitempty"`
	FloorFixesPerS float64  `json:"floor_fixes_per_s"` // 0 if not measured
	FloorDurationS float64  `json:"floor_duration_s"`
	Ratio          float64  `json:"ratio"`          // floor_fixes_per_s / fixes_per_s
	SardCPUS       float64  `json:"sard_cpu_s"`     // sard's CPU seconds from the first send to the end of the run, with --plan to the end of its search work (-1: not read)
	CPUUsPerFix    float64  `json:"cpu_us_per_fix"` // sard's CPU microseconds per stored fix (-1: not read)
	// With --plan (plan true): how long after the last device ended the
	// search work it made (coverage) was still pending (-1: not done
	// within searchDrainTimeout), and the fixes stored per second of the
	// run and that drain together, the rate at which the search work
	// keeps up (0 when not measured).
	Plan             bool    `json:"plan"`
	SearchDrainS     float64 `json:"search_drain_s"`
	CoveredFixesPerS float64 `json:"covered_fixes_per_s"`
	// With --grpc-floor (0 when not measured): the bare gRPC server's
	// fixes/s and CPU µs per fix with this run's pacing, and its CPU µs per
	// fix paced at this run's fixes_per_s (the same figure when this run
	// was paced).
	GRPCFloorFixesPerS      float64 `json:"grpc_floor_fixes_per_s"`
	GRPCFloorCPUUsPerFix    float64 `json:"grpc_floor_cpu_us_per_fix"`
	GRPCFloorCPUUsAtOurRate float64 `json:"grpc_floor_cpu_us_per_fix_at_our_rate"`
}

const (
	benchJurisdiction  = "bench"
	drainTimeout       = 10 * time.Second // for acks after --duration
	eventGrace         = 3 * time.Second  // for events after the last ack
	searchDrainTimeout = time.Minute      // for the search work left after the run (--plan)
	maxErrorSamples    = 10
)

// benchDevice is one simulated rescuer phone.
type benchDevice struct {
	id, token string
	seed      uint64
	conn      *grpc.ClientConn

	mu     sync.Mutex
	sentAt []time.Duration // by batch id-1: when it was sent (since run start); -1 once its event was seen

	// Written by the device's receiver only, read after it ended.
	ackMs     []float64
	storedIDs []uint64 // batches whose ack named stored fixes
}

// benchRun is the shared state of one run.
type benchRun struct {
	o        benchOptions
	incident string
	devices  []*benchDevice
	byID     map[string]*benchDevice
	start    time.Time
	stop     chan struct{}
	interval time.Duration // per-device batch interval with --rate

	sent, stored, batches, acked   atomic.Int64
	rejected, duplicates, problems atomic.Int64
	failures, unacked, eventsSeen  atomic.Int64
	errMu                          sync.Mutex
	errSamples                     []string
	latMs                          []float64 // written by the watcher only
}

func newBenchRun(o benchOptions) *benchRun {
	r := &benchRun{o: o, byID: map[string]*benchDevice{}, stop: make(chan struct{})}
	if o.Rate > 0 {
		r.interval = time.Duration(float64(o.Devices*o.Batch) / o.Rate * float64(time.Second))
	}
	return r
}

func (r *benchRun) since() time.Duration { return time.Since(r.start) }

// addDevices makes the run's devices, "<prefix>-<n>", spread over conns.
func (r *benchRun) addDevices(prefix string, conns []*grpc.ClientConn) {
	r.devices = make([]*benchDevice, r.o.Devices)
	for i := range r.devices {
		d := &benchDevice{id: fmt.Sprintf("%s-%05d", prefix, i), seed: uint64(i) + 1, conn: conns[i%len(conns)]}
		r.devices[i], r.byID[d.id] = d, d
	}
}

// drive runs the devices (r.start set) until --duration has passed or
// ctx ends, waits for each to end its stream, and returns how long that
// took since r.start.
func (r *benchRun) drive(ctx context.Context) time.Duration {
	var once sync.Once
	stopAll := func() { once.Do(func() { close(r.stop) }) }
	timer := time.AfterFunc(r.o.Duration, stopAll)
	defer timer.Stop()
	unhook := context.AfterFunc(ctx, stopAll) // Ctrl-C ends the run early, cleanly
	defer unhook()
	progressDone := make(chan struct{})
	defer close(progressDone)
	go r.progress(progressDone)

	var wg sync.WaitGroup
	for _, d := range r.devices {
		wg.Go(func() { d.run(r) })
	}
	wg.Wait()
	return r.since()
}

func (r *benchRun) logf(format string, args ...any) { fmt.Fprintf(r.o.Log, format+"\n", args...) }

// sample keeps a few error messages for the report (the caller counts).
func (r *benchRun) sample(format string, args ...any) {
	r.errMu.Lock()
	defer r.errMu.Unlock()
	if len(r.errSamples) < maxErrorSamples {
		r.errSamples = append(r.errSamples, fmt.Sprintf(format, args...))
	}
}

// runBench sets up an agency, an incident and one credential per device,
// streams fixes for o.Duration, and measures. Setup failures are returned
// as errors; failures during the run are counted in the result.
func runBench(ctx context.Context, o benchOptions) (*benchResult, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	runID := newRunID()
	if len(o.Addrs) > 0 {
		o.Addr = o.Addrs[0] // setup and the watcher
	} else {
		o.Addrs = []string{o.Addr}
	}
	r := newBenchRun(o)

	admin, err := dial(o.TLS, o.Addr)
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	actx := withToken(ctx, o.Token)
	agencies, incidents, authc := sarv1.NewAgencyServiceClient(admin), sarv1.NewIncidentServiceClient(admin), sarv1.NewAuthServiceClient(admin)

	r.logf("bench %s: setting up on %s: agency, incident, %d rescuer credentials", runID, o.Addr, o.Devices)
	if err := retryLimited(actx, func(ctx context.Context) error {
		_, err := agencies.CreateAgency(ctx, &sarv1.CreateAgencyRequest{Agency: &sarv1.Agency{
			Id: runID, Name: "sarctl bench " + runID, Kind: sarv1.AgencyKind_AGENCY_KIND_OTHER, Jurisdiction: benchJurisdiction}})
		return err
	}); err != nil {
		return nil, fmt.Errorf("bench: create agency (is --token an admin token?): %w", err)
	}
	var inc *sarv1.Incident
	if err := retryLimited(actx, func(ctx context.Context) error {
		resp, err := incidents.CreateIncident(ctx, &sarv1.CreateIncidentRequest{
			Title: "sarctl bench " + runID, Jurisdiction: benchJurisdiction, AgencyIds: []string{runID}, RequestId: runID,
			InitialPlanningPoint: &sarv1.PlanningPoint{Position: &sarv1.LatLng{Lat: benchLat, Lng: benchLng}, AccuracyM: 50},
			Subject:              &sarv1.SubjectProfile{Category: sarv1.SubjectCategory_SUBJECT_CATEGORY_HIKER, NumberOfPeople: 1}})
		inc = resp.GetIncident()
		return err
	}); err != nil {
		return nil, fmt.Errorf("bench: create incident: %w", err)
	}
	r.incident = inc.GetId()
	if o.Plan {
		if err := retryLimited(actx, func(ctx context.Context) error {
			_, err := sarv1.NewSearchServiceClient(admin).SetSearchPlan(ctx, &sarv1.SetSearchPlanRequest{IncidentId: inc.GetId()})
			return err
		}); err != nil {
			return nil, fmt.Errorf("bench: set search plan: %w", err)
		}
	}
	defer func() {
		if !o.Keep {
			closeBenchIncident(actx, incidents, r.incident, runID, o.Log)
		}
	}()

	nconn := connCount(o.Conns, o.Devices)
	conns, closeConns, err := dialAll(nconn, func(i int) (*grpc.ClientConn, error) {
		return dial(o.TLS, o.Addrs[i%len(o.Addrs)]) // round-robin over the replicas
	})
	defer closeConns()
	if err != nil {
		return nil, err
	}
	r.addDevices(runID, conns)
	if err := parallel(o.Devices, 8, func(i int) error {
		d := r.devices[i]
		return retryLimited(actx, func(ctx context.Context) error {
			resp, err := authc.CreateCredential(ctx, &sarv1.CreateCredentialRequest{Role: sarv1.Role_ROLE_RESCUER,
				AgencyId: runID, DisplayName: "bench device " + d.id, Ttl: durationpb.New(time.Hour)})
			d.token = resp.GetToken()
			return err
		})
	}); err != nil {
		return nil, fmt.Errorf("bench: create credentials: %w", err)
	}
	if err := parallel(o.Devices, 8, func(i int) error {
		d := r.devices[i]
		return retryLimited(withToken(ctx, d.token), func(ctx context.Context) error {
			resp, err := sarv1.NewIncidentServiceClient(d.conn).JoinIncident(ctx,
				&sarv1.JoinIncidentRequest{IncidentId: r.incident, DeviceId: d.id, DisplayName: "bench " + d.id})
			if err == nil && resp.GetAckedThrough() != 0 {
				err = fmt.Errorf("new device %s has acked_through %d, want 0", d.id, resp.GetAckedThrough())
			}
			return err
		})
	}); err != nil {
		return nil, fmt.Errorf("bench: join incident: %w", err)
	}

	// The watcher: one admin WatchIncident stream timestamps positions
	// events. It starts before the devices and has seen its snapshot, so
	// it is subscribed.
	// (The deadline bounds the run; sard also refuses a watch without one,
	// see watchCmd.)
	wctx, stopWatch := context.WithTimeout(actx, o.Duration+drainTimeout+eventGrace+time.Minute)
	defer stopWatch()
	watch, err := incidents.WatchIncident(wctx, &sarv1.WatchIncidentRequest{IncidentId: r.incident})
	if err == nil {
		_, err = watch.Recv()
	}
	if err != nil {
		return nil, fmt.Errorf("bench: watch incident: %w", err)
	}
	watchDone := make(chan struct{})

	pace := "as fast as acks allow"
	if o.Rate > 0 {
		pace = fmt.Sprintf("paced at %.0f fixes/s (one batch per device every %v)", o.Rate, r.interval)
	}
	r.logf("bench %s: incident %s: %d devices x batches of %d, inflight %d, %d connections to %d sard, %v, %s",
		runID, r.incident, o.Devices, o.Batch, o.Inflight, nconn, len(o.Addrs), o.Duration, pace)

	cpu0, cpuRead, err := r.sardCPU(ctx)
	if err != nil && o.MetricsRequired {
		return nil, fmt.Errorf("bench: read --metrics-url: %w", err)
	}
	r.start = time.Now()
	go r.watch(watch, watchDone)
	elapsed := r.drive(ctx)
	drain := time.Duration(-1)
	if o.Plan && ctx.Err() == nil {
		// The coverage of the last batches is done after their acks: the
		// CPU window and the covered rate end when it is.
		drain = r.awaitSearchWork(actx, sarv1.NewSearchServiceClient(admin))
	}

	// Wait for the events of the last batches, then stop watching.
	graceEnd := time.Now().Add(eventGrace)
	for r.eventsMissing() > 0 && time.Now().Before(graceEnd) {
		select {
		case <-watchDone:
			graceEnd = time.Now()
		case <-time.After(10 * time.Millisecond):
		}
	}
	stopWatch()
	<-watchDone

	res := r.result(elapsed, nconn)
	if o.Plan {
		res.Plan, res.SearchDrainS = true, -1
		if drain >= 0 {
			res.SearchDrainS = round3(drain.Seconds())
			res.CoveredFixesPerS = round3(float64(res.Stored) / (elapsed + drain).Seconds())
		}
	}
	res.SardCPUS, res.CPUUsPerFix = -1, -1
	if cpu1, ok, _ := r.sardCPU(ctx); ok && cpuRead {
		res.SardCPUS = round3(cpu1 - cpu0)
		if res.Stored > 0 {
			res.CPUUsPerFix = round3((cpu1 - cpu0) * 1e6 / float64(res.Stored))
		}
	}
	if o.RedisURL != "" && ctx.Err() == nil {
		r.logf("bench %s: measuring the floor: raw Redis pipelines of the same data from %d goroutines for %v", runID, o.Devices, o.Duration)
		fps, secs, err := runFloor(ctx, o, runID)
		if err != nil {
			return res, fmt.Errorf("bench: floor: %w", err)
		}
		res.FloorFixesPerS, res.FloorDurationS = round3(fps), round3(secs)
		if res.FixesPerS > 0 {
			res.Ratio = round3(fps / res.FixesPerS)
		}
	}
	if o.GRPCFloor && ctx.Err() == nil {
		r.logf("bench %s: measuring the gRPC floor: the same devices against a bare server for %v", runID, o.Duration)
		f, err := runGRPCFloor(ctx, o)
		if err != nil {
			return res, fmt.Errorf("bench: gRPC floor: %w", err)
		}
		res.GRPCFloorFixesPerS, res.GRPCFloorCPUUsPerFix, res.GRPCFloorCPUUsAtOurRate = f.FixesPerS, f.CPUUsPerFix, f.CPUUsPerFix
		if o.Rate == 0 && res.FixesPerS > 0 && ctx.Err() == nil {
			r.logf("bench %s: the gRPC floor again, paced at this run's %.0f fixes/s", runID, res.FixesPerS)
			po := o
			po.Rate = res.FixesPerS
			if f, err = runGRPCFloor(ctx, po); err != nil {
				return res, fmt.Errorf("bench: gRPC floor at %.0f fixes/s: %w", po.Rate, err)
			}
			res.GRPCFloorCPUUsAtOurRate = f.CPUUsPerFix
		}
	}
	return res, nil
}

// awaitSearchWork polls the bench incident's search grid until no search
// work is pending and returns how long that took (-1: not within
// searchDrainTimeout, or the grid could not be read).
func (r *benchRun) awaitSearchWork(ctx context.Context, search sarv1.SearchServiceClient) time.Duration {
	start := time.Now()
	for {
		// A version past every version: the summary without cells.
		g, err := search.GetSearchGrid(ctx, &sarv1.GetSearchGridRequest{IncidentId: r.incident, SinceVersion: math.MaxInt64})
		switch {
		case err != nil:
			r.logf("bench: search work not followed: %v", err)
			return -1
		case g.GetGrid().GetSearchWorkPending() == 0:
			return time.Since(start)
		case time.Since(start) > searchDrainTimeout:
			r.logf("bench: search work still pending %v after the run", searchDrainTimeout)
			return -1
		}
		select {
		case <-ctx.Done():
			return -1
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// sardCPU reads sard's process_cpu_seconds_total from o.MetricsURL (the
// sum over the replicas' pages when it names several); ok is false (and
// err says why, also logged) when it was not read from every page.
func (r *benchRun) sardCPU(ctx context.Context) (v float64, ok bool, err error) {
	if r.o.MetricsURL == "" {
		return 0, false, nil
	}
	for url := range strings.SplitSeq(r.o.MetricsURL, ",") {
		url = strings.TrimSpace(url)
		m, err := scrapeMetrics(ctx, r.o.TLS, url, metricCPU)
		if err == nil {
			if one, ok := m[metricCPU]; ok {
				v += one
				continue
			}
			err = fmt.Errorf("no %s on the page", metricCPU)
		}
		r.logf("bench: sard's CPU time not read from %s: %v", url, err)
		return 0, false, err
	}
	return v, true, nil
}

// eventsMissing counts the batches acknowledged as stored whose positions
// event the watcher has not seen (after the devices ended). An event of a
// batch whose ack stored nothing (its fixes were stored by an earlier
// attempt whose reply was lost, or stored and then refused as unconfirmed
// by a replica) is not missing, and does not make up for another.
func (r *benchRun) eventsMissing() int64 {
	var n int64
	for _, d := range r.devices {
		d.mu.Lock()
		for _, id := range d.storedIDs {
			if id > 0 && id <= uint64(len(d.sentAt)) && d.sentAt[id-1] >= 0 {
				n++
			}
		}
		d.mu.Unlock()
	}
	return n
}

func (r *benchRun) result(elapsed time.Duration, nconn int) *benchResult {
	res := &benchResult{IncidentID: r.incident, Devices: r.o.Devices, Batch: r.o.Batch, Inflight: r.o.Inflight, Mode: "stream",
		Conns: nconn, Replicas: len(r.o.Addrs), RateTarget: r.o.Rate, DurationS: round3(elapsed.Seconds()),
		Sent: r.sent.Load(), Stored: r.stored.Load(), Batches: r.batches.Load(), AckedBatches: r.acked.Load(),
		Rejected: r.rejected.Load(), Duplicates: r.duplicates.Load(), Problems: r.problems.Load(),
		StreamErrors: r.failures.Load(), Unacked: r.unacked.Load(), LatencySamples: len(r.latMs),
		EventsMissing: r.eventsMissing()}
	if r.o.Report {
		res.Mode = "report"
	}
	res.Errors = res.Rejected + res.Duplicates + res.Problems + res.StreamErrors + res.Unacked
	res.ErrorSamples = r.errSamples
	if s := elapsed.Seconds(); s > 0 {
		res.FixesPerS = round3(float64(res.Stored) / s)
	}
	p := percentiles(r.latMs, 50, 90, 99, 100)
	res.P50Ms, res.P90Ms, res.P99Ms, res.MaxMs = round3(p[0]), round3(p[1]), round3(p[2]), round3(p[3])
	var acks []float64
	for _, d := range r.devices {
		acks = append(acks, d.ackMs...)
	}
	p = percentiles(acks, 50, 99)
	res.AckP50Ms, res.AckP99Ms = round3(p[0]), round3(p[1])
	return res
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// progress prints the rates every 5 seconds.
func (r *benchRun) progress(done <-chan struct{}) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	var last int64
	for {
		select {
		case <-done:
			return
		case <-t.C:
			s := r.stored.Load()
			r.logf("  %5.1fs  stored %9d fixes  %8.0f fixes/s  events %d  errors %d",
				r.since().Seconds(), s, float64(s-last)/5, r.eventsSeen.Load(),
				r.rejected.Load()+r.duplicates.Load()+r.problems.Load()+r.failures.Load())
			last = s
		}
	}
}

// watch timestamps positions events and matches them to the batch that
// made them by (device_id, batch_id).
func (r *benchRun) watch(stream sarv1.IncidentService_WatchIncidentClient, done chan<- struct{}) {
	defer close(done)
	for {
		m, err := stream.Recv()
		if err != nil {
			if status.Code(err) != codes.Canceled {
				r.failures.Add(1)
				r.sample("watch stream: %v", err)
			}
			return
		}
		pe := m.GetEvent().GetPositions()
		if pe == nil {
			continue
		}
		now := r.since()
		d := r.byID[pe.GetDeviceId()]
		if d == nil {
			continue
		}
		d.mu.Lock()
		i, lat := pe.GetBatchId()-1, time.Duration(-1)
		if pe.GetBatchId() > 0 && i < uint64(len(d.sentAt)) && d.sentAt[i] >= 0 {
			lat, d.sentAt[i] = now-d.sentAt[i], -1
		}
		d.mu.Unlock()
		if lat >= 0 {
			r.latMs = append(r.latMs, ms(lat))
			r.eventsSeen.Add(1)
		}
	}
}

// batchRec is a batch on the wire, waiting for its ack.
type batchRec struct {
	id uint64
	n  int
	at time.Duration
}

// pace is a device's ticker with --rate, started at a random phase so
// that the devices' batches spread evenly (it returns early when the run
// stops first); without --rate, nil: send as fast as acks allow.
func (r *benchRun) pace() (tick <-chan time.Time, stop func()) {
	if r.interval <= 0 {
		return nil, func() {}
	}
	select {
	case <-time.After(time.Duration(mrand.Int64N(int64(r.interval) + 1))):
	case <-r.stop:
	}
	t := time.NewTicker(r.interval)
	return t.C, t.Stop
}

// run streams batches until the run stops, then closes the stream after
// the last ack.
func (d *benchDevice) run(r *benchRun) {
	if r.o.Report {
		d.report(r)
		return
	}
	// The stream outlives Ctrl-C and --duration by the drain time, so that
	// the batches in flight are acknowledged and the stream ends cleanly.
	ctx, cancel := context.WithTimeout(withToken(context.Background(), d.token), r.o.Duration+drainTimeout)
	defer cancel()
	stream, err := sarv1.NewLocationServiceClient(d.conn).StreamFixes(ctx)
	if err != nil {
		r.failures.Add(1)
		r.sample("%s: open stream: %v", d.id, err)
		return
	}
	slots := make(chan struct{}, r.o.Inflight)
	pending := make(chan batchRec, r.o.Inflight)
	recvDone := make(chan struct{})
	go d.receive(r, stream, slots, pending, recvDone)

	tick, stopTick := r.pace()
	defer stopTick()
	w := newWalker(d.seed)
	seq := uint64(1)
send:
	for id := uint64(1); ; id++ {
		if tick != nil {
			select {
			case <-tick:
			case <-r.stop:
				break send
			case <-recvDone:
				break send
			}
		}
		select {
		case <-r.stop:
			break send
		case <-recvDone:
			break send
		default:
		}
		req := &sarv1.StreamFixesRequest{Batch: &sarv1.FixBatch{IncidentId: r.incident, DeviceId: d.id, BatchId: id,
			Fixes: w.Batch(seq, r.o.Batch, time.Now())}}
		select {
		case slots <- struct{}{}:
		case <-r.stop:
			break send
		case <-recvDone:
			break send
		}
		at := r.since()
		d.mu.Lock()
		d.sentAt = append(d.sentAt, at) // index id-1
		d.mu.Unlock()
		pending <- batchRec{id: id, n: r.o.Batch, at: at}
		if err := stream.Send(req); err != nil {
			break // the receiver reports the stream's error
		}
		r.sent.Add(int64(r.o.Batch))
		r.batches.Add(1)
		seq += uint64(r.o.Batch)
	}
	_ = stream.CloseSend()
	<-recvDone
	if n := len(pending); n > 0 {
		r.unacked.Add(int64(n))
		r.sample("%s: %d batches never acknowledged", d.id, n)
	}
}

// receive reads the acks, in the order of the batches.
func (d *benchDevice) receive(r *benchRun, stream sarv1.LocationService_StreamFixesClient, slots <-chan struct{}, pending <-chan batchRec, done chan<- struct{}) {
	defer close(done)
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			r.failures.Add(1)
			r.sample("%s: stream: %v", d.id, err)
			return
		}
		now := r.since()
		var b batchRec
		select {
		case b = <-pending:
			<-slots
		default:
			r.failures.Add(1)
			r.sample("%s: ack for batch %d that was not sent", d.id, resp.GetAck().GetBatchId())
			return
		}
		d.record(r, b, now, resp.GetAck())
	}
}

// record counts the ack of batch b, received at now.
func (d *benchDevice) record(r *benchRun, b batchRec, now time.Duration, ack *sarv1.FixAck) {
	if ack.GetBatchId() != b.id {
		r.failures.Add(1)
		r.sample("%s: ack for batch %d, want %d", d.id, ack.GetBatchId(), b.id)
	}
	d.ackMs = append(d.ackMs, ms(now-b.at))
	r.acked.Add(1)
	r.stored.Add(int64(len(ack.GetStored())))
	if len(ack.GetStored()) > 0 {
		d.storedIDs = append(d.storedIDs, b.id)
	}
	if n := len(ack.GetDuplicates()); n > 0 {
		r.duplicates.Add(int64(n))
		r.sample("%s: batch %d: %d duplicates", d.id, b.id, n)
	}
	if n := len(ack.GetRejected()); n > 0 {
		r.rejected.Add(int64(n))
		r.sample("%s: batch %d: %d rejected, first: %v", d.id, b.id, n, ack.GetRejected()[0].GetViolation())
	}
	if p := ack.GetProblem(); p != nil {
		r.problems.Add(1)
		r.sample("%s: batch %d refused: %s: %s", d.id, b.id, codes.Code(p.GetCode()), p.GetMessage())
	}
}

// report sends each batch as one ReportFixes call and waits for its
// answer, until the run stops. A batch-level problem is the call's
// status (counted as a refused batch; the device goes on); a failure of
// the connection ends the device, as a broken stream does.
func (d *benchDevice) report(r *benchRun) {
	ctx := withToken(context.Background(), d.token)
	client := sarv1.NewLocationServiceClient(d.conn)
	tick, stopTick := r.pace()
	defer stopTick()
	w := newWalker(d.seed)
	seq := uint64(1)
	for id := uint64(1); ; id++ {
		if tick != nil {
			select {
			case <-tick:
			case <-r.stop:
				return
			}
		}
		select {
		case <-r.stop:
			return
		default:
		}
		batch := &sarv1.FixBatch{IncidentId: r.incident, DeviceId: d.id, BatchId: id, Fixes: w.Batch(seq, r.o.Batch, time.Now())}
		at := r.since()
		d.mu.Lock()
		d.sentAt = append(d.sentAt, at) // index id-1
		d.mu.Unlock()
		seq += uint64(r.o.Batch)
		// The per-credential rate limit refuses a call (RESOURCE_EXHAUSTED)
		// where it makes a stream's next message wait: the same batch is
		// sent again after a pause, as a phone would. A batch still
		// refused when the run stops was never taken: it is not counted.
		pause := 10 * time.Millisecond
		for {
			cctx, cancel := context.WithTimeout(ctx, drainTimeout)
			resp, err := client.ReportFixes(cctx, &sarv1.ReportFixesRequest{Batch: batch})
			cancel()
			code := status.Code(err)
			if code != codes.ResourceExhausted {
				r.sent.Add(int64(r.o.Batch))
				r.batches.Add(1)
			}
			switch code {
			case codes.OK:
				d.record(r, batchRec{id: id, n: r.o.Batch, at: at}, r.since(), resp.GetAck())
			case codes.ResourceExhausted:
				select {
				case <-time.After(pause):
					pause = min(2*pause, time.Second)
					continue
				case <-r.stop:
					return
				}
			case codes.Unavailable, codes.Canceled, codes.DeadlineExceeded:
				// As a broken stream: the device stops, its batch in
				// flight unacknowledged.
				r.failures.Add(1)
				r.unacked.Add(1)
				r.sample("%s: batch %d: %v", d.id, id, err)
				return
			default:
				r.problems.Add(1)
				r.sample("%s: batch %d refused: %v", d.id, id, err)
			}
			break
		}
	}
}

// write prints a summary, and with asJSON the result as one JSON object on
// the last line.
func (res *benchResult) write(w io.Writer, asJSON bool) error {
	pace := "as fast as possible"
	if res.RateTarget > 0 {
		pace = fmt.Sprintf("target %.0f fixes/s", res.RateTarget)
	}
	how := "StreamFixes"
	if res.Mode == "report" {
		how = "a ReportFixes call per batch"
	}
	fmt.Fprintf(w, "bench ingest: %d devices x batches of %d (%s), inflight %d, %d connections to %d sard, %.1f s, %s (incident %s)\n",
		res.Devices, res.Batch, how, res.Inflight, res.Conns, res.Replicas, res.DurationS, pace, res.IncidentID)
	fmt.Fprintf(w, "  sent        %d fixes in %d batches; %d batches acknowledged\n", res.Sent, res.Batches, res.AckedBatches)
	fmt.Fprintf(w, "  stored      %d fixes: %.0f fixes/s\n", res.Stored, res.FixesPerS)
	fmt.Fprintf(w, "  ingest->event latency (%d events): p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  max %.2f ms; %d stored batches without an event\n",
		res.LatencySamples, res.P50Ms, res.P90Ms, res.P99Ms, res.MaxMs, res.EventsMissing)
	fmt.Fprintf(w, "  batch->ack latency: p50 %.2f ms  p99 %.2f ms\n", res.AckP50Ms, res.AckP99Ms)
	fmt.Fprintf(w, "  errors      %d (rejected %d, duplicates %d, refused batches %d, stream errors %d, unacked batches %d)\n",
		res.Errors, res.Rejected, res.Duplicates, res.Problems, res.StreamErrors, res.Unacked)
	for _, s := range res.ErrorSamples {
		fmt.Fprintf(w, "    %s\n", s)
	}
	if res.FloorFixesPerS > 0 {
		fmt.Fprintf(w, "  floor       %.0f fixes/s of raw Redis pipelines (same data, %d goroutines, %.1f s): ratio floor/ours %.2f\n",
			res.FloorFixesPerS, res.Devices, res.FloorDurationS, res.Ratio)
	}
	if res.GRPCFloorFixesPerS > 0 {
		fmt.Fprintf(w, "  gRPC floor  %.0f fixes/s from a bare server that decodes and acks (same devices and pacing): %.1f CPU µs per fix; %.1f µs paced at ours' rate\n",
			res.GRPCFloorFixesPerS, res.GRPCFloorCPUUsPerFix, res.GRPCFloorCPUUsAtOurRate)
	}
	switch {
	case res.Plan && res.SearchDrainS >= 0:
		fmt.Fprintf(w, "  search work done %.2f s after the run: %.0f fixes/s covered (stored / (run + that))\n", res.SearchDrainS, res.CoveredFixesPerS)
	case res.Plan:
		fmt.Fprintf(w, "  search work not seen done within %v after the run\n", searchDrainTimeout)
	}
	if res.CPUUsPerFix >= 0 {
		fmt.Fprintf(w, "  sard CPU    %.2f s: cpu_us_per_fix %.1f (CPU µs per stored fix, from process_cpu_seconds_total)\n", res.SardCPUS, res.CPUUsPerFix)
	} else {
		fmt.Fprintf(w, "  sard CPU    not read (see --metrics-url): cpu_us_per_fix -1\n")
	}
	if !asJSON {
		return nil
	}
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}
