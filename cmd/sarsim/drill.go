package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"sort"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/sim"
	"github.com/mountain-sar/sar/internal/tlsutil"
)

type drillCmd struct {
	Jurisdiction    string        `env:"SARSIM_JURISDICTION" default:"local" help:"Jurisdiction of the incident and the agencies (embedded sard's operator commands 'local')."`
	Teams           int           `env:"SARSIM_TEAMS" default:"3" help:"Teams sent out; team i belongs to a police station, volunteer rescuers, a fire brigade or villagers, in turn."`
	RescuersPerTeam int           `name:"rescuers-per-team" env:"SARSIM_RESCUERS_PER_TEAM" default:"2" help:"Rescuers (phones) per team; they sweep their segment abreast."`
	Duration        time.Duration `env:"SARSIM_DURATION" default:"2m" help:"How long the drill runs on the wall clock; it plays duration x speedup of search."`
	Speedup         float64       `env:"SARSIM_SPEEDUP" default:"1" help:"Play the search this many times faster than real time (1-300). Fix times are simulated too: the simulated clock is set back so that it reaches the real time when the drill ends (no fix is ever in the future), and the lost person was last seen an hour before it starts (so no fix is before the incident's window)."`
	FixInterval     time.Duration `name:"fix-interval" env:"SARSIM_FIX_INTERVAL" default:"1s" help:"Simulated time between a rescuer phone's fixes."`
	BatchInterval   time.Duration `name:"batch-interval" env:"SARSIM_BATCH_INTERVAL" default:"10s" help:"Simulated time between a rescuer phone's batches (a phone saves battery by sending every few seconds)."`
	Seed            uint64        `env:"SARSIM_SEED" default:"1" help:"Seed of the walks, the lost person's whereabouts and the lost connections."`
	Lat             float64       `env:"SARSIM_LAT" default:"46.5935" help:"Latitude of the last-seen point (default: a valley in the Alps, Lauterbrunnen, as sarctl bench)."`
	Lng             float64       `env:"SARSIM_LNG" default:"7.9091" help:"Longitude of the last-seen point."`
	CallerAccuracy  float64       `name:"caller-accuracy" env:"SARSIM_CALLER_ACCURACY" default:"600" help:"Accuracy in metres of the lost person's browser fixes (a coarse network fix in a valley). At most 1000 m collapses the search area to the fix."`
	CallerFor       time.Duration `name:"caller-for" env:"SARSIM_CALLER_FOR" default:"5m" help:"Simulated time the lost person's phone reports before its battery dies; 0: no share link."`
	Flaky           float64       `env:"SARSIM_FLAKY" default:"0.02" help:"Chance that a rescuer phone loses its connection after sending a batch, before the ack: it reconnects and resends from its last ack."`
	FixCall         string        `name:"fix-call" env:"SARSIM_FIX_CALL" default:"report" enum:"report,stream" help:"How rescuer phones send their batches: report (a ReportFixes call per batch on the kept-alive connection, as the rescuer app does) or stream (on a StreamFixes stream held open)."`
	Close           bool          `help:"Close the incident at the end (outcome found alive)."`
	JSON            bool          `name:"json" help:"Print the summary as one JSON object on the last line of stdout."`
	Quiet           bool          `help:"No setup and progress lines on stderr."`
}

func (c *drillCmd) Run(ctx context.Context, g *Globals, w io.Writer) error {
	var log io.Writer = os.Stderr
	if c.Quiet {
		log = io.Discard
	}
	res, err := runDrill(ctx, drillOptions{Addr: g.Addr, HTTPAddr: g.HTTPAddr, TLS: g.Client(), Token: g.Token, Timeout: g.Timeout,
		Jurisdiction: c.Jurisdiction, Teams: c.Teams, RescuersPerTeam: c.RescuersPerTeam, Duration: c.Duration,
		Speedup: c.Speedup, FixInterval: c.FixInterval, BatchInterval: c.BatchInterval, Seed: c.Seed,
		Lat: c.Lat, Lng: c.Lng, CallerAccuracy: c.CallerAccuracy, CallerFor: c.CallerFor, Flaky: c.Flaky,
		FixCall: c.FixCall, Close: c.Close, Log: log})
	if res != nil {
		if werr := res.write(w, c.JSON); werr != nil && err == nil {
			err = werr
		}
	}
	return err
}

