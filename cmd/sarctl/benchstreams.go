package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"slices"
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

// bench streams: many devices, each holding one StreamFixes stream open
// and sending a small batch now and then, as phones in the field do; what
// it measures is sard's memory with that many streams open, read from its
// /metrics, and the batch-to-ack latency.

type benchStreamsCmd struct {
	Devices  int           `default:"5000" help:"Simulated rescuer phones; each gets its own rescuer credential, joins the bench incident and holds one StreamFixes stream open."`
	Batch    int           `default:"10" help:"Fixes per batch (1-500): one fix a second between batches."`
	Interval time.Duration `default:"10s" help:"Time between a device's batches; each device starts at a random phase, so the batches spread evenly."`
	Duration time.Duration `default:"2m" help:"How long the streams are held open once all are open; then each device closes its stream after its last ack."`
	Conns    int           `default:"0" help:"gRPC connections the devices share; 0 gives each device its own connection, as phones have (sard then holds one connection per device)."`
	Report   bool          `help:"Devices send each batch as one ReportFixes call on their kept-alive connection instead of holding a StreamFixes stream open between batches."`
	Sample   time.Duration `default:"5s" help:"How often sard's /metrics is read."`
	Setup    int           `default:"16" help:"Credential and join calls in flight during setup."`
	JSON     bool          `name:"json" help:"Print the result as one JSON object on the last line of stdout."`
	Keep     bool          `help:"Leave the bench incident open (by default it is closed as a false alarm after the run)."`
	Quiet    bool          `help:"No setup and progress lines on stderr."`
	HTTPAddr string        `name:"http-addr" env:"SAR_HTTP_ADDR" default:"127.0.0.1:8080" help:"sard's HTTP address (its --http-addr): the default --metrics-url is http(s)://<http-addr>/metrics."`
	// Without the memory figures the run has no point: the page must answer.
	MetricsURL string `name:"metrics-url" env:"SAR_BENCH_METRICS_URL" help:"sard's Prometheus page, read every --sample for its resident memory (process_resident_memory_bytes), Go heap and stacks (go_memstats_*), goroutines and open files. Default: derived from --http-addr."`
}

func (c *benchStreamsCmd) Run(ctx context.Context, g *Globals, w io.Writer) error {
	log := progressLog(c.Quiet)
	metrics := c.MetricsURL
	if metrics == "" {
		var err error
		if metrics, err = g.metricsURL(c.HTTPAddr); err != nil {
			return err
		}
	}
	res, err := runStreamsBench(ctx, streamsOptions{Addr: g.Addr, Token: g.Token, TLS: g.Client(), Devices: c.Devices, Batch: c.Batch,
		Interval: c.Interval, Duration: c.Duration, Conns: c.Conns, Report: c.Report, Sample: c.Sample, Setup: c.Setup,
		MetricsURL: metrics, Keep: c.Keep, Log: log})
	if err != nil {
		return err
	}
	return report(w, c.JSON, res, res.Errors)
}

// streamsOptions configures one run of bench streams.
type streamsOptions struct {
	Addr, Token string
	TLS         tlsutil.Client
	Devices     int
	Batch       int
	Interval    time.Duration
	Duration    time.Duration // the hold, from the last stream opened
	Conns       int           // 0: one per device
	Report      bool          // ReportFixes calls instead of a held stream
	Sample      time.Duration
	Setup       int // calls in flight during setup
	MetricsURL  string
	Keep        bool
	Log         io.Writer
}

func (o streamsOptions) check() error {
	switch {
	case o.Token == "":
		return errors.New("bench: an admin --token is required (SAR_TOKEN)")
	case o.Devices < 1 || o.Devices > 50_000:
		return errors.New("bench: --devices must be from 1 to 50000")
	case o.Batch < 1 || o.Batch > 500:
		return errors.New("bench: --batch must be from 1 to 500")
	case o.Interval <= 0 || o.Interval > 10*time.Minute:
		return errors.New("bench: --interval must be more than 0 and at most 10m")
	case o.Duration < o.Interval || o.Duration > 24*time.Hour:
		return errors.New("bench: --duration must be at least --interval (every device sends) and at most 24h")
	case o.Conns < 0:
		return errors.New("bench: --conns must be 0 or more")
	case o.Sample <= 0:
		return errors.New("bench: --sample must be more than 0")
	case o.Setup < 1 || o.Setup > 1000:
		return errors.New("bench: --setup must be from 1 to 1000")
	case o.MetricsURL == "":
		return errors.New("bench: --metrics-url (or --http-addr) is required: the run reads sard's memory from it")
	}
	return nil
}

