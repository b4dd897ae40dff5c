package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/mountain-sar/sar/dispatch"
	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/tlsutil"
)

type benchDispatchCmd struct {
	Agencies     int           `default:"4" help:"Bench agencies, one kind after the other: police station, volunteer rescue, fire brigade, villagers (then township command, other)."`
	Teams        int           `default:"100" help:"Teams in all, dealt to the agencies in turn. Each gets a rescuer credential, --devices StreamTasks streams and a durable JetStream consumer of its task subject."`
	Devices      int           `default:"1" help:"Devices per team, each on its own gRPC connection and StreamTasks stream from an empty cursor."`
	Rounds       int           `default:"5" help:"Rounds; in each, one task is created per team, and the round ends when every consumer and device has its task (or after --wait)."`
	Concurrency  int           `default:"10" help:"CreateTask calls in flight at once."`
	Kind         string        `default:"stand-by" enum:"stand-by,go-to-point" help:"Kind of the tasks: stand-by or go-to-point."`
	Wait         time.Duration `default:"10s" help:"How long a round waits for its deliveries before the next one starts."`
	Escalations  int           `default:"1000" help:"Offers of the escalation test (0: no test): all to the one team of an incident that has no other team, so that each lapses once and becomes unanswered."`
	AnswerWithin time.Duration `name:"answer-within" default:"1s" help:"Answer time of the escalation test's offers; sard must allow it (sard --min-answer-within)."`
	NATSURL      string        `name:"nats-url" env:"SAR_BENCH_NATS_URL" required:"" help:"The NATS server sard publishes to (its --nats-url): the bench creates a durable JetStream consumer per team there, as an agency's system would, and deletes them afterwards."`
	MetricsURL   string        `name:"metrics-url" env:"SAR_BENCH_METRICS_URL" help:"sard's Prometheus page (http://<http-addr>/metrics): if given, sard's CPU time and its lapsed-offer counter (sar_task_offers_lapsed_total) are read before and after."`
	JSON         bool          `name:"json" help:"Print the result as one JSON object on the last line of stdout."`
	Keep         bool          `help:"Leave the bench incidents open and the consumers in place (by default the incidents are closed as false alarms and the consumers deleted)."`
	Quiet        bool          `help:"No setup and progress lines on stderr."`
}

func (c *benchDispatchCmd) Run(ctx context.Context, g *Globals, w io.Writer) error {
	log := progressLog(c.Quiet)
	res, err := runDispatchBench(ctx, dispatchOptions{Addr: g.Addr, Token: g.Token, TLS: g.Client(), NATSURL: c.NATSURL, MetricsURL: c.MetricsURL,
		Agencies: c.Agencies, Teams: c.Teams, Devices: c.Devices, Rounds: c.Rounds, Concurrency: c.Concurrency, Kind: c.Kind,
		Wait: c.Wait, Escalations: c.Escalations, AnswerWithin: c.AnswerWithin, Keep: c.Keep, Log: log})
	if err != nil {
		return err
	}
	return report(w, c.JSON, res, res.Errors)
}

// dispatchOptions configures one dispatch bench run.
type dispatchOptions struct {
	Addr, Token         string
	TLS                 tlsutil.Client
	NATSURL, MetricsURL string
	Agencies, Teams     int
	Devices             int // per team
	Rounds              int
	Concurrency         int
	Kind                string // "stand-by" or "go-to-point"
	Wait                time.Duration
	Escalations         int
	AnswerWithin        time.Duration
	Keep                bool
	Log                 io.Writer
}

func (o dispatchOptions) check() error {
	switch {
	case o.Token == "":
		return errors.New("bench: an admin --token is required (SAR_TOKEN)")
	case o.NATSURL == "":
		return errors.New("bench: --nats-url is required: the NATS server sard publishes to")
	case o.Agencies < 1 || o.Agencies > 100:
		return errors.New("bench: --agencies must be from 1 to 100")
	case o.Teams < o.Agencies || o.Teams > 10_000:
		return errors.New("bench: --teams must be from --agencies to 10000")
	case o.Devices < 1 || o.Devices > 100:
		return errors.New("bench: --devices must be from 1 to 100")
	case o.Rounds < 1 || o.Rounds > 1000:
		return errors.New("bench: --rounds must be from 1 to 1000")
	case o.Concurrency < 1 || o.Concurrency > 1000:
		return errors.New("bench: --concurrency must be from 1 to 1000")
	case o.Kind != "stand-by" && o.Kind != "go-to-point":
		return errors.New("bench: --kind must be stand-by or go-to-point")
	case o.Wait <= 0:
		return errors.New("bench: --wait must be more than 0")
	case o.Escalations < 0 || o.Escalations > 100_000:
		return errors.New("bench: --escalations must be from 0 to 100000")
	case o.Escalations > 0 && (o.AnswerWithin <= 0 || o.AnswerWithin > time.Hour):
		return errors.New("bench: --answer-within must be more than 0 and at most 1h")
	}
	return nil
}

