package server

import (
	"context"
	"time"

	"google.golang.org/protobuf/proto"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
)

func (s *incidentService) GetCallerStatus(ctx context.Context, req *sarv1.GetCallerStatusRequest) (*sarv1.GetCallerStatusResponse, error) {
	st, err := s.core.CallerStatus(ctx, req.GetIncidentId())
	if err != nil {
		return nil, err
	}
	return &sarv1.GetCallerStatusResponse{Status: st}, nil
}

// callerStatusPoll is how often a caller's status is computed again
// without a doorbell: rescuers' positions move the distance.
const callerStatusPoll = 10 * time.Second

// WatchCallerStatus sends the caller's status, then each change: task
// answers and notices ring the doorbell (NATS), positions are polled. It
// ends after the closed status.
func (s *incidentService) WatchCallerStatus(req *sarv1.WatchCallerStatusRequest, stream sarv1.IncidentService_WatchCallerStatusServer) error {
	ctx := stream.Context()
	presented := presentedFromContext(ctx)
	// Authorize before subscribing to anything.
	if _, err := s.core.CallerStatus(ctx, req.GetIncidentId()); err != nil {
		return err
	}
	bell, _, stop, err := s.core.WatchTasks(ctx, req.GetIncidentId())
	if err != nil {
		bell = nil // NATS down: the poll still updates
	} else {
		defer stop()
	}
	var last *sarv1.CallerStatus
	send := func() (closed bool, err error) {
		st, err := s.core.CallerStatus(ctx, req.GetIncidentId())
		if err != nil {
			return false, err
		}
		cmp := proto.Clone(st).(*sarv1.CallerStatus)
		cmp.UpdateTime = nil
		if last == nil || !proto.Equal(cmp, last) {
			if err := stream.Send(&sarv1.WatchCallerStatusResponse{Status: st}); err != nil {
				return false, err
			}
			last = cmp
		}
		return st.GetPhase() == sarv1.CallerPhase_CALLER_PHASE_CLOSED, nil
	}
	closed, err := send()
	if err != nil || closed {
		return err
	}
	return follow(ctx, s.core, s.draining, presented, s.recheck, s.grace, callerStatusPoll, bell, send)
}
