package server

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/auth"
	"github.com/mountain-sar/sar/internal/core"
	"github.com/mountain-sar/sar/internal/sar"
)

// errDraining ends long-lived streams when the server shuts down, so that
// clients reconnect (to another replica) at once.
var errDraining = status.Error(codes.Unavailable, "server is shutting down; reconnect")

// StreamFixes answers each batch with one acknowledgement, in order. It
// reads the next batch only after the previous one was stored and
// acknowledged; on shutdown it finishes the batch in hand and ends the
// stream with UNAVAILABLE (a batch not yet acknowledged is sent again by
// the device, and stored once).
//
// A stream is one goroutine, the handler's, which waits in Recv between
// batches. (With thousands of phones each holding a stream open and
// sending every few seconds, a second goroutine per stream, to wait in
// Recv while the handler watched for shutdown, was a third of sard's
// goroutine stacks.) Shutdown ends a stream whose handler waits in Recv
// itself: see recvCut.
func (s *locationService) StreamFixes(stream sarv1.LocationService_StreamFixesServer) error {
	ctx := stream.Context()
	presented := presentedFromContext(ctx)
	cut := newRecvCut(ctx)
	defer context.AfterFunc(s.drainCtx, cut.drain)()
	// While the store is unavailable the re-check cannot run, and the
	// stream rides out the outage with the principal of the last check
	// that could (outageHold): the batch then fails on the store itself,
	// with a batch-level problem in its ack.
	hold := newOutageHold(ctx, s.grace)
	var dev core.DeviceStream // what its batches share (the cell of the last fix)
	for {
		if !cut.wait() {
			return errDraining
		}
		req, err := stream.Recv()
		if cut.ended() { // by shutdown, while waiting: a batch read meanwhile is not stored, the device sends it again
			return errDraining
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		// Re-check the credential for every batch (cached briefly), so
		// that a revoked device stops within the cache time.
		p, err := s.core.Reauthenticate(ctx, presented)
		switch {
		case err == nil:
			hold.ok(p)
		case hold.through(err):
			p = hold.held
		default:
			return toStatus(s.log, "StreamFixes", err)
		}
		b := req.GetBatch()
		ack, err := s.core.IngestOn(ctx, &dev, p, b)
		if err != nil {
			ack = &sarv1.FixAck{IncidentId: b.GetIncidentId(), DeviceId: b.GetDeviceId(), BatchId: b.GetBatchId(),
				Problem: problemOf(toStatus(s.log, "StreamFixes", err))}
		}
		if err := stream.Send(&sarv1.StreamFixesResponse{Ack: ack}); err != nil {
			return err
		}
	}
}

// recvCut ends, at shutdown, a stream whose handler waits in Recv, and
// leaves one that is storing a batch to finish it: the handler says when
// it waits; drain, called at shutdown, then writes the stream's
// UNAVAILABLE status on the gRPC transport's stream, which ends the
// stream and so wakes the Recv. A handler that is busy finishes its batch,
// acknowledges it, and stops before reading the next (wait says so).
//
// The transport's stream is the grpc.ServerTransportStream in the call's
// context; its WriteStatus is not part of that interface, so it is found
// by its method (TestShutdownWakesIdleStreams fails if a gRPC release
// loses it). Without it (a stream that did not come through the gRPC
// transport, such as the in-process door) a waiting stream is not cut:
// it ends with its context.
type recvCut struct {
	mu       sync.Mutex
	end      func(*status.Status) error // the transport stream's WriteStatus, or nil
	waiting  bool                       // in Recv
	draining bool                       // shutdown began
	cut      bool                       // drain ended the stream
}

// statusWriter is what the gRPC transport's stream can do besides
// grpc.ServerTransportStream.
type statusWriter interface {
	WriteStatus(*status.Status) error
}

func newRecvCut(ctx context.Context) *recvCut {
	c := &recvCut{}
	if w, ok := grpc.ServerTransportStreamFromContext(ctx).(statusWriter); ok {
		c.end = w.WriteStatus
	}
	return c
}

// drain is called at shutdown.
func (c *recvCut) drain() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.draining = true
	if c.waiting && c.end != nil {
		c.cut = c.end(status.Convert(errDraining)) == nil
	}
}