// dispatchResult is what a dispatch bench run measured. Latencies are in
// milliseconds, from the bench's clock (creation to arrival) or, for
// escalations, from sard's (deadline to escalation).
type dispatchResult struct {
	IncidentID     string  `json:"incident_id"`
	Agencies       int     `json:"agencies"`
	Teams          int     `json:"teams"`
	DevicesPerTeam int     `json:"devices_per_team"`
	Rounds         int     `json:"rounds"`
	Concurrency    int     `json:"concurrency"`
	Kind           string  `json:"kind"`
	Tasks          int64   `json:"tasks"`         // created (CreateTask answered OK)
	CreateErrors   int64   `json:"create_errors"` // CreateTask calls that failed
	RateLimited    int64   `json:"rate_limited"`  // CreateTask retries after RESOURCE_EXHAUSTED (counted in the latency)
	CreateP50Ms    float64 `json:"create_p50_ms"`
	CreateP99Ms    float64 `json:"create_p99_ms"`
	CreateMaxMs    float64 `json:"create_max_ms"`
	TasksPerS      float64 `json:"tasks_per_s"` // created / time spent creating (first send to last answer, summed over rounds)

	ConsumerExpected   int64   `json:"consumer_expected"`  // tasks: each to its team's consumer
	ConsumerDelivered  int64   `json:"consumer_delivered"` // of those, received at least once
	ConsumerMissing    int64   `json:"consumer_missing"`
	ConsumerDuplicates int64   `json:"consumer_duplicates"` // received more than once (extra copies)
	ConsumerP50Ms      float64 `json:"consumer_p50_ms"`     // CreateTask sent -> first arrival at the consumer
	ConsumerP90Ms      float64 `json:"consumer_p90_ms"`
	ConsumerP99Ms      float64 `json:"consumer_p99_ms"`
	ConsumerMaxMs      float64 `json:"consumer_max_ms"`
	DeviceExpected     int64   `json:"device_expected"` // tasks x devices per team
	DeviceDelivered    int64   `json:"device_delivered"`
	DeviceMissing      int64   `json:"device_missing"`
	DeviceDuplicates   int64   `json:"device_duplicates"`
	DeviceP50Ms        float64 `json:"device_p50_ms"` // CreateTask sent -> arrival on a device's StreamTasks
	DeviceP90Ms        float64 `json:"device_p90_ms"`
	DeviceP99Ms        float64 `json:"device_p99_ms"`
	DeviceMaxMs        float64 `json:"device_max_ms"`
	StreamErrors       int64   `json:"stream_errors"`        // broken device streams, consumer errors, misrouted tasks
	SardCPUS           float64 `json:"sard_cpu_s"`           // sard's CPU seconds during the rounds (-1: not read)
	SardCPUMsPerTask   float64 `json:"sard_cpu_ms_per_task"` // ... per task created

	EscalationIncidentID string  `json:"escalation_incident_id,omitempty"`
	Escalations          int     `json:"escalations"` // offers asked for
	AnswerWithinS        float64 `json:"answer_within_s"`
	EscCreated           int64   `json:"esc_created"`
	EscCreateErrors      int64   `json:"esc_create_errors"`
	EscCreateS           float64 `json:"esc_create_s"` // time to create the offers
	Escalated            int64   `json:"escalated"`    // offers seen unanswered (on the team's consumer)
	EscMissing           int64   `json:"esc_missing"`  // created offers never seen unanswered
	EscDuplicates        int64   `json:"esc_duplicates"`
	EscUnexpected        int64   `json:"esc_unexpected"`    // unanswered with other than one missed offer
	EscalationsPerS      float64 `json:"escalations_per_s"` // sard's sweep rate while escalating (its timestamps)
	EscSweeps            int     `json:"esc_sweeps"`        // sweeps the escalations came in (gaps over 250 ms)
	EscDrainS            float64 `json:"esc_drain_s"`       // last deadline -> last escalation
	EscLagP50Ms          float64 `json:"esc_lag_p50_ms"`    // deadline -> escalated (sard's clock)
	EscLagP99Ms          float64 `json:"esc_lag_p99_ms"`
	EscLagMaxMs          float64 `json:"esc_lag_max_ms"`
	LapsedMetricDelta    float64 `json:"lapsed_metric_delta"` // sar_task_offers_lapsed_total after - before (-1: not read)
	ListUnanswered       int     `json:"list_unanswered"`     // ListTasks: unanswered (at most 1000 listed)
	ListOffered          int     `json:"list_offered"`        // ListTasks: still offered (want 0)

	DurationS    float64  `json:"duration_s"`
	Errors       int64    `json:"errors"`
	ErrorSamples []string `json:"error_samples,omitempty"`
}

// Names of the metrics read from sard.
const (
	metricCPU    = "process_cpu_seconds_total"
	metricLapsed = "sar_task_offers_lapsed_total"
	sweepGap     = 250 * time.Millisecond // escalations further apart came in different sweeps
)

var benchAgencyKinds = []struct {
	slug string
	kind sarv1.AgencyKind
}{
	{"police", sarv1.AgencyKind_AGENCY_KIND_POLICE_STATION},
	{"volunteers", sarv1.AgencyKind_AGENCY_KIND_VOLUNTEER_RESCUE},
	{"fire", sarv1.AgencyKind_AGENCY_KIND_FIRE_BRIGADE},
	{"villagers", sarv1.AgencyKind_AGENCY_KIND_VILLAGERS},
	{"township", sarv1.AgencyKind_AGENCY_KIND_TOWNSHIP_COMMAND},
	{"other", sarv1.AgencyKind_AGENCY_KIND_OTHER},
}

// dTeam is one bench team: its credential, consumer and devices.
type dTeam struct {
	agency, id, token string
	consumer          string // durable consumer name
	cc                jetstream.ConsumeContext

	mu     sync.Mutex
	consAt map[int][]time.Duration // task index -> arrivals at the team's consumer (since run start)

	devices []*dDevice
}

// dDevice is one team member's phone following StreamTasks.
type dDevice struct {
	team *dTeam
	conn *grpc.ClientConn
	done chan struct{}
	at   map[int][]time.Duration // task index -> arrivals; written by the receiver, read after done
}