// Memory metrics read from sard's /metrics (client_golang's process and
// Go collectors).
const (
	metricRSS        = "process_resident_memory_bytes"
	metricFDs        = "process_open_fds"
	metricGoroutines = "go_goroutines"
	metricHeapInuse  = "go_memstats_heap_inuse_bytes"
	metricStackInuse = "go_memstats_stack_inuse_bytes"
	metricGoSys      = "go_memstats_sys_bytes"
	metricGCCycles   = "go_gc_duration_seconds_count"
)

// memSample is one reading of sard's memory. Sizes in MiB.
type memSample struct {
	AtS        float64 `json:"at_s"` // since the run started
	Phase      string  `json:"phase"`
	RSSMiB     float64 `json:"rss_mib"`
	HeapMiB    float64 `json:"heap_inuse_mib"`
	StackMiB   float64 `json:"stack_inuse_mib"`
	GoSysMiB   float64 `json:"go_sys_mib"` // all the Go runtime obtained from the OS
	Goroutines float64 `json:"goroutines"`
	OpenFDs    float64 `json:"open_fds"`
	CPUS       float64 `json:"cpu_s"`     // process_cpu_seconds_total
	GCCycles   float64 `json:"gc_cycles"` // completed since sard started
	Acked      int64   `json:"acked"`     // batches the bench had acknowledged by then
}

// Phases of a run, in order.
const (
	phaseBefore  = "before"  // sard as found, before setup
	phaseSetup   = "setup"   // credentials made, devices connecting and joining
	phaseOpening = "opening" // streams opening, first batches
	phaseHold    = "hold"    // every stream open
	phaseClosing = "closing" // devices closing their streams
	phaseAfter   = "after"   // streams and connections closed
)

// streamsResult is what a run of bench streams measured.
type streamsResult struct {
	IncidentID   string   `json:"incident_id"`
	Devices      int      `json:"devices"`
	Conns        int      `json:"conns"`
	Mode         string   `json:"mode"` // "stream" (StreamFixes held open) or "report" (a ReportFixes call per batch)
	Batch        int      `json:"batch"`
	IntervalS    float64  `json:"interval_s"`
	HoldS        float64  `json:"hold_s"`   // every stream open
	OpenS        float64  `json:"open_s"`   // first stream opened -> last
	Streams      int64    `json:"streams"`  // opened (with --report: devices connected and sending)
	Batches      int64    `json:"batches"`  // sent
	Expected     int64    `json:"expected"` // devices x hold / interval: what the hold alone should see sent, about
	Acked        int64    `json:"acked"`
	Sent         int64    `json:"sent"` // fixes
	Stored       int64    `json:"stored"`
	AckP50Ms     float64  `json:"ack_p50_ms"` // batch sent -> its ack
	AckP99Ms     float64  `json:"ack_p99_ms"`
	AckMaxMs     float64  `json:"ack_max_ms"`
	Rejected     int64    `json:"rejected"`
	Duplicates   int64    `json:"duplicates"`
	Problems     int64    `json:"problems"`      // batches refused whole
	StreamErrors int64    `json:"stream_errors"` // streams that failed to open or broke; with --report, calls failed on the connection
	Errors       int64    `json:"errors"`        // sum of the four above
	ErrorSamples []string `json:"error_samples,omitempty"`

	// sard's memory: before the run, at the plateau (the median of the
	// readings in the second half of the hold, every stream open and
	// sending), the peak reading, and after the streams closed.
	Before       memSample `json:"before"`
	Plateau      memSample `json:"plateau"`
	Peak         memSample `json:"peak"` // the reading with the highest RSS
	After        memSample `json:"after"`
	PerStreamKiB float64   `json:"per_stream_kib"` // (plateau RSS - before RSS) / devices
	// sard's CPU and GC cycles over the hold (from the first to the last
	// reading in it): what the streams cost it, the collector included.
	HoldCPUS      float64     `json:"hold_cpu_s"`
	CPUMsPerBatch float64     `json:"cpu_ms_per_batch"` // hold_cpu_s / batches acknowledged between those readings
	HoldGCs       float64     `json:"hold_gcs"`
	PlateauRSSMiB float64     `json:"plateau_rss_mib"`
	PeakRSSMiB    float64     `json:"peak_rss_mib"`
	Samples       []memSample `json:"samples"`
}

