package server

import (
	"context"
	"log/slog"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/core"
)

type taskService struct {
	sarv1.UnimplementedTaskServiceServer
	core     *core.Service
	log      *slog.Logger
	draining chan struct{}
	recheck  time.Duration
	grace    time.Duration // how long a task stream rides out a store outage
}

func (s *taskService) CreateTask(ctx context.Context, req *sarv1.CreateTaskRequest) (*sarv1.CreateTaskResponse, error) {
	t, err := s.core.CreateTask(ctx, req)
	if err != nil {
		return nil, err
	}
	return &sarv1.CreateTaskResponse{Task: t}, nil
}

func (s *taskService) GetTask(ctx context.Context, req *sarv1.GetTaskRequest) (*sarv1.GetTaskResponse, error) {
	t, err := s.core.GetTask(ctx, req)
	if err != nil {
		return nil, err
	}
	return &sarv1.GetTaskResponse{Task: t}, nil
}

func (s *taskService) ListTasks(ctx context.Context, req *sarv1.ListTasksRequest) (*sarv1.ListTasksResponse, error) {
	ts, err := s.core.ListTasks(ctx, req)
	if err != nil {
		return nil, err
	}
	return &sarv1.ListTasksResponse{Tasks: ts}, nil
}

func (s *taskService) AcceptTask(ctx context.Context, req *sarv1.AcceptTaskRequest) (*sarv1.AcceptTaskResponse, error) {
	t, err := s.core.AcceptTask(ctx, req)
	if err != nil {
		return nil, err
	}
	return &sarv1.AcceptTaskResponse{Task: t}, nil
}

func (s *taskService) DeclineTask(ctx context.Context, req *sarv1.DeclineTaskRequest) (*sarv1.DeclineTaskResponse, error) {
	t, err := s.core.DeclineTask(ctx, req)
	if err != nil {
		return nil, err
	}
	return &sarv1.DeclineTaskResponse{Task: t}, nil
}

func (s *taskService) ReportTaskProgress(ctx context.Context, req *sarv1.ReportTaskProgressRequest) (*sarv1.ReportTaskProgressResponse, error) {
	t, err := s.core.ReportTaskProgress(ctx, req)
	if err != nil {
		return nil, err
	}
	return &sarv1.ReportTaskProgressResponse{Task: t}, nil
}

func (s *taskService) CompleteTask(ctx context.Context, req *sarv1.CompleteTaskRequest) (*sarv1.CompleteTaskResponse, error) {
	t, err := s.core.CompleteTask(ctx, req)
	if err != nil {
		return nil, err
	}
	return &sarv1.CompleteTaskResponse{Task: t}, nil
}

func (s *taskService) CancelTask(ctx context.Context, req *sarv1.CancelTaskRequest) (*sarv1.CancelTaskResponse, error) {
	t, err := s.core.CancelTask(ctx, req)
	if err != nil {
		return nil, err
	}
	return &sarv1.CancelTaskResponse{Task: t}, nil
}

func (s *taskService) SetDispatchSettings(ctx context.Context, req *sarv1.SetDispatchSettingsRequest) (*sarv1.SetDispatchSettingsResponse, error) {
	inc, err := s.core.SetDispatchSettings(ctx, req)
	if err != nil {
		return nil, err
	}
	return &sarv1.SetDispatchSettingsResponse{Incident: inc}, nil
}

func (s *taskService) ReassignTask(ctx context.Context, req *sarv1.ReassignTaskRequest) (*sarv1.ReassignTaskResponse, error) {
	t, err := s.core.ReassignTask(ctx, req)
	if err != nil {
		return nil, err
	}
	return &sarv1.ReassignTaskResponse{Task: t}, nil
}

// taskFeedPoll is how often a task stream reads its feed without a
// doorbell: a NATS outage (or a lost notification) delays a task by this
// much at most, never loses it.
const taskFeedPoll = 5 * time.Second

// StreamTasks sends a team member's device its team's task changes and the
// notices to all teams, from the device's cursor: first the backlog (a
// phone back after hours offline gets everything it missed, once, in
// order), then a caught_up marker, then live items. The incident's task
// feed in Redis is the record; NATS only rings the doorbell (any replica's
// write wakes every replica's streams), and the feed is read again every
// few seconds regardless. The credential is checked again as for watches;
// the stream ends after the items of a closed incident.
func (s *taskService) StreamTasks(req *sarv1.StreamTasksRequest, stream sarv1.TaskService_StreamTasksServer) error {
	ctx := stream.Context()
	presented := presentedFromContext(ctx)
	// Authorize and check the cursor before subscribing to anything.
	if err := s.core.CheckTaskCursor(ctx, req.GetIncidentId(), req.GetCursor()); err != nil {
		return err
	}
	// Subscribe before the first read: nothing written in between is missed.
	bell, _, stop, err := s.core.WatchTasks(ctx, req.GetIncidentId())
	if err != nil {
		bell = nil // NATS down: the poll still delivers
		s.log.Warn("task stream without doorbell", "incident", req.GetIncidentId(), "err", err)
	} else {
		defer stop()
	}
	cursor := req.GetCursor()
	// The stream ends once the closing notice was sent; or, should a close
	// have been cut short before its notice, when a closed incident's feed
	// has not moved for two polls.
	moved := time.Now()
	send := func() (done bool, err error) {
		entries, next, closed, err := s.core.TaskFeed(ctx, req.GetIncidentId(), cursor)
		if err != nil {
			return false, err
		}
		for _, e := range entries {
			item := &sarv1.StreamTasksResponse{Cursor: e.ID, Time: timestamppb.New(time.UnixMilli(e.TimeMs)), Task: e.Task, Notice: e.Notice,
				Incident: e.Incident}
			if err := stream.Send(item); err != nil {
				return false, err
			}
			if e.Notice == sarv1.TaskNoticeKind_TASK_NOTICE_KIND_INCIDENT_CLOSED {
				done = true
			}
		}
		if next != cursor {
			moved = time.Now()
		}
		cursor = next
		return done || (closed && time.Since(moved) > 2*taskFeedPoll), nil
	}
	closed, err := send()
	if err != nil {
		return err
	}
	if err := stream.Send(&sarv1.StreamTasksResponse{Cursor: cursor, CaughtUp: true}); err != nil {
		return err
	}
	if closed {
		return nil
	}
	return follow(ctx, s.core, s.draining, presented, s.recheck, s.grace, taskFeedPoll, bell, send) // ends once the incident closed
}