// wait is called before Recv; false: the server is shutting down.
func (c *recvCut) wait() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waiting = !c.draining
	return c.waiting
}

// ended is called when Recv returns: whether drain ended the stream.
func (c *recvCut) ended() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waiting = false
	return c.cut
}

// problemOf renders a batch-level status for a stream acknowledgement.
func problemOf(err error) *sarv1.Problem {
	st := status.Convert(err)
	pr := &sarv1.Problem{Code: uint32(st.Code()), Message: st.Message()}
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, f := range br.GetFieldViolations() {
				pr.FieldViolations = append(pr.FieldViolations, &sarv1.FieldViolation{
					Field: f.GetField(), Description: f.GetDescription(), Reason: f.GetReason()})
			}
		}
	}
	return pr
}

// WatchIncident sends a snapshot, then the incident's events as they are
// published by any replica. The credential is checked again every
// recheck interval and at its expiry: a revoked or expired console stops
// receiving. When NATS dropped events because this watcher was too slow, a
// fresh snapshot is sent so the console is never silently stale. Events
// published again by the outbox relay are sent once.
func (s *incidentService) WatchIncident(req *sarv1.WatchIncidentRequest, stream sarv1.IncidentService_WatchIncidentServer) error {
	ctx := stream.Context()
	presented := presentedFromContext(ctx)
	inc, err := s.core.StartWatch(ctx, req.GetIncidentId())
	if err != nil {
		return err
	}
	// Subscribe before reading the snapshot: nothing published in between
	// is missed (some may arrive twice; they are dropped by id).
	events, dropped, stop, err := s.core.Watch(ctx, inc.GetId())
	if err != nil {
		return status.Error(codes.Unavailable, "event bus unavailable")
	}
	defer stop()
	wire := onWire(ctx)
	sendSnapshot := func() error {
		snap, err := s.core.Snapshot(ctx, inc)
		if err != nil {
			return err
		}
		return stream.Send(&sarv1.WatchIncidentResponse{Kind: &sarv1.WatchIncidentResponse_Snapshot{Snapshot: snap}})
	}
	if err := sendSnapshot(); err != nil {
		return err
	}
	recheck := time.NewTicker(s.recheck)
	defer recheck.Stop()
	seen := newRecentIDs(4096)
	lost := 0
	hold := newOutageHold(ctx, s.grace)
	for {
		select {
		case <-s.draining:
			return errDraining
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-recheck.C:
			// While the store is unavailable the re-check cannot run: the
			// stream rides out a short outage (see outageHold) rather than
			// send every console to reconnect (and read a snapshot)
			// against a store that is just coming back.
			err := s.core.RecheckWatch(ctx, presented, inc.GetId())
			if err == nil {
				hold.ok(nil)
			} else if !hold.through(err) {
				return err
			}
		case ev, ok := <-events:
			if !ok {
				return status.FromContextError(context.Cause(ctx)).Err()
			}
			if n := dropped(); n > lost {
				// NATS dropped events for this slow watcher: a fresh
				// snapshot, or, while the store cannot give one, another
				// try with the next event.
				if err := sendSnapshot(); err == nil {
					lost = n
				} else if !hold.through(err) {
					return err
				}
			}
			if !seen.add(ev.Event.GetId()) {
				continue
			}
			if err := sendEvent(stream, ev, wire); err != nil {
				return err
			}
		}
	}
}

// watchEventField is the field number of WatchIncidentResponse.event.
var watchEventField = (&sarv1.WatchIncidentResponse{}).ProtoReflect().Descriptor().Fields().ByName("event").Number()

// sendEvent sends one event to a watcher. On the gRPC door (wire) the
// event goes on in the bytes it came in from the bus, inside the
// response's field header: encoding it again cost a marshal per event and
// per watcher (a console for each agency on an incident, each its own
// watcher). An event has no field a watcher's role hides, so the bytes
// are the same for all.
func sendEvent(stream sarv1.IncidentService_WatchIncidentServer, ev sar.BusEvent, wire bool) error {
	if wire && len(ev.Wire) > 0 {
		head := protowire.AppendTag(make([]byte, 0, 16), watchEventField, protowire.BytesType)
		head = protowire.AppendVarint(head, uint64(len(ev.Wire)))
		return stream.SendMsg(wireMessage{head: head, body: ev.Wire})
	}
	return stream.Send(&sarv1.WatchIncidentResponse{Kind: &sarv1.WatchIncidentResponse_Event{Event: ev.Event}})
}