// dispatchRun is the shared state of one dispatch bench run.
type dispatchRun struct {
	o        dispatchOptions
	runID    string
	incident string
	start    time.Time
	teams    []*dTeam
	titles   map[string]int  // task title -> task index (round x teams + team); read-only once the rounds start
	sentAt   []time.Duration // by task index: CreateTask sent
	createMs []float64       // by task index: answer - sent; -1 on failure

	consFirst, devFirst     atomic.Int64 // tasks seen for the first time at a consumer, at a device
	createErrs, rateLimited atomic.Int64
	streamErrs              atomic.Int64
	errMu                   sync.Mutex
	errSamples              []string
}

func (r *dispatchRun) since() time.Duration { return time.Since(r.start) }

func (r *dispatchRun) logf(format string, args ...any) { fmt.Fprintf(r.o.Log, format+"\n", args...) }

func (r *dispatchRun) sample(format string, args ...any) {
	r.errMu.Lock()
	defer r.errMu.Unlock()
	if len(r.errSamples) < maxErrorSamples {
		r.errSamples = append(r.errSamples, fmt.Sprintf(format, args...))
	}
}

func taskTitle(runID string, round int, tm *dTeam) string {
	return fmt.Sprintf("%s r%d %s/%s", runID, round, tm.agency, tm.id)
}

