package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/sim"
)

// outbox is a phone's fixes not yet acknowledged, and its counts. The
// phone numbers its fixes from 1, sends what is in its outbox (at most a
// batch), and drops what an ack says is done (at or below acked_through);
// after a lost ack or a SEQUENCE_GAP it sends the same fixes again.
type outbox struct {
	fixes   []*sarv1.LocationFix
	seq     uint64 // last sequence made
	acked   uint64 // acked_through as last heard
	maxSent uint64
	batchID uint64
	counts  deviceCounts
}

func (b *outbox) add(f *sarv1.LocationFix) { b.fixes = append(b.fixes, f) }

// next is the next batch to send: the oldest unacknowledged fixes.
func (b *outbox) next(incident, device string) *sarv1.FixBatch {
	n := min(len(b.fixes), maxBatch)
	b.batchID++
	b.counts.Batches++
	for _, f := range b.fixes[:n] {
		if f.GetSequence() > b.maxSent {
			b.counts.Sent++
			b.maxSent = f.GetSequence()
		}
	}
	return &sarv1.FixBatch{IncidentId: incident, DeviceId: device, BatchId: b.batchID, Fixes: b.fixes[:n]}
}

// ack takes an acknowledgement in; it returns a description of a refused
// batch, or "".
func (b *outbox) ack(a *sarv1.FixAck) string {
	if p := a.GetProblem(); p != nil {
		b.counts.Problems++
		return fmt.Sprintf("batch %d refused: %s: %s", a.GetBatchId(), codes.Code(p.GetCode()), p.GetMessage())
	}
	b.counts.Stored += int64(len(a.GetStored()))
	b.counts.Duplicates += int64(len(a.GetDuplicates()))
	for _, r := range a.GetRejected() {
		if r.GetReason() == sarv1.RejectReason_REJECT_REASON_SEQUENCE_GAP {
			b.counts.Gaps++
		} else {
			b.counts.Rejected++
		}
	}
	b.acked = max(b.acked, a.GetAckedThrough())
	i := 0
	for i < len(b.fixes) && b.fixes[i].GetSequence() <= b.acked {
		i++
	}
	b.fixes = b.fixes[i:]
	if len(a.GetRejected()) > 0 && a.GetRejected()[0].GetReason() != sarv1.RejectReason_REJECT_REASON_SEQUENCE_GAP {
		return fmt.Sprintf("batch %d: fix %d rejected: %s", a.GetBatchId(), a.GetRejected()[0].GetSequence(),
			a.GetRejected()[0].GetViolation().GetDescription())
	}
	return ""
}

// team is one team in the field: its members sweep the segment it was
// given abreast, and when all are done it asks for the next one.
type team struct {
	d                *drill
	agency, id, kind string
	idx              int
	members          []*rescuer
	mu               sync.Mutex
	segments         []int32
	idle             int // members done with the current task
	asking           bool
}

func (t *team) ref() string { return t.agency + "/" + t.id }

func (t *team) segmentsSoFar() []int32 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]int32{}, t.segments...)
}

// memberDone is called by a member whose route ended: the last one to
// finish asks for the team's next task.
func (t *team) memberDone() {
	t.mu.Lock()
	t.idle++
	ask := t.idle >= len(t.members) && !t.asking
	if ask {
		t.asking = true
	}
	t.mu.Unlock()
	if ask {
		t.d.bg.Go(func() { t.nextTask(nil) })
	}
}