// outageHold lets a stream go on while the store is unavailable:
// the credential re-check and the stream's reads cannot run, so the stream
// keeps the credential it holds and tries again later. It does so for
// grace (Options.WatchOutageGrace, 30 s: about a Redis failover or
// restart) since its last successful check or read, and never past the
// credential's expiry; then the stream ends with UNAVAILABLE, so that a
// replica that lost its store neither keeps serving (a revocation cannot
// reach it) nor silently stalls its streams, whose clients reconnect to a
// healthy replica. A revocation takes effect at the first re-check that
// runs.
type outageHold struct {
	held   *sarv1.Principal
	grace  time.Duration
	lastOK time.Time
}

func newOutageHold(ctx context.Context, grace time.Duration) *outageHold {
	return &outageHold{held: auth.FromContext(ctx), grace: grace, lastOK: time.Now()}
}

// ok records a successful check (with its principal, if it gave one) or
// read.
func (h *outageHold) ok(p *sarv1.Principal) {
	if p != nil {
		h.held = p
	}
	h.lastOK = time.Now()
}

// through reports whether the stream may go on after err.
func (h *outageHold) through(err error) bool {
	return sar.KindOf(err) == sar.KindUnavailable && h.held != nil &&
		h.held.GetExpireTime().AsTime().After(time.Now()) && time.Since(h.lastOK) < h.grace
}

// recentIDs remembers the last n event ids, to drop repeats.
type recentIDs struct {
	set  map[string]struct{}
	ring []string
	next int
}

func newRecentIDs(n int) *recentIDs {
	return &recentIDs{set: make(map[string]struct{}, n), ring: make([]string, n)}
}

// add reports whether id is new, and remembers it.
func (r *recentIDs) add(id string) bool {
	if _, ok := r.set[id]; ok {
		return false
	}
	if old := r.ring[r.next]; old != "" {
		delete(r.set, old)
	}
	r.ring[r.next] = id
	r.next = (r.next + 1) % len(r.ring)
	r.set[id] = struct{}{}
	return true
}

// follow runs step at every doorbell and every poll until it reports done:
// the loop of the streams that read the store themselves and use NATS only
// to wake up. It checks the credential again every recheck interval, and
// ends on shutdown (UNAVAILABLE, to reconnect elsewhere) or when the client
// goes away. While the store is unavailable, neither the re-check nor the
// step can run: the stream rides out a short outage (outageHold) and reads
// again at the next doorbell or poll, so that a Redis restart or failover
// does not send every phone to reconnect at once.
func follow(ctx context.Context, c *core.Service, draining <-chan struct{}, presented core.Presented, recheckEvery, grace, pollEvery time.Duration,
	bell <-chan sar.BusEvent, step func() (done bool, err error)) error {
	poll := time.NewTicker(pollEvery)
	defer poll.Stop()
	recheck := time.NewTicker(recheckEvery)
	defer recheck.Stop()
	hold := newOutageHold(ctx, grace)
	for {
		select {
		case <-draining:
			return errDraining
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-recheck.C:
			p, err := c.Reauthenticate(ctx, presented)
			switch {
			case err == nil:
				hold.ok(p)
			case !hold.through(err):
				return err
			}
			continue
		case _, ok := <-bell:
			if !ok {
				bell = nil // NATS gone: the poll goes on
				continue
			}
		case <-poll.C:
		}
		done, err := step()
		if err != nil {
			if ctx.Err() != nil { // the client went away mid-read: not a storage failure
				return status.FromContextError(ctx.Err()).Err()
			}
			if hold.through(err) {
				continue // the store is unavailable: read again at the next doorbell or poll
			}
			return err
		}
		hold.ok(nil)
		if done {
			return nil
		}
	}
}