// runDispatchBench sets up agencies, teams, devices and consumers, creates
// tasks in rounds and times their delivery, then times the escalation of
// lapsed offers. Setup failures are returned as errors; failures during
// the run are counted in the result.
func runDispatchBench(ctx context.Context, o dispatchOptions) (*dispatchResult, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	r := &dispatchRun{o: o, runID: newRunID(), titles: map[string]int{}}
	runStart := time.Now()

	admin, err := dial(o.TLS, o.Addr)
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	actx := withToken(ctx, o.Token)
	agencies, incidents, authc := sarv1.NewAgencyServiceClient(admin), sarv1.NewIncidentServiceClient(admin), sarv1.NewAuthServiceClient(admin)

	nc, err := nats.Connect(o.NATSURL, nats.Name("sarctl bench dispatch "+r.runID))
	if err != nil {
		return nil, fmt.Errorf("bench: connect to NATS %s: %w", o.NATSURL, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("bench: JetStream: %w", err)
	}
	if _, err := js.Stream(ctx, dispatch.StreamName); err != nil {
		return nil, fmt.Errorf("bench: stream %s on %s (is --nats-url the NATS server sard publishes to?): %w", dispatch.StreamName, o.NATSURL, err)
	}

	r.logf("bench %s: setting up on %s: %d agencies, %d teams, %d devices, %d consumers on %s",
		r.runID, o.Addr, o.Agencies, o.Teams, o.Teams*o.Devices, o.Teams, o.NATSURL)
	agencyIDs := make([]string, o.Agencies)
	for i := range agencyIDs {
		k := benchAgencyKinds[i%len(benchAgencyKinds)]
		agencyIDs[i] = fmt.Sprintf("%s-%d-%s", r.runID, i, k.slug)
		if err := createBenchAgency(actx, agencies, agencyIDs[i], k.kind); err != nil {
			return nil, err
		}
	}
	r.teams = make([]*dTeam, o.Teams)
	for j := range r.teams {
		r.teams[j] = &dTeam{agency: agencyIDs[j%o.Agencies], id: fmt.Sprintf("t%03d", j), consAt: map[int][]time.Duration{}}
	}
	if err := parallel(o.Teams, 8, func(j int) error {
		tm := r.teams[j]
		if err := createBenchTeam(actx, agencies, tm.agency, tm.id); err != nil {
			return err
		}
		return retryLimited(actx, func(ctx context.Context) error {
			resp, err := authc.CreateCredential(ctx, &sarv1.CreateCredentialRequest{Role: sarv1.Role_ROLE_RESCUER,
				AgencyId: tm.agency, TeamId: tm.id, DisplayName: "bench " + tm.agency + "/" + tm.id, Ttl: durationpb.New(time.Hour)})
			tm.token = resp.GetToken()
			return err
		})
	}); err != nil {
		return nil, fmt.Errorf("bench: create teams and credentials: %w", err)
	}
	inc, err := createBenchIncident(actx, incidents, r.runID, "dispatch", agencyIDs)
	if err != nil {
		return nil, err
	}
	r.incident = inc
	res := &dispatchResult{IncidentID: inc, Agencies: o.Agencies, Teams: o.Teams, DevicesPerTeam: o.Devices, Rounds: o.Rounds,
		Concurrency: o.Concurrency, Kind: o.Kind, Escalations: o.Escalations, SardCPUS: -1, LapsedMetricDelta: -1}
	if !o.Keep {
		defer closeBenchIncident(actx, incidents, inc, r.runID, o.Log)
	}

	// The tasks' titles, known before anything can arrive.
	for round := range o.Rounds {
		for j, tm := range r.teams {
			r.titles[taskTitle(r.runID, round, tm)] = round*o.Teams + j
		}
	}

	// Consumers: one durable pull consumer per team, filtered on the
	// team's task subject of the bench incident.
	r.start = time.Now()
	defer func() {
		for _, tm := range r.teams {
			if tm.cc != nil {
				tm.cc.Stop()
			}
		}
		if !o.Keep {
			deleteConsumers(js, r.teams, o.Log)
		}
	}()
	if err := parallel(o.Teams, 8, func(j int) error {
		tm := r.teams[j]
		tm.consumer = fmt.Sprintf("%s-%s-tasks", tm.agency, tm.id)
		cc, err := benchConsumer(ctx, js, tm.consumer, taskSubject(inc, tm.agency, tm.id), func(m jetstream.Msg) { r.onConsumer(tm, m) })
		tm.cc = cc
		return err
	}); err != nil {
		return nil, fmt.Errorf("bench: create consumers: %w", err)
	}

	// Devices: StreamTasks from an empty cursor, each on its own
	// connection, until caught up.
	dctx, stopDevices := context.WithTimeout(ctx, 24*time.Hour)
	defer stopDevices()
	var devices []*dDevice
	defer func() {
		for _, d := range devices {
			_ = d.conn.Close()
		}
	}()
	for _, tm := range r.teams {
		for range o.Devices {
			conn, err := dial(o.TLS, o.Addr)
			if err != nil {
				return nil, err
			}
			d := &dDevice{team: tm, conn: conn, done: make(chan struct{}), at: map[int][]time.Duration{}}
			tm.devices = append(tm.devices, d)
			devices = append(devices, d)
		}
	}
	ready := make(chan error, len(devices))
	for _, d := range devices {
		go d.run(dctx, r, ready)
	}
	readyBy := time.After(time.Minute)
	for range devices {
		select {
		case err := <-ready:
			if err != nil {
				return nil, fmt.Errorf("bench: StreamTasks: %w", err)
			}
		case <-readyBy:
			return nil, errors.New("bench: StreamTasks: devices not caught up after a minute")
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}

	// The rounds.
	tasksc := sarv1.NewTaskServiceClient(admin)
	n := o.Rounds * o.Teams
	r.sentAt, r.createMs = make([]time.Duration, n), make([]float64, n)
	var cpu0 map[string]float64
	if o.MetricsURL != "" {
		if cpu0, err = scrapeMetrics(ctx, o.TLS, o.MetricsURL, metricCPU); err != nil {
			return nil, fmt.Errorf("bench: read --metrics-url: %w", err)
		}
	}
	r.logf("bench %s: incident %s: %d rounds of one %s task per team, %d CreateTask calls at a time",
		r.runID, inc, o.Rounds, o.Kind, o.Concurrency)
	var creating time.Duration
	var created int64
	for round := range o.Rounds {
		if ctx.Err() != nil {
			break
		}
		t0 := time.Now()
		_ = parallel(o.Teams, o.Concurrency, func(j int) error {
			k := round*o.Teams + j
			if r.createTask(actx, tasksc, k, r.teams[j], round) {
				atomic.AddInt64(&created, 1)
			}
			return nil
		})
		creating += time.Since(t0)
		want := atomic.LoadInt64(&created)
		end := time.Now().Add(o.Wait)
		for (r.consFirst.Load() < want || r.devFirst.Load() < want*int64(o.Devices)) && time.Now().Before(end) && ctx.Err() == nil {
			time.Sleep(2 * time.Millisecond)
		}
		r.logf("  round %d: %d tasks created, consumers have %d, devices %d", round+1, want, r.consFirst.Load(), r.devFirst.Load())
	}
	if o.MetricsURL != "" {
		if cpu1, err := scrapeMetrics(ctx, o.TLS, o.MetricsURL, metricCPU); err == nil {
			res.SardCPUS = round3(cpu1[metricCPU] - cpu0[metricCPU])
			if created > 0 {
				res.SardCPUMsPerTask = round3(res.SardCPUS * 1000 / float64(created))
			}
		}
	}
	// A moment for late duplicates, then stop listening.
	time.Sleep(200 * time.Millisecond)
	stopDevices()
	for _, d := range devices {
		<-d.done
	}
	for _, tm := range r.teams {
		tm.cc.Stop()
		tm.cc = nil
	}
	r.result(res, creating)

	if o.Escalations > 0 && ctx.Err() == nil {
		if err := r.escalations(ctx, actx, js, agencies, incidents, authc, tasksc, res); err != nil {
			return nil, err
		}
	}
	res.DurationS = round3(time.Since(runStart).Seconds())
	res.Errors = res.CreateErrors + res.ConsumerMissing + res.ConsumerDuplicates + res.DeviceMissing + res.DeviceDuplicates +
		res.StreamErrors + res.EscCreateErrors + res.EscMissing + res.EscDuplicates + res.EscUnexpected + int64(res.ListOffered)
	if res.LapsedMetricDelta >= 0 && res.LapsedMetricDelta < float64(res.Escalated) {
		res.Errors += res.Escalated - int64(res.LapsedMetricDelta)
		r.sample("%s rose by %v, but %d offers were seen escalated", metricLapsed, res.LapsedMetricDelta, res.Escalated)
	}
	res.ErrorSamples = r.errSamples
	return res, nil
}

// createTask creates task k for team tm, timing the call from before its
// first attempt (a rate-limited call's retries count in its latency).
func (r *dispatchRun) createTask(ctx context.Context, tasks sarv1.TaskServiceClient, k int, tm *dTeam, round int) bool {
	req := &sarv1.CreateTaskRequest{IncidentId: r.incident, Title: taskTitle(r.runID, round, tm),
		Team: &sarv1.TeamRef{AgencyId: tm.agency, TeamId: tm.id}, AnswerWithin: durationpb.New(time.Hour),
		RequestId: fmt.Sprintf("%s-%d", r.runID, k)}
	if r.o.Kind == "go-to-point" {
		req.Kind, req.Point = sarv1.TaskKind_TASK_KIND_GO_TO_POINT, &sarv1.LatLng{Lat: benchLat + 0.001*float64(k%10), Lng: benchLng}
	} else {
		req.Kind = sarv1.TaskKind_TASK_KIND_STAND_BY
	}
	r.sentAt[k] = r.since()
	err := retryLimited(ctx, func(ctx context.Context) error {
		_, err := tasks.CreateTask(ctx, req)
		if status.Code(err) == codes.ResourceExhausted {
			r.rateLimited.Add(1)
		}
		return err
	})
	if err != nil {
		r.createMs[k] = -1
		r.createErrs.Add(1)
		r.sample("CreateTask for %s/%s: %v", tm.agency, tm.id, err)
		return false
	}
	r.createMs[k] = ms(r.since() - r.sentAt[k])
	return true
}

// taskIndex returns the bench task index of a task event or feed item
// that is a creation (version 1) of this run's tasks for team tm.
func (r *dispatchRun) taskIndex(t *sarv1.Task, tm *dTeam, where string) (int, bool) {
	if t.GetVersion() != 1 {
		return 0, false // a later change (the cancellation when the incident closes)
	}
	k, ok := r.titles[t.GetTitle()]
	if !ok {
		return 0, false
	}
	if t.GetTeam().GetAgencyId() != tm.agency || t.GetTeam().GetTeamId() != tm.id {
		r.streamErrs.Add(1)
		r.sample("%s of %s/%s got %s/%s's task %q", where, tm.agency, tm.id, t.GetTeam().GetAgencyId(), t.GetTeam().GetTeamId(), t.GetTitle())
		return 0, false
	}
	return k, true
}

func (r *dispatchRun) onConsumer(tm *dTeam, m jetstream.Msg) {
	now := r.since()
	_ = m.Ack()
	ev := &sarv1.Event{}
	if err := proto.Unmarshal(m.Data(), ev); err != nil {
		r.streamErrs.Add(1)
		r.sample("consumer %s: %s: not a sar.v1.Event: %v", tm.consumer, m.Subject(), err)
		return
	}
	k, ok := r.taskIndex(ev.GetTaskChanged().GetTask(), tm, "consumer")
	if !ok {
		return
	}
	tm.mu.Lock()
	first := len(tm.consAt[k]) == 0
	tm.consAt[k] = append(tm.consAt[k], now)
	tm.mu.Unlock()
	if first {
		r.consFirst.Add(1)
	}
}

// run follows the device's StreamTasks from an empty cursor; it reports
// on ready once caught up (or the error that ended it before).
func (d *dDevice) run(ctx context.Context, r *dispatchRun, ready chan<- error) {
	defer close(d.done)
	caughtUp := false
	fail := func(err error) {
		if !caughtUp {
			ready <- err
			return
		}
		if ctx.Err() == nil {
			r.streamErrs.Add(1)
			r.sample("device of %s/%s: StreamTasks: %v", d.team.agency, d.team.id, err)
		}
	}
	stream, err := sarv1.NewTaskServiceClient(d.conn).StreamTasks(withToken(ctx, d.team.token),
		&sarv1.StreamTasksRequest{IncidentId: r.incident})
	if err != nil {
		fail(err)
		return
	}
	for {
		m, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("stream ended")
			}
			fail(err)
			return
		}
		now := r.since()
		if m.GetCaughtUp() {
			if !caughtUp {
				caughtUp = true
				ready <- nil
			}
			continue
		}
		if m.GetNotice() != sarv1.TaskNoticeKind_TASK_NOTICE_KIND_UNSPECIFIED {
			continue
		}
		k, ok := r.taskIndex(m.GetTask(), d.team, "device")
		if !ok {
			continue
		}
		if len(d.at[k]) == 0 {
			r.devFirst.Add(1)
		}
		d.at[k] = append(d.at[k], now)
	}
}