// nextTask asks SuggestNextTask (assign=true) for the team's next segment,
// from the trailhead or from the team's last known position (the
// server's default), and gives each member its lanes of it. When every
// segment is taken the team waits where it is and asks again later.
func (t *team) nextTask(from *sim.XY) {
	d := t.d
	req := &sarv1.SuggestNextTaskRequest{IncidentId: d.incident, Team: &sarv1.TeamRef{AgencyId: t.agency, TeamId: t.id},
		Searchers: int32(len(t.members)), Assign: true}
	if from != nil {
		lat, lng := d.frame.LatLng(*from)
		req.Position = &sarv1.LatLng{Lat: lat, Lng: lng}
	}
	var resp *sarv1.SuggestNextTaskResponse
	err := d.call(context.WithoutCancel(d.admin), func(ctx context.Context) error {
		var err error
		resp, err = sarv1.NewSearchServiceClient(d.conn).SuggestNextTask(ctx, req)
		return err
	})
	if err != nil {
		if status.Code(err) == codes.FailedPrecondition {
			d.logf("  team %s: no segment left (%s); waiting %v", t.ref(), status.Convert(err).Message(), noTaskRetry)
		} else {
			d.sample("team %s: suggest next task: %v", t.ref(), err)
		}
		t.mu.Lock()
		t.asking = true // until the retry
		t.mu.Unlock()
		d.bg.Go(func() {
			if d.waitSim(d.simAt(time.Now()).Add(noTaskRetry)) {
				t.nextTask(nil)
			}
		})
		return
	}
	seg := resp.GetSegment()
	t.mu.Lock()
	t.segments = append(t.segments, seg.GetId())
	t.idle, t.asking = 0, false
	t.mu.Unlock()
	d.logf("  team %s: segment %d (POA %.1f %%, %.2f km², %d cells): travel %v, search %v, expected POS %.1f %%",
		t.ref(), seg.GetId(), 100*seg.GetPoa(), seg.GetAreaM2()/1e6, len(seg.GetCells()),
		resp.GetTravel().AsDuration(), resp.GetSearch().AsDuration(), 100*resp.GetExpectedPos())
	for j, r := range t.members {
		route, err := sim.SweepRoute(d.frame, seg.GetCells(), sweepSpacingM, j, len(t.members), r.pos())
		if err != nil {
			d.sample("team %s: sweep of segment %d: %v", t.ref(), seg.GetId(), err)
			c := seg.GetCentroid()
			route = []sim.XY{d.frame.XY(c.GetLat(), c.GetLng())}
		}
		r.follow(route)
	}
}

// rescuer is one rescuer's phone: it walks (the team's task, or about
// where it is while waiting), makes a fix every --fix-interval and sends
// its outbox every --batch-interval, as a ReportFixes call or on its
// StreamFixes stream (--fix-call).
type rescuer struct {
	team                *team
	lane                int
	name, device, token string
	participant         string
	rng                 *mrand.Rand // lost connections
	stream              sarv1.LocationService_StreamFixesClient
	cancel              context.CancelFunc
	mu                  sync.Mutex // walker, onTask, box
	walker              *sim.Walker
	onTask              bool
	box                 outbox
	acked               uint64 // from JoinIncident
}

func (r *rescuer) pos() sim.XY {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.walker.Pos()
}

func (r *rescuer) follow(route []sim.XY) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.walker.Follow(route)
	r.onTask = true
}

func (r *rescuer) snapshot() deviceCounts {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.box.counts
	c.Devices = 1
	return c
}

// makeFixes walks and makes the fixes due after from up to and including
// until; it returns the time of the last one made.
func (r *rescuer) makeFixes(from, until time.Time, every time.Duration) time.Time {
	done := false
	r.mu.Lock()
	for t := from.Add(every); !t.After(until); t = t.Add(every) {
		r.box.seq++
		r.box.add(r.walker.Next(r.box.seq, t))
		from = t
		if r.onTask && r.walker.RouteLeft() == 0 {
			r.onTask, done = false, true
		}
	}
	r.mu.Unlock()
	if done {
		r.team.memberDone()
	}
	return from
}

func (r *rescuer) run(d *drill) {
	r.box.seq, r.box.acked = r.acked, r.acked
	defer r.closeStream(d)
	last := d.simStart
	// Phones do not send in step: each starts at its own phase.
	next := d.simStart.Add(time.Duration(r.rng.Int64N(int64(d.o.BatchInterval))) + d.o.FixInterval)
	for {
		ok := d.waitSim(next)
		until := next
		if !ok {
			until = d.simAt(earlier(time.Now(), d.wallEnd))
		}
		last = r.makeFixes(last, until, d.o.FixInterval)
		if !ok {
			break
		}
		r.send(d, true)
		next = next.Add(d.o.BatchInterval)
	}
	// The drill is over: send what is left (a few tries, a little apart),
	// then hang up.
	for try := 0; try < 5; try++ {
		r.mu.Lock()
		left := len(r.box.fixes)
		r.mu.Unlock()
		if left == 0 {
			break
		}
		time.Sleep(time.Duration(try) * 100 * time.Millisecond)
		r.send(d, false)
	}
	r.mu.Lock()
	r.box.counts.Unacked = int64(len(r.box.fixes))
	r.mu.Unlock()
}