// drillOptions configures one drill.
type drillOptions struct {
	Addr, HTTPAddr, Token string
	TLS                   tlsutil.Client // for both addresses
	Timeout               time.Duration
	Jurisdiction          string
	Teams                 int
	RescuersPerTeam       int
	Duration              time.Duration
	Speedup               float64
	FixInterval           time.Duration
	BatchInterval         time.Duration
	Seed                  uint64
	Lat, Lng              float64
	CallerAccuracy        float64
	CallerFor             time.Duration
	Flaky                 float64
	FixCall               string // "report" (ReportFixes, the default) or "stream" (StreamFixes)
	Close                 bool
	Log                   io.Writer
}

const (
	maxBatch       = 500              // fixes per batch, the server's limit
	callerFixEvery = 10 * time.Second // simulated: the share page's fixes...
	callerPostEvry = 30 * time.Second // ...and posts
	sweepSpacingM  = 20.0             // lane spacing: the default sweep width on foot
	maxSamples     = 10
	roamRadiusM    = 60.0 // a team waiting for a task stays about here
	noTaskRetry    = 10 * time.Minute
)

func (o *drillOptions) check() error {
	switch {
	case o.Token == "":
		return errors.New("drill: an admin --token is required (SAR_TOKEN): embedded sard prints one at start")
	case o.Teams < 1 || o.Teams > 100:
		return errors.New("drill: --teams must be from 1 to 100")
	case o.RescuersPerTeam < 1 || o.RescuersPerTeam > 20:
		return errors.New("drill: --rescuers-per-team must be from 1 to 20")
	case o.Duration <= 0 || o.Duration > 24*time.Hour:
		return errors.New("drill: --duration must be more than 0 and at most 24h")
	case !(o.Speedup >= 1 && o.Speedup <= 300):
		return errors.New("drill: --speedup must be from 1 to 300 (each phone sends speedup/10 batches a second; sard's default rate limit is 50 a second per credential)")
	case o.FixInterval < 100*time.Millisecond || o.FixInterval > time.Hour:
		return errors.New("drill: --fix-interval must be from 100ms to 1h")
	case o.BatchInterval < o.FixInterval || o.BatchInterval/o.FixInterval > maxBatch:
		return fmt.Errorf("drill: --batch-interval must be at least --fix-interval and hold at most %d fixes", maxBatch)
	case !(o.Lat >= -85 && o.Lat <= 85 && o.Lng >= -180 && o.Lng <= 180) || (o.Lat == 0 && o.Lng == 0):
		return errors.New("drill: --lat must be from -85 to 85 and --lng from -180 to 180 (and not 0,0)")
	case !(o.CallerAccuracy > 0 && o.CallerAccuracy <= 100_000):
		return errors.New("drill: --caller-accuracy must be more than 0 and at most 100000 m")
	case o.CallerFor < 0:
		return errors.New("drill: --caller-for must be 0 or more")
	case !(o.Flaky >= 0 && o.Flaky < 1):
		return errors.New("drill: --flaky must be from 0 to below 1")
	case o.FixCall != "" && o.FixCall != "report" && o.FixCall != "stream":
		return errors.New("drill: --fix-call must be report or stream")
	}
	if o.FixCall == "" {
		o.FixCall = "report"
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	return nil
}

// drillResult is what a drill did and what the server made of it.
type drillResult struct {
	RunID          string        `json:"run_id"`
	IncidentID     string        `json:"incident_id"`
	Jurisdiction   string        `json:"jurisdiction"`
	Teams          []teamResult  `json:"teams"`
	Caller         *deviceCounts `json:"caller,omitempty"`
	Rescuers       deviceCounts  `json:"rescuers"`
	SimulatedS     float64       `json:"simulated_s"` // search time played
	WallS          float64       `json:"wall_s"`
	Participants   int           `json:"participants"`
	ServerFixes    int64         `json:"server_fixes"` // stored fixes of the incident, by the server's cell visits
	GridCells      int           `json:"grid_cells"`
	GridProfile    string        `json:"grid_profile"`
	POS            float64       `json:"probability_of_success"` // of the grid, at the end
	Segments       int           `json:"segments"`
	SegmentsAssign int           `json:"segments_assigned"`
	Closed         bool          `json:"closed"`
	ErrorSamples   []string      `json:"error_samples,omitempty"`
}

// teamResult is one team's part.
type teamResult struct {
	Ref      string  `json:"team"` // agency/team
	Kind     string  `json:"kind"`
	Rescuers int     `json:"rescuers"`
	Segments []int32 `json:"segments"` // assigned to it by SuggestNextTask, in order
}

// deviceCounts adds up acks.
type deviceCounts struct {
	Devices    int   `json:"devices"`
	Sent       int64 `json:"sent"` // fixes made and sent at least once
	Stored     int64 `json:"stored"`
	Duplicates int64 `json:"duplicates"` // resent after a lost ack, not stored twice
	Rejected   int64 `json:"rejected"`   // final rejections
	Gaps       int64 `json:"gaps"`       // SEQUENCE_GAP answers (resent)
	Unacked    int64 `json:"unacked"`    // made but never acknowledged at the end
	Batches    int64 `json:"batches"`
	Problems   int64 `json:"problems"`   // batches refused whole
	Reconnects int64 `json:"reconnects"` // streams (or posts) lost and tried again
}

func (c *deviceCounts) add(d deviceCounts) {
	c.Devices += d.Devices
	c.Sent += d.Sent
	c.Stored += d.Stored
	c.Duplicates += d.Duplicates
	c.Rejected += d.Rejected
	c.Gaps += d.Gaps
	c.Unacked += d.Unacked
	c.Batches += d.Batches
	c.Problems += d.Problems
	c.Reconnects += d.Reconnects
}

// agencyKind is one of the kinds of agency that search, in the order
// teams are drawn from them.
type agencyKind struct {
	suffix, name string
	kind         sarv1.AgencyKind
}

var agencyKinds = []agencyKind{
	{"police", "Valley police station", sarv1.AgencyKind_AGENCY_KIND_POLICE_STATION},
	{"volunteers", "Mountain rescue volunteers", sarv1.AgencyKind_AGENCY_KIND_VOLUNTEER_RESCUE},
	{"firebrigade", "Fire brigade", sarv1.AgencyKind_AGENCY_KIND_FIRE_BRIGADE},
	{"villagers", "Villagers who know the valley", sarv1.AgencyKind_AGENCY_KIND_VILLAGERS},
}

// drill is the shared state of one run.
type drill struct {
	o        drillOptions
	runID    string
	conn     *grpc.ClientConn
	admin    context.Context // carries the admin token
	incident string
	frame    sim.Frame
	res      int // H3 resolution of the grid
	teams    []*team
	caller   *callerPhone
	bg       sync.WaitGroup // teams asking for tasks

	httpBase      string          // https://host:port (or http:// to loopback)
	httpTransport *http.Transport // secured as drillOptions.TLS says

	// The simulated clock: sim(t) = simStart + speedup·(t − wallStart).
	wallStart, simStart time.Time
	wallEnd             time.Time
	stop                chan struct{}

	errMu   sync.Mutex
	samples []string
}

func (d *drill) logf(format string, args ...any) { fmt.Fprintf(d.o.Log, format+"\n", args...) }

// sample keeps a few error messages for the summary.
func (d *drill) sample(format string, args ...any) {
	d.errMu.Lock()
	defer d.errMu.Unlock()
	if len(d.samples) < maxSamples {
		d.samples = append(d.samples, fmt.Sprintf(format, args...))
	}
}

// simAt is the simulated time at wall time t.
func (d *drill) simAt(t time.Time) time.Time {
	return d.simStart.Add(time.Duration(d.o.Speedup * float64(t.Sub(d.wallStart))))
}

// wallAt is the wall time at which the simulated clock shows s.
func (d *drill) wallAt(s time.Time) time.Time {
	return d.wallStart.Add(time.Duration(float64(s.Sub(d.simStart)) / d.o.Speedup))
}

// waitSim waits until the simulated clock shows s, or the drill ends
// (false).
func (d *drill) waitSim(s time.Time) bool {
	wait := time.Until(d.wallAt(s))
	if end := time.Until(d.wallEnd); end < wait {
		wait = end
	}
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
		case <-d.stop:
			return false
		}
	}
	select {
	case <-d.stop:
		return false
	default:
	}
	return time.Now().Before(d.wallEnd)
}