// streamDevice is one simulated phone.
type streamDevice struct {
	id, token string
	seed      uint64
	conn      *grpc.ClientConn
	ackMs     []float64 // written by the device's goroutine only
}

type streamsRun struct {
	o        streamsOptions
	incident string
	devices  []*streamDevice
	start    time.Time
	stop     chan struct{}   // the hold is over
	cut      context.Context // ends the streams still open drainTimeout after stop

	opened                         sync.WaitGroup
	streams, batches, acked        atomic.Int64
	sent, stored                   atomic.Int64
	rejected, duplicates, problems atomic.Int64
	failures                       atomic.Int64
	errMu                          sync.Mutex
	errSamples                     []string

	memMu   sync.Mutex
	phase   string
	samples []memSample
}

func (r *streamsRun) logf(format string, args ...any) { fmt.Fprintf(r.o.Log, format+"\n", args...) }

func (r *streamsRun) sample(format string, args ...any) {
	r.errMu.Lock()
	defer r.errMu.Unlock()
	if len(r.errSamples) < maxErrorSamples {
		r.errSamples = append(r.errSamples, fmt.Sprintf(format, args...))
	}
}

func (r *streamsRun) setPhase(p string) {
	r.memMu.Lock()
	r.phase = p
	r.memMu.Unlock()
}

// readMem reads sard's /metrics once and keeps the reading.
func (r *streamsRun) readMem(ctx context.Context) (memSample, error) {
	m, err := scrapeMetrics(ctx, r.o.TLS, r.o.MetricsURL, metricRSS, metricFDs, metricGoroutines, metricHeapInuse, metricStackInuse, metricGoSys,
		metricCPU, metricGCCycles)
	if err != nil {
		return memSample{}, err
	}
	if _, ok := m[metricRSS]; !ok {
		return memSample{}, fmt.Errorf("no %s on %s (sard's process collector reads /proc: Linux only)", metricRSS, r.o.MetricsURL)
	}
	const mib = 1 << 20
	r.memMu.Lock()
	defer r.memMu.Unlock()
	s := memSample{AtS: round3(time.Since(r.start).Seconds()), Phase: r.phase, RSSMiB: round3(m[metricRSS] / mib),
		HeapMiB: round3(m[metricHeapInuse] / mib), StackMiB: round3(m[metricStackInuse] / mib), GoSysMiB: round3(m[metricGoSys] / mib),
		Goroutines: m[metricGoroutines], OpenFDs: m[metricFDs], CPUS: m[metricCPU], GCCycles: m[metricGCCycles],
		Acked: r.acked.Load()}
	r.samples = append(r.samples, s)
	return s, nil
}

// sampler reads sard's memory every o.Sample until done closes; a failed
// reading is logged and skipped.
func (r *streamsRun) sampler(ctx context.Context, done <-chan struct{}) {
	t := time.NewTicker(r.o.Sample)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			if s, err := r.readMem(ctx); err != nil {
				r.logf("  bench: reading %s: %v", r.o.MetricsURL, err)
			} else {
				r.logf("  %6.1fs  %-7s  sard rss %7.1f MiB  heap %6.1f MiB  stacks %6.1f MiB  goroutines %6.0f  fds %5.0f  streams %d  acked %d  errors %d",
					s.AtS, s.Phase, s.RSSMiB, s.HeapMiB, s.StackMiB, s.Goroutines, s.OpenFDs, r.streams.Load(), r.acked.Load(),
					r.failures.Load()+r.problems.Load()+r.rejected.Load()+r.duplicates.Load())
			}
		}
	}
}