// send sends one batch from the outbox and waits for its ack. A broken
// stream is dropped and opened again at the next send, which resends from
// the last ack. With flaky, the phone may lose its connection after
// sending, before the ack (--flaky).
func (r *rescuer) send(d *drill, flaky bool) {
	r.mu.Lock()
	if len(r.box.fixes) == 0 {
		r.mu.Unlock()
		return
	}
	batch := r.box.next(d.incident, r.device)
	r.mu.Unlock()
	if d.o.FixCall == "report" {
		r.report(d, batch, flaky)
		return
	}
	if r.stream == nil {
		ctx, cancel := context.WithCancel(withToken(context.Background(), r.token))
		s, err := sarv1.NewLocationServiceClient(d.conn).StreamFixes(ctx)
		if err != nil {
			cancel()
			r.lost(d, "open stream: %v", err)
			return
		}
		r.stream, r.cancel = s, cancel
	}
	if err := r.stream.Send(&sarv1.StreamFixesRequest{Batch: batch}); err != nil {
		r.lost(d, "send: %v", err)
		return
	}
	if flaky && r.rng.Float64() < d.o.Flaky {
		r.lost(d, "") // out of coverage before the ack came
		return
	}
	timer := time.AfterFunc(d.o.Timeout, r.cancel)
	resp, err := r.stream.Recv()
	timer.Stop()
	if err != nil {
		r.lost(d, "receive: %v", err)
		return
	}
	if resp.GetAck().GetBatchId() != batch.GetBatchId() {
		r.lost(d, "ack for batch %d, want %d", resp.GetAck().GetBatchId(), batch.GetBatchId())
		return
	}
	r.mu.Lock()
	problem := r.box.ack(resp.GetAck())
	r.mu.Unlock()
	if problem != "" {
		d.sample("%s: %s", r.name, problem)
	}
}

// report sends one batch as a ReportFixes call. A batch-level problem
// is the call's status, counted as the stream's ack would count it; a
// failed call, or an answer lost on the way back (flaky), is resent from
// the last ack at the next send.
func (r *rescuer) report(d *drill, batch *sarv1.FixBatch, flaky bool) {
	ctx, cancel := context.WithTimeout(withToken(context.Background(), r.token), d.o.Timeout)
	defer cancel()
	resp, err := sarv1.NewLocationServiceClient(d.conn).ReportFixes(ctx, &sarv1.ReportFixesRequest{Batch: batch})
	ack := resp.GetAck()
	switch st := status.Convert(err); st.Code() {
	case codes.OK:
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled: // the connection, or sard gone: as a broken stream
		r.lost(d, "report: %v", err)
		return
	default: // refused (a store outage, the rate limit): as a stream's ack says it
		ack = &sarv1.FixAck{IncidentId: batch.GetIncidentId(), DeviceId: batch.GetDeviceId(), BatchId: batch.GetBatchId(),
			Problem: &sarv1.Problem{Code: uint32(st.Code()), Message: st.Message()}}
	}
	if flaky && r.rng.Float64() < d.o.Flaky {
		r.lost(d, "") // out of coverage before the answer came: stored, but the phone does not know
		return
	}
	if ack.GetBatchId() != batch.GetBatchId() {
		r.lost(d, "ack for batch %d, want %d", ack.GetBatchId(), batch.GetBatchId())
		return
	}
	r.mu.Lock()
	problem := r.box.ack(ack)
	r.mu.Unlock()
	if problem != "" {
		d.sample("%s: %s", r.name, problem)
	}
}