// call makes one unary admin call with the deadline, retrying a call the
// rate limiter refused (refused before the handler ran, so safe).
func (d *drill) call(ctx context.Context, fn func(context.Context) error) error {
	wait := 50 * time.Millisecond
	for attempt := 0; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, d.o.Timeout)
		err := fn(cctx)
		cancel()
		if status.Code(err) != codes.ResourceExhausted || attempt == 20 {
			return err
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return err
		}
		wait = min(2*wait, time.Second)
	}
}

func withToken(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// runDrill plays one drill. Setup failures are errors; failures during the
// run are counted and sampled in the result, which is returned whenever
// the incident was made.
func runDrill(ctx context.Context, o drillOptions) (*drillResult, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	var rb [4]byte
	_, _ = rand.Read(rb[:])
	d := &drill{o: o, runID: "drill-" + hex.EncodeToString(rb[:]), frame: sim.Frame{Lat: o.Lat, Lng: o.Lng}, stop: make(chan struct{})}
	var err error
	creds, err := o.TLS.GRPCDialOption(o.Addr)
	if err != nil {
		return nil, err
	}
	if d.httpBase, d.httpTransport, err = httpTransport(o.TLS, o.HTTPAddr); err != nil {
		return nil, err
	}
	if d.conn, err = grpc.NewClient(o.Addr, creds); err != nil {
		return nil, fmt.Errorf("dial %s: %w", o.Addr, err)
	}
	defer d.conn.Close()
	d.admin = withToken(ctx, o.Token)
	simSpan := time.Duration(o.Speedup * float64(o.Duration))
	d.logf("sarsim %s: %d teams of %d on %s (gRPC) and %s (HTTP); %v of search in %v (speedup %g)",
		d.runID, o.Teams, o.RescuersPerTeam, o.Addr, o.HTTPAddr, simSpan.Round(time.Second), o.Duration, o.Speedup)

	if err := d.setup(ctx, simSpan); err != nil {
		return nil, err
	}
	res := &drillResult{RunID: d.runID, IncidentID: d.incident, Jurisdiction: o.Jurisdiction}
	playErr := d.play(ctx)
	d.summarise(ctx, res)
	if o.Close {
		err := d.call(context.WithoutCancel(d.admin), func(ctx context.Context) error {
			_, err := sarv1.NewIncidentServiceClient(d.conn).CloseIncident(ctx, &sarv1.CloseIncidentRequest{IncidentId: d.incident,
				Outcome: sarv1.IncidentOutcome_INCIDENT_OUTCOME_FOUND_ALIVE, Note: "sarsim drill " + d.runID + " ended"})
			return err
		})
		if err != nil {
			d.sample("close incident: %v", err)
		} else {
			res.Closed = true
		}
	}
	res.ErrorSamples = d.samples
	return res, playErr
}

// setup makes the agencies and teams (when missing), the incident, its
// search plan, the rescuers' credentials and the share link, and joins
// every device.
func (d *drill) setup(ctx context.Context, simSpan time.Duration) error {
	o := d.o
	agencies := sarv1.NewAgencyServiceClient(d.conn)
	incidents := sarv1.NewIncidentServiceClient(d.conn)
	authc := sarv1.NewAuthServiceClient(d.conn)
	rng := mrand.New(mrand.NewPCG(o.Seed, 0xd1))

	// Agencies (one per kind used) and teams, reused by later drills.
	var agencyIDs []string
	perKind := map[int]int{}
	for i := range o.Teams {
		k := i % len(agencyKinds)
		kind := agencyKinds[k]
		agencyID := o.Jurisdiction + "-" + kind.suffix
		if perKind[k] == 0 {
			if err := d.ensureAgency(agencies, agencyID, kind); err != nil {
				return err
			}
			agencyIDs = append(agencyIDs, agencyID)
		}
		perKind[k]++
		teamID := fmt.Sprintf("team-%d", perKind[k])
		err := d.call(d.admin, func(ctx context.Context) error {
			_, err := agencies.CreateTeam(ctx, &sarv1.CreateTeamRequest{Team: &sarv1.Team{Id: teamID, AgencyId: agencyID,
				Name: fmt.Sprintf("%s, team %d", kind.name, perKind[k])}})
			return err
		})
		if err != nil && status.Code(err) != codes.AlreadyExists {
			return fmt.Errorf("drill: create team %s/%s: %w", agencyID, teamID, err)
		}
		d.teams = append(d.teams, &team{d: d, agency: agencyID, id: teamID, kind: kind.suffix, idx: i})
	}

	// The incident: a hiker last seen at the trailhead an hour before the
	// simulated search starts.
	lastSeen := time.Now().Add(-simSpan - time.Hour).Truncate(time.Second)
	var inc *sarv1.Incident
	err := d.call(d.admin, func(ctx context.Context) error {
		resp, err := incidents.CreateIncident(ctx, &sarv1.CreateIncidentRequest{
			Title: "Drill: hiker overdue in the valley (sarsim " + d.runID + ")", Jurisdiction: o.Jurisdiction,
			AgencyIds: agencyIDs, RequestId: d.runID,
			InitialPlanningPoint: &sarv1.PlanningPoint{Position: &sarv1.LatLng{Lat: o.Lat, Lng: o.Lng}, AccuracyM: 50,
				Time: timestamppb.New(lastSeen), Description: "car park at the trailhead, where the hiker was last seen"},
			Subject: &sarv1.SubjectProfile{Category: sarv1.SubjectCategory_SUBJECT_CATEGORY_HIKER, NumberOfPeople: 1,
				LastSeenTime: timestamppb.New(lastSeen), Description: "drill: one hiker, day trip, did not come back"}})
		inc = resp.GetIncident()
		return err
	})
	if err != nil {
		return fmt.Errorf("drill: create incident in jurisdiction %q (is --token an admin token?): %w", o.Jurisdiction, err)
	}
	d.incident = inc.GetId()
	d.logf("sarsim %s: incident %s in %s, agencies %v", d.runID, d.incident, o.Jurisdiction, agencyIDs)

	var plan *sarv1.SearchGridSummary
	err = d.call(d.admin, func(ctx context.Context) error {
		resp, err := sarv1.NewSearchServiceClient(d.conn).SetSearchPlan(ctx, &sarv1.SetSearchPlanRequest{IncidentId: d.incident})
		plan = resp.GetGrid()
		return err
	})
	if err != nil {
		return fmt.Errorf("drill: set search plan: %w", err)
	}
	d.res = int(plan.GetResolution())
	d.logf("sarsim %s: search plan %s: %d cells at resolution %d", d.runID, plan.GetProfile(), plan.GetCellCount(), d.res)

	// Rescuers: a credential per phone, bound to its team, joined.
	ttl := durationpb.New(o.Duration + time.Hour)
	for _, t := range d.teams {
		for j := range o.RescuersPerTeam {
			r := &rescuer{team: t, lane: j, device: fmt.Sprintf("%s-t%d-r%d", d.runID, t.idx+1, j+1),
				rng: mrand.New(mrand.NewPCG(o.Seed, uint64(1000*t.idx+j+1)))}
			r.name = fmt.Sprintf("%s/%s rescuer %d", t.agency, t.id, j+1)
			err := d.call(d.admin, func(ctx context.Context) error {
				resp, err := authc.CreateCredential(ctx, &sarv1.CreateCredentialRequest{Role: sarv1.Role_ROLE_RESCUER,
					AgencyId: t.agency, TeamId: t.id, DisplayName: "sarsim " + r.name, Ttl: ttl})
				r.token = resp.GetToken()
				return err
			})
			if err != nil {
				return fmt.Errorf("drill: rescuer credential for %s/%s: %w", t.agency, t.id, err)
			}
			err = d.call(withToken(ctx, r.token), func(ctx context.Context) error {
				resp, err := incidents.JoinIncident(ctx, &sarv1.JoinIncidentRequest{IncidentId: d.incident, DeviceId: r.device,
					DisplayName: r.name, SearcherType: "foot"})
				r.participant, r.acked = resp.GetParticipant().GetId(), resp.GetAckedThrough()
				return err
			})
			if err != nil {
				return fmt.Errorf("drill: %s joins: %w", r.name, err)
			}
			// Everyone gathers at the trailhead, a few metres apart.
			r.walker = sim.NewWalker(o.Seed*7919+uint64(1000*t.idx+j+1), d.frame)
			r.walker.StepS = o.FixInterval.Seconds()
			r.walker.Place(sim.XY{X: 15 * rng.NormFloat64(), Y: 15 * rng.NormFloat64()})
			r.walker.Roam(sim.XY{}, roamRadiusM)
			t.members = append(t.members, r)
		}
	}

	// The lost person's phone: a share link, opened in its browser.
	if o.CallerFor > 0 {
		var link *sarv1.CreateShareLinkResponse
		err := d.call(d.admin, func(ctx context.Context) error {
			var err error
			link, err = authc.CreateShareLink(ctx, &sarv1.CreateShareLinkRequest{IncidentId: d.incident,
				DisplayName: "Lost hiker's phone", Ttl: ttl})
			return err
		})
		if err != nil {
			return fmt.Errorf("drill: create share link: %w", err)
		}
		// The hiker is somewhere between 500 m and 2 km from the trailhead.
		r, a := 500+1500*rng.Float64(), 2*math.Pi*rng.Float64()
		at := sim.XY{X: r * math.Sin(a), Y: r * math.Cos(a)}
		d.caller = &callerPhone{d: d, token: link.GetToken(), participant: link.GetParticipant().GetId(),
			device: "browser-" + d.runID, phone: sim.NewCaller(o.Seed, d.frame, at, o.CallerAccuracy),
			http: &http.Client{Timeout: o.Timeout, Transport: d.httpTransport}}
		if err := d.caller.join(ctx); err != nil {
			return err
		}
		d.logf("sarsim %s: share link for the lost person (participant %s, %s); they are %.0f m from the trailhead",
			d.runID, d.caller.participant, link.GetUrlPath()[:len("/share#")]+"…", r)
	}
	return nil
}

// ensureAgency creates an agency, or checks that the existing one is in
// the drill's jurisdiction.
func (d *drill) ensureAgency(agencies sarv1.AgencyServiceClient, id string, kind agencyKind) error {
	err := d.call(d.admin, func(ctx context.Context) error {
		_, err := agencies.CreateAgency(ctx, &sarv1.CreateAgencyRequest{Agency: &sarv1.Agency{Id: id, Name: kind.name,
			Kind: kind.kind, Jurisdiction: d.o.Jurisdiction}})
		return err
	})
	if status.Code(err) == codes.AlreadyExists {
		var got *sarv1.Agency
		err = d.call(d.admin, func(ctx context.Context) error {
			resp, err := agencies.GetAgency(ctx, &sarv1.GetAgencyRequest{AgencyId: id})
			got = resp.GetAgency()
			return err
		})
		if err == nil && got.GetJurisdiction() != d.o.Jurisdiction {
			err = fmt.Errorf("agency %s exists in jurisdiction %q, not %q", id, got.GetJurisdiction(), d.o.Jurisdiction)
		}
	}
	if err != nil {
		return fmt.Errorf("drill: agency %s (is --token an admin token?): %w", id, err)
	}
	return nil
}

// play runs the simulated search for the drill's duration.
func (d *drill) play(ctx context.Context) error {
	o := d.o
	d.wallStart = time.Now()
	d.simStart = d.wallStart.Add(-time.Duration((o.Speedup - 1) * float64(o.Duration)))
	d.wallEnd = d.wallStart.Add(o.Duration)
	var once sync.Once
	stopAll := func() { once.Do(func() { close(d.stop) }) }
	unhook := context.AfterFunc(ctx, stopAll) // Ctrl-C ends the drill early, cleanly
	defer unhook()

	// The share page reports first: its fix collapses the search area,
	// and tasks are cut from that.
	var wg sync.WaitGroup
	if d.caller != nil {
		d.caller.report(d.simStart) // the first fix, at once
		wg.Go(d.caller.run)
	}
	for _, t := range d.teams {
		t.nextTask(&sim.XY{}) // from the trailhead
	}
	for _, t := range d.teams {
		for _, r := range t.members {
			wg.Go(func() { r.run(d) })
		}
	}
	progressDone := make(chan struct{})
	go d.progress(progressDone)
	wg.Wait()
	d.bg.Wait()
	close(progressDone)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("drill interrupted: %w", err)
	}
	return nil
}