// runStreamsBench sets up an agency, an incident and one credential per
// device, opens a stream per device, holds them open for o.Duration with a
// batch every o.Interval from each, and reads sard's memory throughout.
// Setup failures are returned as errors; failures of streams are counted.
func runStreamsBench(ctx context.Context, o streamsOptions) (*streamsResult, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	nconn := connCount(o.Conns, o.Devices)
	// Each connection is a file; Go raised the soft limit to the hard one
	// when this process started (os/syscall's init), so what is left is the
	// hard limit.
	if limit, ok := openFileLimit(); ok && uint64(nconn)+fdHeadroom > limit {
		return nil, fmt.Errorf("bench: %d connections need about %d open files, and this process may open %d: "+
			"raise the limit (ulimit -Hn; ulimit -n) or share connections with --conns", nconn, uint64(nconn)+fdHeadroom, limit)
	}
	runID := newRunID()
	r := &streamsRun{o: o, stop: make(chan struct{}), start: time.Now(), phase: phaseBefore}
	before, err := r.readMem(ctx)
	if err != nil {
		return nil, fmt.Errorf("bench: read --metrics-url: %w", err)
	}
	sampleDone := make(chan struct{})
	var sampling sync.WaitGroup
	sampling.Go(func() { r.sampler(ctx, sampleDone) })
	defer func() { // on a setup failure; a normal end stops it first
		select {
		case <-sampleDone:
		default:
			close(sampleDone)
		}
		sampling.Wait()
	}()
	r.setPhase(phaseSetup)

	admin, err := dial(o.TLS, o.Addr)
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	actx := withToken(ctx, o.Token)
	incidents := sarv1.NewIncidentServiceClient(admin)
	r.logf("bench %s: setting up on %s: agency, incident, %d rescuer credentials; sard rss %.1f MiB, %.0f goroutines",
		runID, o.Addr, o.Devices, before.RSSMiB, before.Goroutines)
	if r.incident, err = setupBenchIncident(actx, admin, runID); err != nil {
		return nil, err
	}
	defer func() {
		if !o.Keep {
			closeBenchIncident(actx, incidents, r.incident, runID, o.Log)
		}
	}()

	conns, closeConns, err := dialAll(nconn, func(int) (*grpc.ClientConn, error) { return dial(o.TLS, o.Addr) })
	defer closeConns()
	if err != nil {
		return nil, err
	}
	r.devices = make([]*streamDevice, o.Devices)
	for i := range r.devices {
		r.devices[i] = &streamDevice{id: fmt.Sprintf("%s-%05d", runID, i), seed: uint64(i) + 1, conn: conns[i%nconn]}
	}
	authc := sarv1.NewAuthServiceClient(admin)
	// The credentials outlive the hold (with time to set up and to close).
	ttl := o.Duration + time.Hour
	if err := parallel(o.Devices, o.Setup, func(i int) error {
		d := r.devices[i]
		return retryLimited(actx, func(ctx context.Context) error {
			resp, err := authc.CreateCredential(ctx, &sarv1.CreateCredentialRequest{Role: sarv1.Role_ROLE_RESCUER,
				AgencyId: runID, DisplayName: "bench device " + d.id, Ttl: durationpb.New(ttl)})
			d.token = resp.GetToken()
			return err
		})
	}); err != nil {
		return nil, fmt.Errorf("bench: create credentials: %w", err)
	}
	r.logf("bench %s: %d credentials made; joining the incident over %d connections", runID, o.Devices, nconn)
	// Joining connects each device's connection (gRPC connects lazily).
	if err := parallel(o.Devices, o.Setup, func(i int) error {
		d := r.devices[i]
		return retryLimited(withToken(ctx, d.token), func(ctx context.Context) error {
			_, err := sarv1.NewIncidentServiceClient(d.conn).JoinIncident(ctx,
				&sarv1.JoinIncidentRequest{IncidentId: r.incident, DeviceId: d.id, DisplayName: "bench " + d.id})
			return err
		})
	}); err != nil {
		return nil, fmt.Errorf("bench: join incident: %w", err)
	}

	r.setPhase(phaseOpening)
	r.logf("bench %s: incident %s: opening %d streams over %d connections; a batch of %d every %v from each, held %v",
		runID, r.incident, o.Devices, nconn, o.Batch, o.Interval, o.Duration)
	var cutStreams context.CancelFunc
	r.cut, cutStreams = context.WithCancel(context.Background())
	defer cutStreams()
	openStart := time.Now()
	r.opened.Add(o.Devices)
	var devs sync.WaitGroup
	for _, d := range r.devices {
		devs.Go(func() { d.run(r) })
	}
	r.opened.Wait()
	openS := time.Since(openStart).Seconds()
	r.setPhase(phaseHold)
	r.logf("bench %s: %d streams open in %.1f s (%d failed); holding for %v", runID, r.streams.Load(), openS, r.failures.Load(), o.Duration)
	holdStart := time.Since(r.start)
	select {
	case <-time.After(o.Duration):
	case <-ctx.Done(): // Ctrl-C ends the hold early, cleanly
	}
	holdEnd := time.Since(r.start)
	r.setPhase(phaseClosing)
	close(r.stop)
	cutTimer := time.AfterFunc(drainTimeout, cutStreams) // a batch in flight has drainTimeout for its ack
	devs.Wait()
	cutTimer.Stop()
	for _, c := range conns {
		_ = c.Close()
	}
	r.setPhase(phaseAfter)
	// Give sard a moment to notice the closed connections.
	select {
	case <-time.After(min(o.Sample, 2*time.Second)):
	case <-ctx.Done():
	}
	close(sampleDone)
	sampling.Wait()
	after, err := r.readMem(context.WithoutCancel(ctx))
	if err != nil {
		r.logf("bench: reading %s after the run: %v", o.MetricsURL, err)
	}

	res := r.result(nconn, openS, holdEnd-holdStart)
	res.Before, res.After = before, after
	// The plateau: the median (by RSS) of the readings in the second half
	// of the hold, when every device has sent and its stream is warm.
	var plateau, hold []memSample
	mid := (holdStart + (holdEnd-holdStart)/2).Seconds()
	for _, s := range r.samples {
		if s.Phase == phaseHold {
			hold = append(hold, s)
		}
		if s.Phase == phaseHold && s.AtS >= mid {
			plateau = append(plateau, s)
		}
		if s.RSSMiB > res.Peak.RSSMiB {
			res.Peak = s
		}
	}
	if len(plateau) == 0 { // a hold shorter than two samples: its last reading
		for _, s := range r.samples {
			if s.Phase == phaseHold {
				plateau = []memSample{s}
			}
		}
	}
	if len(plateau) > 0 {
		slices.SortFunc(plateau, func(a, b memSample) int { return cmpFloat(a.RSSMiB, b.RSSMiB) })
		res.Plateau = plateau[(len(plateau)-1)/2]
		res.PlateauRSSMiB = res.Plateau.RSSMiB
		res.PerStreamKiB = round3((res.Plateau.RSSMiB - before.RSSMiB) * 1024 / float64(o.Devices))
	}
	res.PeakRSSMiB = res.Peak.RSSMiB
	if len(hold) > 1 {
		first, last := hold[0], hold[len(hold)-1]
		res.HoldCPUS, res.HoldGCs = round3(last.CPUS-first.CPUS), last.GCCycles-first.GCCycles
		if n := last.Acked - first.Acked; n > 0 {
			res.CPUMsPerBatch = round3(res.HoldCPUS * 1000 / float64(n))
		}
	}
	res.Samples = r.samples
	return res, nil
}