// lost drops the stream (the next send opens another and resends from the
// last ack), counting a reconnect and sampling the reason if any.
func (r *rescuer) lost(d *drill, format string, args ...any) {
	if r.cancel != nil {
		r.cancel()
	}
	r.stream, r.cancel = nil, nil
	r.mu.Lock()
	r.box.counts.Reconnects++
	r.mu.Unlock()
	if format != "" {
		d.sample("%s: "+format, append([]any{r.name}, args...)...)
	}
}

// closeStream ends the stream cleanly: half-close, then wait for the
// server's end.
func (r *rescuer) closeStream(d *drill) {
	if r.stream == nil {
		return
	}
	_ = r.stream.CloseSend()
	timer := time.AfterFunc(d.o.Timeout, r.cancel)
	for {
		if _, err := r.stream.Recv(); err != nil {
			if !errors.Is(err, io.EOF) && status.Code(err) != codes.Canceled {
				d.sample("%s: end of stream: %v", r.name, err)
			}
			break
		}
	}
	timer.Stop()
	r.cancel()
	r.stream, r.cancel = nil, nil
}

// callerPhone is the lost person's phone with the share page open: it
// reports over the JSON gateway with the link's token, as the page does
// (POST /v1/incidents/{id}:join, then POST /v1/incidents/{id}/fixes),
// a fix every 10 s and a post every 30 s, until its battery dies.
type callerPhone struct {
	d                  *drill
	token, participant string
	device             string
	phone              *sim.Caller
	http               *http.Client
	box                outbox
	last               time.Time // simulated time of the last fix made
	counts             deviceCounts
}

// post sends one JSON request with the link's token and decodes a 200
// answer into out.
func (c *callerPhone) post(ctx context.Context, path string, in, out proto.Message) (int, error) {
	body, err := protojson.Marshal(in)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.d.o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.d.httpBase+path, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(b))
	}
	return resp.StatusCode, protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(b, out)
}

// join is what the share page does first.
func (c *callerPhone) join(ctx context.Context) error {
	var resp sarv1.JoinIncidentResponse
	if _, err := c.post(ctx, "/v1/incidents/"+c.d.incident+":join", &sarv1.JoinIncidentRequest{DeviceId: c.device}, &resp); err != nil {
		return fmt.Errorf("drill: the share page joins over HTTP at %s: %w", c.d.o.HTTPAddr, err)
	}
	c.box.seq, c.box.acked = resp.GetAckedThrough(), resp.GetAckedThrough()
	return nil
}

// report makes the fixes due up to until (simulated) and posts the outbox.
func (c *callerPhone) report(until time.Time) {
	if c.last.IsZero() { // the first fix, when the page opens
		c.box.seq++
		c.box.add(c.phone.Next(c.box.seq, until))
		c.last = until
	}
	for t := c.last.Add(callerFixEvery); !t.After(until); t = t.Add(callerFixEvery) {
		c.box.seq++
		c.box.add(c.phone.Next(c.box.seq, t))
		c.last = t
	}
	if len(c.box.fixes) == 0 {
		return
	}
	batch := c.box.next("", c.device) // the incident is in the path
	var resp sarv1.ReportFixesResponse
	code, err := c.post(context.Background(), "/v1/incidents/"+c.d.incident+"/fixes", batch, &resp)
	switch {
	case err != nil && (code == 0 || code == http.StatusTooManyRequests || code >= 500):
		c.box.counts.Reconnects++ // no answer: the page posts the same fixes again next time
		c.d.sample("caller: post fixes: %v", err)
	case err != nil:
		c.box.counts.Problems++
		c.d.sample("caller: post fixes: %v", err)
	default:
		if p := c.box.ack(resp.GetAck()); p != "" {
			c.d.sample("caller: %s", p)
		}
	}
}

// run reports every 30 s (simulated) until the battery dies or the drill
// ends.
func (c *callerPhone) run() {
	d := c.d
	dies := d.simStart.Add(d.o.CallerFor)
	for next := d.simStart.Add(callerPostEvry); !next.After(dies); next = next.Add(callerPostEvry) {
		if !d.waitSim(next) {
			break
		}
		c.report(next)
	}
	c.box.counts.Unacked = int64(len(c.box.fixes))
	c.box.counts.Devices = 1
	c.counts = c.box.counts
}