// result fills in the rounds' figures.
func (r *dispatchRun) result(res *dispatchResult, creating time.Duration) {
	var createLat, consLat, devLat []float64
	for k, cm := range r.createMs {
		if cm < 0 || r.sentAt[k] == 0 && cm == 0 {
			continue // failed, or never sent (the run was cut short)
		}
		res.Tasks++
		createLat = append(createLat, cm)
		tm := r.teams[k%r.o.Teams]
		res.ConsumerExpected++
		tm.mu.Lock()
		at := tm.consAt[k]
		tm.mu.Unlock()
		if len(at) == 0 {
			res.ConsumerMissing++
		} else {
			res.ConsumerDelivered++
			res.ConsumerDuplicates += int64(len(at) - 1)
			consLat = append(consLat, ms(at[0]-r.sentAt[k]))
		}
		for _, d := range tm.devices {
			res.DeviceExpected++
			if at := d.at[k]; len(at) == 0 {
				res.DeviceMissing++
			} else {
				res.DeviceDelivered++
				res.DeviceDuplicates += int64(len(at) - 1)
				devLat = append(devLat, ms(at[0]-r.sentAt[k]))
			}
		}
	}
	if res.ConsumerMissing > 0 || res.DeviceMissing > 0 {
		r.sample("%d tasks never reached their team's consumer, %d device copies never arrived (within --wait %v)",
			res.ConsumerMissing, res.DeviceMissing, r.o.Wait)
	}
	res.CreateErrors, res.RateLimited, res.StreamErrors = r.createErrs.Load(), r.rateLimited.Load(), r.streamErrs.Load()
	p := percentiles(createLat, 50, 99, 100)
	res.CreateP50Ms, res.CreateP99Ms, res.CreateMaxMs = round3(p[0]), round3(p[1]), round3(p[2])
	p = percentiles(consLat, 50, 90, 99, 100)
	res.ConsumerP50Ms, res.ConsumerP90Ms, res.ConsumerP99Ms, res.ConsumerMaxMs = round3(p[0]), round3(p[1]), round3(p[2]), round3(p[3])
	p = percentiles(devLat, 50, 90, 99, 100)
	res.DeviceP50Ms, res.DeviceP90Ms, res.DeviceP99Ms, res.DeviceMaxMs = round3(p[0]), round3(p[1]), round3(p[2]), round3(p[3])
	if s := creating.Seconds(); s > 0 {
		res.TasksPerS = round3(float64(res.Tasks) / s)
	}
}