// fdHeadroom is what the bench opens besides the devices' connections.
const fdHeadroom = 64

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// setupBenchIncident creates the run's agency and an incident that
// assigns it, and returns the incident's id.
func setupBenchIncident(ctx context.Context, admin *grpc.ClientConn, runID string) (string, error) {
	if err := retryLimited(ctx, func(ctx context.Context) error {
		_, err := sarv1.NewAgencyServiceClient(admin).CreateAgency(ctx, &sarv1.CreateAgencyRequest{Agency: &sarv1.Agency{
			Id: runID, Name: "sarctl bench " + runID, Kind: sarv1.AgencyKind_AGENCY_KIND_OTHER, Jurisdiction: benchJurisdiction}})
		return err
	}); err != nil {
		return "", fmt.Errorf("bench: create agency (is --token an admin token?): %w", err)
	}
	var id string
	if err := retryLimited(ctx, func(ctx context.Context) error {
		resp, err := sarv1.NewIncidentServiceClient(admin).CreateIncident(ctx, &sarv1.CreateIncidentRequest{
			Title: "sarctl bench " + runID, Jurisdiction: benchJurisdiction, AgencyIds: []string{runID}, RequestId: runID,
			InitialPlanningPoint: &sarv1.PlanningPoint{Position: &sarv1.LatLng{Lat: benchLat, Lng: benchLng}, AccuracyM: 50},
			Subject:              &sarv1.SubjectProfile{Category: sarv1.SubjectCategory_SUBJECT_CATEGORY_HIKER, NumberOfPeople: 1}})
		id = resp.GetIncident().GetId()
		return err
	}); err != nil {
		return "", fmt.Errorf("bench: create incident: %w", err)
	}
	return id, nil
}