// progress logs what the phones did every 10 seconds.
func (d *drill) progress(done <-chan struct{}) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			var c deviceCounts
			for _, tm := range d.teams {
				for _, r := range tm.members {
					c.add(r.snapshot())
				}
			}
			d.logf("  %6.1fs  search time %v  rescuers' fixes stored %d  duplicates %d  reconnects %d",
				now.Sub(d.wallStart).Seconds(), d.simAt(now).Sub(d.simStart).Round(time.Second), c.Stored, c.Duplicates, c.Reconnects)
		}
	}
}

// summarise fills the result from the devices' counts and the server.
func (d *drill) summarise(ctx context.Context, res *drillResult) {
	ctx = context.WithoutCancel(d.admin)
	end := time.Now()
	res.WallS = round3(end.Sub(d.wallStart).Seconds())
	res.SimulatedS = round3(d.simAt(earlier(end, d.wallEnd)).Sub(d.simStart).Seconds())
	for _, t := range d.teams {
		tr := teamResult{Ref: t.agency + "/" + t.id, Kind: t.kind, Rescuers: len(t.members), Segments: t.segmentsSoFar()}
		res.Teams = append(res.Teams, tr)
		for _, r := range t.members {
			res.Rescuers.add(r.snapshot())
		}
	}
	if d.caller != nil {
		c := d.caller.counts
		res.Caller = &c
	}
	search := sarv1.NewSearchServiceClient(d.conn)
	if err := d.call(ctx, func(ctx context.Context) error {
		// The server credits coverage after each ack: the summary waits
		// (up to 15 s) until the grid holds every fix acknowledged.
		var resp *sarv1.ListSegmentsResponse
		for deadline := time.Now().Add(15 * time.Second); ; {
			var err error
			if resp, err = search.ListSegments(ctx, &sarv1.ListSegmentsRequest{IncidentId: d.incident}); err != nil {
				return err
			}
			if resp.GetGrid().GetSearchWorkPending() == 0 || time.Now().After(deadline) {
				break
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
		res.Segments = len(resp.GetSegments())
		for _, s := range resp.GetSegments() {
			if s.GetAssignedTeam().GetAgencyId() != "" {
				res.SegmentsAssign++
			}
		}
		g := resp.GetGrid()
		res.GridCells, res.GridProfile, res.POS = int(g.GetCellCount()), g.GetProfile(), g.GetProbabilityOfSuccess()
		return nil
	}); err != nil {
		d.sample("summary: list segments: %v", err)
	}
	if err := d.call(ctx, func(ctx context.Context) error {
		resp, err := sarv1.NewIncidentServiceClient(d.conn).ListParticipants(ctx, &sarv1.ListParticipantsRequest{IncidentId: d.incident})
		res.Participants = len(resp.GetParticipants())
		return err
	}); err != nil {
		d.sample("summary: list participants: %v", err)
	}
	if err := d.call(ctx, func(ctx context.Context) error {
		resp, err := sarv1.NewLocationServiceClient(d.conn).ListCellVisits(ctx, &sarv1.ListCellVisitsRequest{IncidentId: d.incident})
		for _, c := range resp.GetCells() {
			res.ServerFixes += c.GetFixes()
		}
		return err
	}); err != nil {
		d.sample("summary: list cell visits: %v", err)
	}
}

// write prints the summary, and with asJSON the result as one JSON object
// on the last line.
func (res *drillResult) write(w io.Writer, asJSON bool) error {
	fmt.Fprintf(w, "sarsim drill %s: incident %s (jurisdiction %s), %s of search in %.1f s\n", res.RunID, res.IncidentID,
		res.Jurisdiction, (time.Duration(res.SimulatedS) * time.Second).Round(time.Second), res.WallS)
	line := func(who string, c deviceCounts) {
		fmt.Fprintf(w, "  %-9s %d devices: %d fixes sent, %d stored, %d duplicates (resent after a lost ack), %d rejected, %d gaps, %d unacked; %d batches, %d refused, %d reconnects\n",
			who, c.Devices, c.Sent, c.Stored, c.Duplicates, c.Rejected, c.Gaps, c.Unacked, c.Batches, c.Problems, c.Reconnects)
	}
	line("rescuers", res.Rescuers)
	if res.Caller != nil {
		line("caller", *res.Caller)
	}
	fmt.Fprintf(w, "  server    %d fixes stored in the incident's cells (a fix whose ack was lost is stored once, and acknowledged as a duplicate when resent)\n", res.ServerFixes)
	fmt.Fprintf(w, "  participants %d; grid %s, %d cells; probability of success %.2f %%\n",
		res.Participants, res.GridProfile, res.GridCells, 100*res.POS)
	fmt.Fprintf(w, "  segments %d, %d assigned:", res.Segments, res.SegmentsAssign)
	teams := append([]teamResult(nil), res.Teams...)
	sort.SliceStable(teams, func(i, j int) bool { return teams[i].Ref < teams[j].Ref })
	for _, t := range teams {
		fmt.Fprintf(w, " %s %v;", t.Ref, t.Segments)
	}
	fmt.Fprintln(w)
	if res.Closed {
		fmt.Fprintln(w, "  incident closed (found alive)")
	}
	for _, s := range res.ErrorSamples {
		fmt.Fprintf(w, "  error: %s\n", s)
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

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }
