package server_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mountain-sar/sar/dispatch"
	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/app"
	"github.com/mountain-sar/sar/internal/auth"
	"github.com/mountain-sar/sar/internal/testenv"
)

// TestReplicasSurviveANATSNodeAndASardDuringIngest runs the system as it
// grows beyond one machine: a 3-node NATS cluster with SAR_EVENTS
// replicated three times, a 3-master Redis Cluster and three sard
// replicas. Rescuers' phones are spread over the replicas and stream
// numbered fixes; an operator posts messages to all teams (durable
// events) through the replicas in turn. During ingest a NATS node (the
// one most replicas use, made the stream's leader if it can be) and then a
// sard replica are killed; phones of the dead replica move to another and
// resend from acked_through+1, the operator retries with the same request
// id. Then:
//
//   - every fix a phone was told is stored is in Redis exactly once, and
//     no ack names a fix stored twice;
//   - every durable event (incident created, each participant joined,
//     each message's notice to each agency) reaches a durable JetStream
//     consumer, exactly once after deduplication by event id, and no
//     change has two event ids;
//   - positions events (core NATS, live only: not a delivery promise)
//     never carry a fix twice nor a fix that is not stored; how many
//     acknowledged fixes had no positions event is logged.
func TestReplicasSurviveANATSNodeAndASardDuringIngest(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	natsCluster := testenv.StartNATSCluster(t, 3)
	redisCluster := testenv.StartRedisCluster(t, 3)
	admin, _, _ := auth.NewToken()
	logs := &logCounter{counts: map[string]int64{}}

	// Three replicas, each with every backend node's address.
	var sards [3]*app.App
	conns := make([]*grpc.ClientConn, len(sards))
	for i := range sards {
		cfg := app.Defaults()
		cfg.GRPCAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
		cfg.RedisURL, cfg.RedisCluster = redisCluster.URL(), true
		cfg.NATSURL, cfg.NATSReplicas = natsCluster.URL(), 3
		cfg.AdminToken = admin
		cfg.RateLimit, cfg.RateBurst = 10000, 10000
		cfg.RelayInterval = 200 * time.Millisecond
		cfg.ShutdownTimeout = 5 * time.Second
		a, err := app.Start(ctx, cfg, slog.New(logs))
		if err != nil {
			t.Fatalf("app.Start replica %d: %v", i, err)
		}
		t.Cleanup(func() { _ = a.Close() })
		sards[i] = a
		if conns[i], err = grpc.NewClient(a.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
			t.Fatalf("grpc.NewClient: %v", err)
		}
		conn := conns[i]
		t.Cleanup(func() { _ = conn.Close() })
	}

	// The observer: a NATS client of the whole cluster, as an agency's
	// system or a console would be.
	obs, err := nats.Connect(natsCluster.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatalf("nats.Connect: %v", err)
	}
	t.Cleanup(obs.Close)
	js, err := jetstream.New(obs)
	if err != nil {
		t.Fatalf("jetstream.New: %v", err)
	}
	stream, err := js.Stream(ctx, dispatch.StreamName)
	if err != nil {
		t.Fatalf("stream %s: %v", dispatch.StreamName, err)
	}
	if got := stream.CachedInfo().Config.Replicas; got != 3 {
		t.Fatalf("%s replicas = %d, want 3 (--nats-replicas 3)", dispatch.StreamName, got)
	}

	// Setup through replica 0: two agencies, an operator, an incident.
	as := func(token string) context.Context {
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	agencies := []string{"police-north", "volunteers-north"}
	setup := struct {
		auth   sarv1.AuthServiceClient
		agency sarv1.AgencyServiceClient
		inc    sarv1.IncidentServiceClient
	}{sarv1.NewAuthServiceClient(conns[0]), sarv1.NewAgencyServiceClient(conns[0]), sarv1.NewIncidentServiceClient(conns[0])}
	for _, a := range agencies {
		must[*sarv1.CreateAgencyResponse](t, "CreateAgency")(setup.agency.CreateAgency(as(admin), &sarv1.CreateAgencyRequest{
			Agency: &sarv1.Agency{Id: a, Name: a, Kind: sarv1.AgencyKind_AGENCY_KIND_VOLUNTEER_RESCUE, Jurisdiction: "north"}}))
	}
	credential := func(req *sarv1.CreateCredentialRequest) string {
		req.DisplayName = "replicas test"
		return must[*sarv1.CreateCredentialResponse](t, "CreateCredential")(setup.auth.CreateCredential(as(admin), req)).GetToken()
	}
	op := credential(&sarv1.CreateCredentialRequest{Role: sarv1.Role_ROLE_OPERATOR, Jurisdiction: "north"})
	inc := must[*sarv1.CreateIncidentResponse](t, "CreateIncident")(setup.inc.CreateIncident(as(op), &sarv1.CreateIncidentRequest{
		Title: "Two hikers overdue on the north ridge", AgencyIds: agencies,
		InitialPlanningPoint: &sarv1.PlanningPoint{Position: &sarv1.LatLng{Lat: 30.2458, Lng: 119.7156}, AccuracyM: 50},
	})).GetIncident()

	// A durable consumer of the incident's events, created before the
	// phones join (it delivers from the stream's start anyway), and a
	// subscriber of its live positions.
	events := newEventLog()
	cons, err := js.CreateOrUpdateConsumer(ctx, dispatch.StreamName, jetstream.ConsumerConfig{
		Durable: "replicas-test", FilterSubject: dispatch.SubjectPrefix + inc.GetId() + ".evt.>",
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: 2 * time.Second, DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		t.Fatalf("create consumer: %v", err)
	}
	consuming, err := cons.Consume(func(m jetstream.Msg) {
		ev := &sarv1.Event{}
		if err := proto.Unmarshal(m.Data(), ev); err != nil {
			events.fail("undecodable event on %s: %v", m.Subject(), err)
		}
		var streamSeq uint64
		if md, err := m.Metadata(); err == nil {
			streamSeq = md.Sequence.Stream
		}
		events.durable(ev, streamSeq)
		_ = m.Ack() // a lost ack is a redelivery, deduplicated by event id
	}, jetstream.PullExpiry(2*time.Second), jetstream.PullHeartbeat(500*time.Millisecond))
	if err != nil {
		t.Fatalf("consume: %v", err)
	}
	defer consuming.Stop()
	posSub, err := obs.Subscribe(dispatch.SubjectPrefix+inc.GetId()+".pos.>", func(m *nats.Msg) {
		ev := &sarv1.Event{}
		if err := proto.Unmarshal(m.Data, ev); err != nil {
			events.fail("undecodable positions event on %s: %v", m.Subject, err)
			return
		}
		events.positions(ev)
	})
	if err != nil {
		t.Fatalf("subscribe positions: %v", err)
	}
	defer func() { _ = posSub.Unsubscribe() }()
	if err := posSub.SetPendingLimits(-1, -1); err != nil {
		t.Fatalf("positions subscription limits: %v", err)
	}

	// The phones: each with its own rescuer credential, joined through its
	// first replica, spread evenly.
	const phones = 12
	devs := make([]*rescuerPhone, phones)
	for i := range devs {
		d := &rescuerPhone{id: fmt.Sprintf("phone-%02d", i), inc: inc.GetId(), replica: i % len(sards), home: i % len(sards),
			lat: 30.2458 + 0.001*float64(i), base: time.Now().Add(-2 * time.Minute)}
		d.token = credential(&sarv1.CreateCredentialRequest{Role: sarv1.Role_ROLE_RESCUER, AgencyId: agencies[i%len(agencies)]})
		resp := must[*sarv1.JoinIncidentResponse](t, "JoinIncident")(sarv1.NewIncidentServiceClient(conns[d.replica]).JoinIncident(as(d.token),
			&sarv1.JoinIncidentRequest{IncidentId: inc.GetId(), DeviceId: d.id, DisplayName: d.id}))
		d.participant = resp.GetParticipant().GetId()
		devs[i] = d
	}

	msgr := &messenger{inc: inc.GetId(), token: op}
	stopAll := runPhones(ctx, conns, devs, func(stop <-chan struct{}) { msgr.run(ctx, conns, stop) })
	defer stopAll()

	// progress waits until every phone has n more acknowledged batches
	// with new fixes (and the operator m more messages) than at the call.
	progress := func(what string, n int64, m int64, only func(*rescuerPhone) bool) {
		t.Helper()
		want := make([]int64, len(devs))
		for i, d := range devs {
			want[i] = d.storedBatches.Load() + n
		}
		wantMsgs := msgr.done.Load() + m
		waitUntil(t, ctx, what, 60*time.Second, func() bool {
			for i, d := range devs {
				if (only == nil || only(d)) && d.storedBatches.Load() < want[i] {
					return false
				}
			}
			return msgr.done.Load() >= wantMsgs
		})
	}
	progress("ingest on every replica", 3, 5, nil)

	// Kill the SAR_EVENTS stream's leader, after moving the leadership to
	// the NATS node most replicas are connected to (JetStream elects at
	// random: a few tries), so that both JetStream and the replicas'
	// connections must fail over.
	victim := moveStreamLeader(t, ctx, natsCluster, busiestNode(natsCluster, sards[:]))
	onVictim := 0
	for _, a := range sards {
		if a.NATS.ConnectedUrl() == natsCluster.NodeURL(victim) {
			onVictim++
		}
	}
	t.Logf("killing NATS node %d, the SAR_EVENTS leader (%d of 3 replicas connected to it)", victim, onVictim)
	natsCluster.Kill(victim)
	progress("ingest after the NATS node's loss", 3, 5, nil)

	// Kill a sard replica: its phones' streams break mid-batch.
	const dead = 1
	t.Logf("killing sard replica %d", dead)
	sards[dead].Kill()
	progress("ingest after the replica's loss", 3, 5, func(d *rescuerPhone) bool { return d.home == dead })
	progress("ingest on the replicas left", 2, 3, nil)

	// The phones stop making fixes and empty their outboxes.
	stopAll()
	for _, d := range devs {
		if d.err != nil {
			t.Errorf("%s: %v", d.id, d.err)
		}
		if d.acked != d.next-1 {
			t.Errorf("%s: acked through %d, made fixes through %d: its outbox did not empty", d.id, d.acked, d.next-1)
		}
	}
	if msgr.err != nil {
		t.Errorf("messages: %v", msgr.err)
	}
	for _, d := range devs {
		if d.home == dead && d.moves == 0 {
			t.Errorf("%s of the dead replica never moved to another", d.id)
		}
	}

	// Every acknowledged fix is in Redis once (read through a live
	// replica), and no ack named a fix stored twice.
	loc := sarv1.NewLocationServiceClient(conns[0])
	totalFixes := 0
	for _, d := range devs {
		totalFixes += d.checkStored(t, loc, as(op))
	}

	// Every durable event reaches the consumer, once after deduplication.
	tasks := msgr.taskIDs()
	wantNotices := len(tasks) * len(agencies)
	var created, joined, notices int
	if !poll(ctx, 60*time.Second, func() bool {
		created, joined, notices = events.durableCounts(tasks)
		return created >= 1 && joined >= phones && notices >= wantNotices
	}) {
		t.Fatalf("durable events at the consumer after 60 s: %d incident created, %d joined, %d notices; want 1, %d, %d",
			created, joined, notices, phones, wantNotices)
	}
	events.check(t, inc.GetId(), devs, tasks, agencies)
	missing, missingResent, posEvents := events.checkPositions(t, devs)
	deliveries, unique, streamDups := events.durableStats()
	resent := 0
	for _, d := range devs {
		resent += d.resentDups
	}
	t.Logf("%d fixes stored from %d phones (%d moved replicas; %d fixes resent that were already stored), %d messages; "+
		"durable events: %d unique, %d deliveries, %d stored twice in the stream under one id; "+
		"outbox: %d deliveries left to the relay, %d events re-published by relays; "+
		"positions (core NATS, live only, not a delivery promise): %d events; acknowledged fixes never seen live: %d stored by the killed replica "+
		"whose ack and event never left (resent, found stored), %d others",
		totalFixes, phones, countMoved(devs), resent, len(tasks), unique, deliveries, streamDups,
		logs.get("event left in outbox for the relay")+logs.get("NATS unavailable: event left in outbox for the relay"),
		logs.get("events re-published"), posEvents, missingResent, missing)
}

// waitUntil polls cond until it holds, failing the test after timeout.
func waitUntil(t *testing.T, ctx context.Context, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	if !poll(ctx, timeout, cond) {
		t.Fatalf("timed out waiting for %s", what)
	}
}

// poll polls cond until it holds (true), or timeout passes or ctx ends
// (false).
func poll(ctx context.Context, timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// busiestNode is the NATS node the most replicas are connected to.
func busiestNode(c *testenv.NATSCluster, sards []*app.App) int {
	best, bestN := 0, -1
	for i := range c.Len() {
		n := 0
		for _, a := range sards {
			if a.NATS.ConnectedUrl() == c.NodeURL(i) {
				n++
			}
		}
		if n > bestN {
			best, bestN = i, n
		}
	}
	return best
}

// moveStreamLeader asks SAR_EVENTS' leader to step down until node is
// the leader, a few times at most (JetStream elects at random; a stream
// of one replica cannot move), and returns the leader's node.
func moveStreamLeader(t *testing.T, ctx context.Context, c *testenv.NATSCluster, node int) int {
	t.Helper()
	leaderOf := func() int {
		for i := range c.Len() {
			if s := c.Server(i); s != nil && s.JetStreamIsStreamLeader("$G", dispatch.StreamName) {
				return i
			}
		}
		return -1
	}
	l := -1
	waitUntil(t, ctx, "a SAR_EVENTS leader", 20*time.Second, func() bool { l = leaderOf(); return l >= 0 })
	for range 6 {
		if l == node {
			break
		}
		if err := c.Server(l).JetStreamStepdownStream("$G", dispatch.StreamName); err != nil {
			t.Logf("SAR_EVENTS leader step down: %v", err)
			break
		}
		old := l
		if !poll(ctx, 5*time.Second, func() bool { l = leaderOf(); return l >= 0 && l != old }) {
			waitUntil(t, ctx, "a SAR_EVENTS leader", 20*time.Second, func() bool { l = leaderOf(); return l >= 0 })
			break // it would not move
		}
	}
	return l
}

func countMoved(devs []*rescuerPhone) int {
	n := 0
	for _, d := range devs {
		if d.moves > 0 {
			n++
		}
	}
	return n
}

// summarize describes a sorted list of sequences briefly.
func summarize(seqs []uint64) string {
	if len(seqs) == 0 {
		return "none"
	}
	dups := 0
	for i := 1; i < len(seqs); i++ {
		if seqs[i] == seqs[i-1] {
			dups++
		}
	}
	return fmt.Sprintf("%d..%d, %d repeated", seqs[0], seqs[len(seqs)-1], dups)
}

// runPhones runs the phones, and others (such as a messenger), until the
// returned stop is called: they stop making fixes, empty their outboxes
// and return, and stop waits for them (it may be called again).
func runPhones(ctx context.Context, conns []*grpc.ClientConn, devs []*rescuerPhone, others ...func(stop <-chan struct{})) (stop func()) {
	ch := make(chan struct{})
	var wg sync.WaitGroup
	for _, d := range devs {
		wg.Go(func() { d.run(ctx, conns, ch) })
	}
	for _, o := range others {
		wg.Go(func() { o(ch) })
	}
	return sync.OnceFunc(func() {
		close(ch)
		wg.Wait()
	})
}

// rescuerPhone is a rescuer's phone: it numbers its fixes, keeps those not yet
// acknowledged, streams them to its replica one batch at a time, and when
// the stream breaks goes to another replica (as a load balancer would send
// it) and resends from acked_through+1.
type rescuerPhone struct {
	id, inc, token, participant string
	lat                         float64
	base                        time.Time // the first fix's time
	home                        int       // the replica it started on

	// Owned by run until it returns.
	replica     int
	next        uint64 // the next sequence to make
	acked       uint64 // the highest acked_through heard
	moves       int
	storedNamed map[uint64]int // how many acks named each fix stored
	resentDups  int            // fixes resent after a move that the server already had (stored, ack lost)
	resent      map[uint64]bool
	err         error

	storedBatches atomic.Int64 // acknowledged batches that stored new fixes
	refused       atomic.Int64 // batches refused whole (a backend unavailable) and sent again
	lastProblem   atomic.Value // string: the message of the last batch refused whole
}

const phoneBatch = 10

func (d *rescuerPhone) fix(seq uint64) *sarv1.LocationFix {
	return &sarv1.LocationFix{Sequence: seq, Lat: d.lat + 0.00002*float64(seq), Lng: 119.7156 + 0.00002*float64(seq),
		HorizontalAccuracyM: 6, Time: timestamppb.New(d.base.Add(time.Duration(seq) * 50 * time.Millisecond)),
		Source: sarv1.FixSource_FIX_SOURCE_GNSS}
}

func (d *rescuerPhone) run(ctx context.Context, conns []*grpc.ClientConn, stop <-chan struct{}) {
	d.next, d.storedNamed, d.resent = 1, map[uint64]int{}, map[uint64]bool{}
	stopping := false
	for ctx.Err() == nil {
		select {
		case <-stop:
			stopping = true
		default:
		}
		if stopping && d.acked == d.next-1 {
			return // the outbox is empty
		}
		done, err := d.stream(ctx, conns[d.replica], stop, &stopping)
		if done {
			return
		}
		if err != nil { // the replica is gone or going: the next one
			d.replica = (d.replica + 1) % len(conns)
			d.moves++
			time.Sleep(20 * time.Millisecond)
		}
	}
	d.err = fmt.Errorf("test ended with fixes %d..%d unacknowledged", d.acked+1, d.next-1)
}

// stream sends batches on one stream until it breaks (err) or the phone
// has stopped with an empty outbox (done).
func (d *rescuerPhone) stream(ctx context.Context, conn *grpc.ClientConn, stop <-chan struct{}, stopping *bool) (done bool, err error) {
	sctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+d.token))
	defer cancel()
	s, err := sarv1.NewLocationServiceClient(conn).StreamFixes(sctx)
	if err != nil {
		return false, err
	}
	var batchID uint64
	for {
		select {
		case <-stop:
			*stopping = true
		default:
		}
		first := d.acked + 1
		if first == d.next { // nothing waiting: make a batch, unless stopping
			if *stopping {
				_ = s.CloseSend()
				return true, nil
			}
			d.next += phoneBatch
		}
		last := min(first+phoneBatch-1, d.next-1)
		fixes := make([]*sarv1.LocationFix, 0, last-first+1)
		for seq := first; seq <= last; seq++ {
			fixes = append(fixes, d.fix(seq))
		}
		batchID++
		if err := s.Send(&sarv1.StreamFixesRequest{Batch: &sarv1.FixBatch{IncidentId: d.inc, DeviceId: d.id, BatchId: batchID, Fixes: fixes}}); err != nil {
			return false, err
		}
		r, err := s.Recv()
		if err != nil {
			return false, err
		}
		ack := r.GetAck()
		if ack.GetProblem() != nil { // refused whole (a backend unavailable): send it again
			d.refused.Add(1)
			d.lastProblem.Store(ack.GetProblem().GetMessage())
			time.Sleep(20 * time.Millisecond)
			continue
		}
		for _, seq := range ack.GetStored() {
			d.storedNamed[seq]++
		}
		d.resentDups += len(ack.GetDuplicates())
		for _, seq := range ack.GetDuplicates() {
			d.resent[seq] = true
		}
		if len(ack.GetRejected()) > 0 {
			d.err = fmt.Errorf("batch %d: fixes rejected: %v", batchID, ack.GetRejected())
		}
		d.acked = max(d.acked, ack.GetAckedThrough())
		if len(ack.GetStored()) > 0 {
			d.storedBatches.Add(1)
		}
		time.Sleep(10 * time.Millisecond) // a phone's pace, not a flood
	}
}

// checkStored checks, once the phone has stopped, that no ack named a fix
// stored twice and that its track in Redis holds every acknowledged fix
// exactly once (ctx carries a token that may read it); it returns the
// number of fixes on the track.
func (d *rescuerPhone) checkStored(t *testing.T, loc sarv1.LocationServiceClient, ctx context.Context) int {
	t.Helper()
	for seq, n := range d.storedNamed {
		if n > 1 {
			t.Errorf("%s of %s: fix %d named stored by %d acks, want 1", d.id, d.inc, seq, n)
		}
	}
	track := must[*sarv1.GetTrackResponse](t, "GetTrack")(loc.GetTrack(ctx,
		&sarv1.GetTrackRequest{IncidentId: d.inc, ParticipantId: d.participant}))
	got := make([]uint64, 0, len(track.GetFixes()))
	for _, f := range track.GetFixes() {
		got = append(got, f.GetSequence())
	}
	slices.Sort(got)
	want := make([]uint64, d.acked)
	for i := range want {
		want[i] = uint64(i + 1)
	}
	if !equalSeqs(got, want) {
		t.Errorf("%s of %s: the track in Redis holds %d fixes (%s), want 1..%d each once", d.id, d.inc, len(got), summarize(got), d.acked)
	}
	return len(got)
}

// messenger is an operator posting a message to all teams every 30 ms,
// through the replicas in turn; a call that fails is retried with the
// same request id on the next replica until it succeeds.
type messenger struct {
	inc, token string
	done       atomic.Int64
	mu         sync.Mutex
	tasks      []string
	err        error
}

func (m *messenger) taskIDs() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.tasks)
}

func (m *messenger) run(ctx context.Context, conns []*grpc.ClientConn, stop <-chan struct{}) {
	actx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+m.token)
	replica := 0
	for n := 1; ; n++ {
		select {
		case <-stop:
			return
		case <-time.After(30 * time.Millisecond):
		}
		req := &sarv1.CreateTaskRequest{IncidentId: m.inc, Kind: sarv1.TaskKind_TASK_KIND_MESSAGE,
			Title: fmt.Sprintf("Radio check %d", n), Instructions: "Report your position on channel 2", RequestId: fmt.Sprintf("msg-%d", n)}
		for {
			cctx, cancel := context.WithTimeout(actx, 5*time.Second)
			resp, err := sarv1.NewTaskServiceClient(conns[replica]).CreateTask(cctx, req)
			cancel()
			replica = (replica + 1) % len(conns)
			if err == nil {
				m.mu.Lock()
				if slices.Contains(m.tasks, resp.GetTask().GetId()) {
					m.err = fmt.Errorf("request %s answered with task %s, already made by another request", req.GetRequestId(), resp.GetTask().GetId())
				}
				m.tasks = append(m.tasks, resp.GetTask().GetId())
				m.mu.Unlock()
				m.done.Add(1)
				break
			}
			if ctx.Err() != nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// eventLog is what the observer received.
type eventLog struct {
	mu         sync.Mutex
	byID       map[string]*sarv1.Event
	deliveries map[string]int
	streamSeqs map[string]map[uint64]bool
	posByID    map[string]*sarv1.Event
	errs       []string
}

func newEventLog() *eventLog {
	return &eventLog{byID: map[string]*sarv1.Event{}, deliveries: map[string]int{}, streamSeqs: map[string]map[uint64]bool{},
		posByID: map[string]*sarv1.Event{}}
}

func (l *eventLog) fail(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs = append(l.errs, fmt.Sprintf(format, args...))
}

func (l *eventLog) durable(ev *sarv1.Event, streamSeq uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	id := ev.GetId()
	l.byID[id] = ev
	l.deliveries[id]++
	if l.streamSeqs[id] == nil {
		l.streamSeqs[id] = map[uint64]bool{}
	}
	l.streamSeqs[id][streamSeq] = true
}

func (l *eventLog) positions(ev *sarv1.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.posByID[ev.GetId()] = ev
}

// durableCounts counts the distinct events received: incident created,
// participants joined, and notices of the given tasks.
func (l *eventLog) durableCounts(tasks []string) (created, joined, notices int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, ev := range l.byID {
		switch {
		case ev.GetIncidentChanged().GetChange() == sarv1.IncidentChange_INCIDENT_CHANGE_CREATED:
			created++
		case ev.GetParticipantJoined().GetChange() == sarv1.ParticipantChange_PARTICIPANT_CHANGE_JOINED:
			joined++
		case ev.GetTaskChanged().GetNoticeAgency() != "" && slices.Contains(tasks, ev.GetTaskChanged().GetTask().GetId()):
			notices++
		}
	}
	return created, joined, notices
}

// durableStats are the deliveries, the distinct event ids, and the ids
// the stream holds under two sequences (the duplicate window missed them).
func (l *eventLog) durableStats() (deliveries, unique, streamDups int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, n := range l.deliveries {
		deliveries += n
		unique++
		if len(l.streamSeqs[id]) > 1 {
			streamDups++
		}
	}
	return deliveries, unique, streamDups
}

// check asserts that each change came as one event: one incident
// creation, one join per phone, one notice per message and agency, and
// nothing else of these kinds.
func (l *eventLog) check(t *testing.T, incident string, devs []*rescuerPhone, tasks, agencies []string) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.errs {
		t.Error(e)
	}
	created := 0
	joins := map[string]int{}   // participant → distinct events
	notices := map[string]int{} // task/agency → distinct events
	for _, ev := range l.byID {
		if ev.GetIncidentId() != incident {
			t.Errorf("event %s of incident %s on this incident's consumer", ev.GetId(), ev.GetIncidentId())
		}
		switch {
		case ev.GetIncidentChanged() != nil:
			if ev.GetIncidentChanged().GetChange() == sarv1.IncidentChange_INCIDENT_CHANGE_CREATED {
				created++
			}
		case ev.GetParticipantJoined() != nil:
			joins[ev.GetParticipantJoined().GetParticipant().GetId()]++
		case ev.GetTaskChanged().GetNoticeAgency() != "":
			notices[ev.GetTaskChanged().GetTask().GetId()+"/"+ev.GetTaskChanged().GetNoticeAgency()]++
		}
	}
	if created != 1 {
		t.Errorf("incident created events = %d, want 1", created)
	}
	for _, d := range devs {
		if n := joins[d.participant]; n != 1 {
			t.Errorf("%s: joined events = %d, want 1", d.id, n)
		}
	}
	if len(joins) != len(devs) {
		t.Errorf("joined events name %d participants, want %d", len(joins), len(devs))
	}
	for _, task := range tasks {
		for _, a := range agencies {
			if n := notices[task+"/"+a]; n != 1 {
				t.Errorf("message %s: notices to %s = %d distinct events, want 1", task, a, n)
			}
		}
	}
	if len(notices) != len(tasks)*len(agencies) {
		t.Errorf("notices name %d task/agency pairs, want %d (%d messages acknowledged): a message posted twice?",
			len(notices), len(tasks)*len(agencies), len(tasks))
	}
}

// checkPositions asserts that no fix came in two positions events and
// that every fix published is stored; it returns how many acknowledged
// fixes were not seen live (those a phone resent to another replica and
// found already stored apart), and the number of positions events.
func (l *eventLog) checkPositions(t *testing.T, devs []*rescuerPhone) (missing, missingResent, events int) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	byDevice := map[string]*rescuerPhone{}
	for _, d := range devs {
		byDevice[d.id] = d
	}
	seen := map[string]map[uint64]int{}
	for _, ev := range l.posByID {
		pe := ev.GetPositions()
		d := byDevice[pe.GetDeviceId()]
		if d == nil {
			t.Errorf("positions event %s of unknown device %q", ev.GetId(), pe.GetDeviceId())
			continue
		}
		if seen[d.id] == nil {
			seen[d.id] = map[uint64]int{}
		}
		for _, f := range pe.GetFixes() {
			seen[d.id][f.GetSequence()]++
			if f.GetSequence() > d.acked {
				t.Errorf("%s: fix %d published live but never acknowledged", d.id, f.GetSequence())
			}
		}
	}
	for _, d := range devs {
		for seq := uint64(1); seq <= d.acked; seq++ {
			switch n := seen[d.id][seq]; {
			case n == 0 && d.resent[seq]:
				missingResent++
			case n == 0:
				missing++
			case n > 1:
				t.Errorf("%s: fix %d in %d positions events, want at most 1", d.id, seq, n)
			}
		}
	}
	return missing, missingResent, len(l.posByID)
}

// logCounter is the replicas' logger: it counts messages (info and above)
// and the events the outbox relays re-published.
type logCounter struct {
	mu     sync.Mutex
	counts map[string]int64
}

func (h *logCounter) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (h *logCounter) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.counts[r.Message]++
	if r.Message == "outbox relay re-published events" {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "events" {
				h.counts["events re-published"] += a.Value.Int64()
			}
			return true
		})
	}
	return nil
}

func (h *logCounter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logCounter) WithGroup(string) slog.Handler      { return h }

func (h *logCounter) get(msg string) int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.counts[msg]
}