// escSeen is an offer seen unanswered on the escalation team's consumer.
type escSeen struct {
	at     time.Time // the transition's time (sard's clock)
	missed int32
	copies int
}

// escalations creates o.Escalations offers with the shortest answer time
// to the one team of an incident that has no other, so that each lapses
// once and becomes unanswered, and times sard's escalation sweeps.
func (r *dispatchRun) escalations(ctx, actx context.Context, js jetstream.JetStream, agencies sarv1.AgencyServiceClient,
	incidents sarv1.IncidentServiceClient, authc sarv1.AuthServiceClient, tasks sarv1.TaskServiceClient, res *dispatchResult) error {
	o := r.o
	agency, team := r.runID+"-esc", "esc"
	if err := createBenchAgency(actx, agencies, agency, sarv1.AgencyKind_AGENCY_KIND_OTHER); err != nil {
		return err
	}
	if err := createBenchTeam(actx, agencies, agency, team); err != nil {
		return err
	}
	inc, err := createBenchIncident(actx, incidents, r.runID, "escalation", []string{agency})
	if err != nil {
		return err
	}
	res.EscalationIncidentID, res.AnswerWithinS = inc, o.AnswerWithin.Seconds()
	if !o.Keep {
		defer closeBenchIncident(actx, incidents, inc, r.runID, o.Log)
	}

	var mu sync.Mutex
	seen := map[string]*escSeen{}
	var unanswered atomic.Int64
	name := agency + "-" + team + "-tasks"
	cc, err := benchConsumer(ctx, js, name, taskSubject(inc, agency, team), func(m jetstream.Msg) {
		_ = m.Ack()
		ev := &sarv1.Event{}
		if proto.Unmarshal(m.Data(), ev) != nil {
			return
		}
		t := ev.GetTaskChanged().GetTask()
		if t.GetState() != sarv1.TaskState_TASK_STATE_UNANSWERED {
			return
		}
		tr := t.GetTransitions()[len(t.GetTransitions())-1]
		mu.Lock()
		defer mu.Unlock()
		if s := seen[t.GetId()]; s != nil {
			s.copies++
			return
		}
		seen[t.GetId()] = &escSeen{at: tr.GetTime().AsTime(), missed: t.GetMissedOffers(), copies: 1}
		unanswered.Add(1)
	})
	if err != nil {
		return fmt.Errorf("bench: escalation consumer: %w", err)
	}
	defer cc.Stop()
	if !o.Keep {
		defer func() {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			if err := js.DeleteConsumer(dctx, dispatch.StreamName, name); err != nil {
				fmt.Fprintf(o.Log, "bench: deleting consumer %s: %v\n", name, err)
			}
		}()
	}

	var lapsed0 map[string]float64
	if o.MetricsURL != "" {
		if lapsed0, err = scrapeMetrics(ctx, o.TLS, o.MetricsURL, metricLapsed); err != nil {
			return fmt.Errorf("bench: read --metrics-url: %w", err)
		}
	}
	r.logf("bench %s: escalations: incident %s: %d offers to %s/%s, answer within %v", r.runID, inc, o.Escalations, agency, team, o.AnswerWithin)
	ids, deadlines := make([]string, o.Escalations), make([]time.Time, o.Escalations)
	var createErrs atomic.Int64
	create := func(i int) error {
		err := retryLimited(actx, func(ctx context.Context) error {
			resp, err := tasks.CreateTask(ctx, &sarv1.CreateTaskRequest{IncidentId: inc, Kind: sarv1.TaskKind_TASK_KIND_STAND_BY,
				Title: fmt.Sprintf("%s escalation %d", r.runID, i), Team: &sarv1.TeamRef{AgencyId: agency, TeamId: team},
				AnswerWithin: durationpb.New(o.AnswerWithin), RequestId: fmt.Sprintf("%s-e%d", r.runID, i)})
			if err == nil {
				ids[i], deadlines[i] = resp.GetTask().GetId(), resp.GetTask().GetOfferDeadline().AsTime()
			}
			return err
		})
		if err != nil {
			createErrs.Add(1)
			r.sample("CreateTask (escalation %d): %v", i, err)
		}
		return nil
	}
	t0 := time.Now()
	// The first alone: sard says here whether it allows the answer time.
	if err := retryLimited(actx, func(ctx context.Context) error {
		resp, err := tasks.CreateTask(ctx, &sarv1.CreateTaskRequest{IncidentId: inc, Kind: sarv1.TaskKind_TASK_KIND_STAND_BY,
			Title: r.runID + " escalation 0", Team: &sarv1.TeamRef{AgencyId: agency, TeamId: team},
			AnswerWithin: durationpb.New(o.AnswerWithin), RequestId: r.runID + "-e0"})
		if err == nil {
			ids[0], deadlines[0] = resp.GetTask().GetId(), resp.GetTask().GetOfferDeadline().AsTime()
		}
		return err
	}); err != nil {
		if why := fieldViolation(err, "answer_within"); why != "" {
			return fmt.Errorf("bench: sard refuses offers to be answered within %v (%s): start sard with --min-answer-within %v or less, "+
				"or pass --answer-within with sard's minimum, or --escalations 0", o.AnswerWithin, why, o.AnswerWithin)
		}
		return fmt.Errorf("bench: create the first escalation offer: %w", err)
	}
	_ = parallel(o.Escalations-1, o.Concurrency, func(i int) error { return create(i + 1) })
	res.EscCreateS = round3(time.Since(t0).Seconds())
	res.EscCreateErrors = createErrs.Load()
	res.EscCreated = int64(o.Escalations) - res.EscCreateErrors
	var lastDeadline time.Time
	for i, d := range deadlines {
		if ids[i] != "" && d.After(lastDeadline) {
			lastDeadline = d
		}
	}
	r.logf("  %d offers created in %.2f s; waiting for them to lapse", res.EscCreated, res.EscCreateS)

	// Wait for every offer to be seen unanswered.
	end := time.Now().Add(time.Until(lastDeadline) + time.Minute)
	for unanswered.Load() < res.EscCreated && time.Now().Before(end) && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // late duplicates
	cc.Stop()

	if o.MetricsURL != "" {
		// The counter is added to after each sweep: give it a moment.
		for until := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			m, err := scrapeMetrics(ctx, o.TLS, o.MetricsURL, metricLapsed)
			if err == nil {
				res.LapsedMetricDelta = m[metricLapsed] - lapsed0[metricLapsed]
			}
			if res.LapsedMetricDelta >= float64(res.EscCreated) || time.Now().After(until) || ctx.Err() != nil {
				break
			}
		}
	}
	for _, st := range []sarv1.TaskState{sarv1.TaskState_TASK_STATE_OFFERED, sarv1.TaskState_TASK_STATE_UNANSWERED} {
		var list *sarv1.ListTasksResponse
		if err := retryLimited(actx, func(ctx context.Context) error {
			list, err = tasks.ListTasks(ctx, &sarv1.ListTasksRequest{IncidentId: inc, States: []sarv1.TaskState{st}})
			return err
		}); err != nil {
			return fmt.Errorf("bench: ListTasks of the escalation incident: %w", err)
		}
		if st == sarv1.TaskState_TASK_STATE_OFFERED {
			res.ListOffered = len(list.GetTasks())
		} else {
			res.ListUnanswered = len(list.GetTasks())
		}
	}

	mu.Lock()
	defer mu.Unlock()
	var times []time.Time
	var lags []float64
	for i, id := range ids {
		if id == "" {
			continue
		}
		s := seen[id]
		if s == nil {
			res.EscMissing++
			continue
		}
		res.Escalated++
		res.EscDuplicates += int64(s.copies - 1)
		if s.missed != 1 {
			res.EscUnexpected++
			r.sample("escalation task %s: unanswered after %d missed offers, want 1", id, s.missed)
		}
		times = append(times, s.at)
		lags = append(lags, ms(s.at.Sub(deadlines[i])))
	}
	if res.EscMissing > 0 {
		r.sample("%d offers not seen unanswered", res.EscMissing)
	}
	if len(times) == 0 {
		return nil
	}
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	// Sweeps escalate one offer after the other and sleep in between: the
	// busy spans are the runs of escalations less than sweepGap apart.
	var busy time.Duration
	from := times[0]
	res.EscSweeps = 1
	for i := 1; i < len(times); i++ {
		if times[i].Sub(times[i-1]) > sweepGap {
			busy += times[i-1].Sub(from)
			from = times[i]
			res.EscSweeps++
		}
	}
	busy += times[len(times)-1].Sub(from)
	if busy > 0 {
		res.EscalationsPerS = round3(float64(len(times)-res.EscSweeps) / busy.Seconds())
	}
	res.EscDrainS = round3(times[len(times)-1].Sub(lastDeadline).Seconds())
	p := percentiles(lags, 50, 99, 100)
	res.EscLagP50Ms, res.EscLagP99Ms, res.EscLagMaxMs = round3(p[0]), round3(p[1]), round3(p[2])
	return nil
}

