package server

import (
	"context"
	"errors"
	"io"

	"google.golang.org/genproto/googleapis/rpc/errdetails"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
)

// errDraining ends long-lived streams when the server shuts down, so that
// clients reconnect (to another replica) at once.
var errDraining = status.Error(codes.Unavailable, "server is shutting down; reconnect")

// StreamFixes answers each batch with one acknowledgement, in order. It
// reads the next batch only after the previous one was stored and
// acknowledged; on shutdown it finishes the batch in hand and ends the
// stream with UNAVAILABLE (a batch not yet acknowledged is sent again by
// the device, and stored once).
func (s *locationService) StreamFixes(stream sarv1.LocationService_StreamFixesServer) error {
	ctx := stream.Context()
	token := tokenFromContext(ctx)
	type recv struct {
		req *sarv1.StreamFixesRequest
		err error
	}
	in := make(chan recv)
	go func() {
		for {
			req, err := stream.Recv()
			select {
			case in <- recv{req, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	for {
		select {
		case <-s.draining:
			return errDraining
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case r := <-in:
			if errors.Is(r.err, io.EOF) {
				return nil
			}
			if r.err != nil {
				return r.err
			}
			// Re-check the credential for every batch (cached briefly), so
			// that a revoked device stops within the cache time.
			p, err := s.core.Authenticate(ctx, token)
			if err != nil {
				return toStatus(s.log, "StreamFixes", err)
			}
			b := r.req.GetBatch()
			ack, err := s.core.Ingest(ctx, p, b)
			if err != nil {
				ack = &sarv1.FixAck{IncidentId: b.GetIncidentId(), DeviceId: b.GetDeviceId(), BatchId: b.GetBatchId(),
					Problem: problemOf(toStatus(s.log, "StreamFixes", err))}
			}
			if err := stream.Send(&sarv1.StreamFixesResponse{Ack: ack}); err != nil {
				return err
			}
		}
	}
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
// published by any replica.
func (s *incidentService) WatchIncident(req *sarv1.WatchIncidentRequest, stream sarv1.IncidentService_WatchIncidentServer) error {
	ctx := stream.Context()
	inc, err := s.core.StartWatch(ctx, req.GetIncidentId())
	if err != nil {
		return err
	}
	// Subscribe before reading the snapshot: nothing published in between
	// is missed (some may arrive twice; events carry ids and sequences).
	events, _, stop, err := s.core.Bus().Watch(ctx, inc.GetId())
	if err != nil {
		return status.Error(codes.Unavailable, "event bus unavailable")
	}
	defer stop()
	snap, err := s.core.Snapshot(ctx, inc)
	if err != nil {
		return err
	}
	if err := stream.Send(&sarv1.WatchIncidentResponse{Kind: &sarv1.WatchIncidentResponse_Snapshot{Snapshot: snap}}); err != nil {
		return err
	}
	for {
		select {
		case <-s.draining:
			return errDraining
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case ev, ok := <-events:
			if !ok {
				return status.FromContextError(context.Cause(ctx)).Err()
			}
			if err := stream.Send(&sarv1.WatchIncidentResponse{Kind: &sarv1.WatchIncidentResponse_Event{Event: ev}}); err != nil {
				return err
			}
		}
	}
}