// run opens the device's stream, then sends a batch every interval from a
// random phase and waits for its ack, until the hold is over; then it
// closes the stream. One batch in flight, as a phone that sends its next
// batch only after the last was acknowledged. With --report there is no
// stream: each batch is one ReportFixes call on the device's connection.
func (d *streamDevice) run(r *streamsRun) {
	ctx, cancel := context.WithCancel(withToken(r.cut, d.token))
	defer cancel()
	client := sarv1.NewLocationServiceClient(d.conn)
	var stream sarv1.LocationService_StreamFixesClient
	if !r.o.Report {
		var err error
		stream, err = client.StreamFixes(ctx)
		if err != nil {
			r.opened.Done()
			r.failures.Add(1)
			r.sample("%s: open stream: %v", d.id, err)
			return
		}
	}
	r.opened.Done()
	r.streams.Add(1)
	select {
	case <-time.After(time.Duration(mrand.Int64N(int64(r.o.Interval)))):
	case <-r.stop:
	}
	tick := time.NewTicker(r.o.Interval)
	defer tick.Stop()
	w := newWalker(d.seed)
	seq := uint64(1)
	for id := uint64(1); ; id++ {
		select {
		case <-r.stop:
			if stream != nil {
				d.close(r, stream)
			}
			return
		default:
		}
		batch := &sarv1.FixBatch{IncidentId: r.incident, DeviceId: d.id, BatchId: id, Fixes: w.Batch(seq, r.o.Batch, time.Now())}
		at := time.Now()
		r.batches.Add(1)
		r.sent.Add(int64(r.o.Batch))
		seq += uint64(r.o.Batch)
		if stream != nil {
			if err := stream.Send(&sarv1.StreamFixesRequest{Batch: batch}); err != nil {
				_, err = stream.Recv() // the stream's own error
				r.failures.Add(1)
				r.sample("%s: send batch %d: %v", d.id, id, err)
				return
			}
			resp, err := stream.Recv()
			if err != nil {
				r.failures.Add(1)
				r.sample("%s: batch %d: %v", d.id, id, err)
				return
			}
			d.acked(r, id, at, resp.GetAck())
		} else {
			resp, err := client.ReportFixes(ctx, &sarv1.ReportFixesRequest{Batch: batch})
			switch status.Code(err) {
			case codes.OK:
				d.acked(r, id, at, resp.GetAck())
			case codes.Unavailable, codes.Canceled, codes.DeadlineExceeded: // the connection, not the batch
				r.failures.Add(1)
				r.sample("%s: batch %d: %v", d.id, id, err)
			default: // a batch-level problem is the call's status; the device goes on
				r.problems.Add(1)
				r.sample("%s: batch %d refused: %v", d.id, id, err)
			}
		}
		select {
		case <-tick.C:
		case <-r.stop:
		}
	}
}

func (d *streamDevice) acked(r *streamsRun, id uint64, at time.Time, ack *sarv1.FixAck) {
	d.ackMs = append(d.ackMs, ms(time.Since(at)))
	r.acked.Add(1)
	r.count(d, id, ack)
}

// close ends the stream and waits for the server's end of it.
func (d *streamDevice) close(r *streamsRun, stream sarv1.LocationService_StreamFixesClient) {
	_ = stream.CloseSend()
	if resp, err := stream.Recv(); !errors.Is(err, io.EOF) {
		r.failures.Add(1)
		r.sample("%s: end of stream: %v, %v (want EOF)", d.id, resp, err)
	}
}

func (r *streamsRun) count(d *streamDevice, id uint64, ack *sarv1.FixAck) {
	if ack.GetBatchId() != id {
		r.failures.Add(1)
		r.sample("%s: ack for batch %d, want %d", d.id, ack.GetBatchId(), id)
	}
	r.stored.Add(int64(len(ack.GetStored())))
	if n := len(ack.GetDuplicates()); n > 0 {
		r.duplicates.Add(int64(n))
		r.sample("%s: batch %d: %d duplicates", d.id, id, n)
	}
	if n := len(ack.GetRejected()); n > 0 {
		r.rejected.Add(int64(n))
		r.sample("%s: batch %d: %d rejected, first: %v", d.id, id, n, ack.GetRejected()[0].GetViolation())
	}
	if p := ack.GetProblem(); p != nil {
		r.problems.Add(1)
		r.sample("%s: batch %d refused: %s: %s", d.id, id, codes.Code(p.GetCode()), p.GetMessage())
	}
}

func (r *streamsRun) result(nconn int, openS float64, hold time.Duration) *streamsResult {
	res := &streamsResult{IncidentID: r.incident, Devices: r.o.Devices, Conns: nconn, Mode: "stream", Batch: r.o.Batch,
		IntervalS: r.o.Interval.Seconds(), HoldS: round3(hold.Seconds()), OpenS: round3(openS),
		Streams: r.streams.Load(), Batches: r.batches.Load(), Acked: r.acked.Load(), Sent: r.sent.Load(), Stored: r.stored.Load(),
		Expected: int64(float64(r.o.Devices) * hold.Seconds() / r.o.Interval.Seconds()),
		Rejected: r.rejected.Load(), Duplicates: r.duplicates.Load(), Problems: r.problems.Load(), StreamErrors: r.failures.Load()}
	if r.o.Report {
		res.Mode = "report"
	}
	res.Errors = res.Rejected + res.Duplicates + res.Problems + res.StreamErrors
	res.ErrorSamples = r.errSamples
	var acks []float64
	for _, d := range r.devices {
		acks = append(acks, d.ackMs...)
	}
	p := percentiles(acks, 50, 99, 100)
	res.AckP50Ms, res.AckP99Ms, res.AckMaxMs = round3(p[0]), round3(p[1]), round3(p[2])
	return res
}

// write prints a summary, and with asJSON the result as one JSON object on
// the last line.
func (res *streamsResult) write(w io.Writer, asJSON bool) error {
	how := "a stream each"
	if res.Mode == "report" {
		how = "a ReportFixes call per batch"
	}
	fmt.Fprintf(w, "bench streams: %d devices on %d connections (%s), a batch of %d every %.0f s, held %.1f s (opened in %.1f s; incident %s)\n",
		res.Devices, res.Conns, how, res.Batch, res.IntervalS, res.HoldS, res.OpenS, res.IncidentID)
	fmt.Fprintf(w, "  devices     %d sending; %d batches sent (about %d expected in the hold), %d acknowledged; %d of %d fixes stored\n",
		res.Streams, res.Batches, res.Expected, res.Acked, res.Stored, res.Sent)
	fmt.Fprintf(w, "  batch->ack  p50 %.2f ms  p99 %.2f ms  max %.2f ms\n", res.AckP50Ms, res.AckP99Ms, res.AckMaxMs)
	fmt.Fprintf(w, "  errors      %d (rejected %d, duplicates %d, refused batches %d, stream errors %d)\n",
		res.Errors, res.Rejected, res.Duplicates, res.Problems, res.StreamErrors)
	for _, s := range res.ErrorSamples {
		fmt.Fprintf(w, "    %s\n", s)
	}
	fmt.Fprintf(w, "  sard memory (MiB)   rss      heap    stacks   go sys   goroutines  open fds\n")
	for _, row := range []struct {
		name string
		s    memSample
	}{{"before", res.Before}, {"plateau", res.Plateau}, {"peak", res.Peak}, {"after", res.After}} {
		fmt.Fprintf(w, "    %-8s %6.1fs %8.1f %8.1f %8.1f %8.1f %10.0f %9.0f\n", row.name, row.s.AtS,
			row.s.RSSMiB, row.s.HeapMiB, row.s.StackMiB, row.s.GoSysMiB, row.s.Goroutines, row.s.OpenFDs)
	}
	fmt.Fprintf(w, "  per stream  %.1f KiB of sard's RSS ((plateau - before) / devices)\n", res.PerStreamKiB)
	fmt.Fprintf(w, "  sard CPU    %.2f s in the hold (%.2f ms per batch), %.0f GC cycles\n", res.HoldCPUS, res.CPUMsPerBatch, res.HoldGCs)
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