// fieldViolation returns the description of an INVALID_ARGUMENT error's
// violation of field, or "".
func fieldViolation(err error, field string) string {
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument {
		return ""
	}
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				if v.GetField() == field {
					return v.GetDescription()
				}
			}
		}
	}
	return ""
}

// taskSubject is the subject of a team's task changes in an incident.
func taskSubject(incident, agency, team string) string {
	return dispatch.SubjectPrefix + incident + ".evt.task." + agency + "." + team
}

// benchConsumer creates a durable pull consumer of SAR_EVENTS filtered on
// subject, as an agency's system would (explicit acks, from the start),
// and starts consuming.
func benchConsumer(ctx context.Context, js jetstream.JetStream, name, subject string, handle func(jetstream.Msg)) (jetstream.ConsumeContext, error) {
	cons, err := js.CreateOrUpdateConsumer(ctx, dispatch.StreamName, jetstream.ConsumerConfig{
		Durable: name, FilterSubject: subject, AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverAllPolicy,
		InactiveThreshold: time.Hour, // gone an hour after an interrupted run
	})
	if err != nil {
		return nil, fmt.Errorf("consumer %s: %w", name, err)
	}
	cc, err := cons.Consume(handle, jetstream.ConsumeErrHandler(func(jetstream.ConsumeContext, error) {}))
	if err != nil {
		return nil, fmt.Errorf("consume %s: %w", name, err)
	}
	return cc, nil
}

func deleteConsumers(js jetstream.JetStream, teams []*dTeam, log io.Writer) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = parallel(len(teams), 8, func(j int) error {
		if name := teams[j].consumer; name != "" {
			if err := js.DeleteConsumer(ctx, dispatch.StreamName, name); err != nil {
				fmt.Fprintf(log, "bench: deleting consumer %s: %v\n", name, err)
			}
		}
		return nil
	})
}

func createBenchAgency(ctx context.Context, agencies sarv1.AgencyServiceClient, id string, kind sarv1.AgencyKind) error {
	if err := retryLimited(ctx, func(ctx context.Context) error {
		_, err := agencies.CreateAgency(ctx, &sarv1.CreateAgencyRequest{Agency: &sarv1.Agency{
			Id: id, Name: "sarctl bench " + id, Kind: kind, Jurisdiction: benchJurisdiction}})
		return err
	}); err != nil {
		return fmt.Errorf("bench: create agency %s (is --token an admin token?): %w", id, err)
	}
	return nil
}

func createBenchTeam(ctx context.Context, agencies sarv1.AgencyServiceClient, agency, id string) error {
	if err := retryLimited(ctx, func(ctx context.Context) error {
		_, err := agencies.CreateTeam(ctx, &sarv1.CreateTeamRequest{Team: &sarv1.Team{AgencyId: agency, Id: id, Name: "Bench " + id,
			Home: &sarv1.LatLng{Lat: benchLat, Lng: benchLng}}})
		return err
	}); err != nil {
		return fmt.Errorf("bench: create team %s/%s: %w", agency, id, err)
	}
	return nil
}

func createBenchIncident(ctx context.Context, incidents sarv1.IncidentServiceClient, runID, what string, agencyIDs []string) (string, error) {
	var inc *sarv1.Incident
	if err := retryLimited(ctx, func(ctx context.Context) error {
		resp, err := incidents.CreateIncident(ctx, &sarv1.CreateIncidentRequest{
			Title: "sarctl bench " + what + " " + runID, Jurisdiction: benchJurisdiction, AgencyIds: agencyIDs, RequestId: runID + "-" + what,
			InitialPlanningPoint: &sarv1.PlanningPoint{Position: &sarv1.LatLng{Lat: benchLat, Lng: benchLng}, AccuracyM: 50},
			Subject:              &sarv1.SubjectProfile{Category: sarv1.SubjectCategory_SUBJECT_CATEGORY_HIKER, NumberOfPeople: 1}})
		inc = resp.GetIncident()
		return err
	}); err != nil {
		return "", fmt.Errorf("bench: create %s incident: %w", what, err)
	}
	return inc.GetId(), nil
}

// write prints a summary, and with asJSON the result as one JSON object on
// the last line.
func (res *dispatchResult) write(w io.Writer, asJSON bool) error {
	fmt.Fprintf(w, "bench dispatch: %d agencies, %d teams x %d devices, %d rounds of %s tasks, %d CreateTask at a time (incident %s)\n",
		res.Agencies, res.Teams, res.DevicesPerTeam, res.Rounds, res.Kind, res.Concurrency, res.IncidentID)
	fmt.Fprintf(w, "  created        %d tasks, %.0f tasks/s; CreateTask p50 %.2f ms  p99 %.2f ms  max %.2f ms; %d failed, %d rate-limited retries\n",
		res.Tasks, res.TasksPerS, res.CreateP50Ms, res.CreateP99Ms, res.CreateMaxMs, res.CreateErrors, res.RateLimited)
	fmt.Fprintf(w, "  create->consumer  p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  max %.2f ms; delivered %d of %d, missing %d, duplicates %d\n",
		res.ConsumerP50Ms, res.ConsumerP90Ms, res.ConsumerP99Ms, res.ConsumerMaxMs, res.ConsumerDelivered, res.ConsumerExpected, res.ConsumerMissing, res.ConsumerDuplicates)
	fmt.Fprintf(w, "  create->device    p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  max %.2f ms; delivered %d of %d, missing %d, duplicates %d\n",
		res.DeviceP50Ms, res.DeviceP90Ms, res.DeviceP99Ms, res.DeviceMaxMs, res.DeviceDelivered, res.DeviceExpected, res.DeviceMissing, res.DeviceDuplicates)
	if res.SardCPUS >= 0 {
		fmt.Fprintf(w, "  sard CPU       %.2f s during the rounds, %.2f ms per task\n", res.SardCPUS, res.SardCPUMsPerTask)
	}
	if res.Escalations > 0 {
		fmt.Fprintf(w, "  escalations    %d offers (answer within %v) created in %.2f s (%d failed); %d seen unanswered, missing %d, duplicates %d, unexpected %d (incident %s)\n",
			res.EscCreated, time.Duration(res.AnswerWithinS*float64(time.Second)), res.EscCreateS, res.EscCreateErrors,
			res.Escalated, res.EscMissing, res.EscDuplicates, res.EscUnexpected, res.EscalationIncidentID)
		fmt.Fprintf(w, "                 %.0f escalations/s in %d sweep(s); deadline->escalated p50 %.0f ms  p99 %.0f ms  max %.0f ms; last deadline->last escalation %.2f s\n",
			res.EscalationsPerS, res.EscSweeps, res.EscLagP50Ms, res.EscLagP99Ms, res.EscLagMaxMs, res.EscDrainS)
		metric := "not read (no --metrics-url)"
		if res.LapsedMetricDelta >= 0 {
			metric = fmt.Sprintf("+%.0f", res.LapsedMetricDelta)
		}
		fmt.Fprintf(w, "                 %s %s; ListTasks: %d unanswered, %d still offered\n", metricLapsed, metric, res.ListUnanswered, res.ListOffered)
	}
	fmt.Fprintf(w, "  errors         %d (stream errors %d)\n", res.Errors, res.StreamErrors)
	for _, s := range res.ErrorSamples {
		fmt.Fprintf(w, "    %s\n", s)
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
