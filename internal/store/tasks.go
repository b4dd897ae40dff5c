package store

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/sar"
)

// An incident's tasks: the task records (tasks: id → Task pb), their
// versions (tver: id → version, the compare-and-set), the idempotency keys
// of creations (treq: request id → task id), the answer deadlines (tdl:
// zset of task ids by deadline ms) and the task feed (feed: a stream of
// every task change and notice, in order, that devices read from their
// cursor). All carry the incident's hash tag and are written by one
// script, put_task.lua.

var (
	putTaskScript   = script("put_task")
	putNoticeScript = script("put_notice")
)

// feedMax is about how many entries an incident's task feed keeps.
const feedMax = 100_000

// PutTask writes a task change with its event, feed entry, deadline and
// (optionally) segments, atomically.
func (s *Store) PutTask(ctx context.Context, w sar.TaskWrite) (sar.TaskWriteResult, error) {
	id := w.IncidentID
	if _, err := s.rdb.SAdd(ctx, kIdxOutbox, id).Result(); err != nil {
		return sar.TaskWriteResult{}, fail(err, "incident")
	}
	segVer, segJSON := "", ""
	if w.Segments != nil {
		js, err := json.Marshal(w.Segments)
		if err != nil {
			return sar.TaskWriteResult{}, sar.Wrap(sar.KindInternal, err, "segments")
		}
		segVer, segJSON = strconv.FormatInt(w.Segments.Version, 10), string(js)
	}
	t := w.Task
	t.Version = w.ExpectVersion + 1
	feedKind := "task"
	if w.FeedNotice != sarv1.TaskNoticeKind_TASK_NOTICE_KIND_UNSPECIFIED {
		feedKind = w.FeedNotice.String()
	}
	allow := ""
	if w.AllowClosed {
		allow = "1"
	}
	keys := []string{kInc(id), kTasks(id), kTaskVer(id), kTaskReq(id), kOutbox(id), kTaskFeed(id), kTaskDeadlines(id), kSegs(id)}
	args := []any{t.GetId(), w.ExpectVersion, marshal(t), w.RequestID,
		w.Event.GetId(), marshal(w.Event), w.FeedTeam, feedKind, w.DeadlineMs, segVer, segJSON, allow, feedMax, w.FeedAlsoTeam, int64(s.retention / time.Second)}
	for _, ev := range w.MoreEvents {
		args = append(args, ev.GetId(), marshal(ev))
	}
	res, err := putTaskScript.Run(ctx, s.rdb, keys, args...).Result()
	switch scriptCode(err) {
	case codeConflict:
		return sar.TaskWriteResult{}, sar.ErrTaskConflict
	case codeSegConflict:
		return sar.TaskWriteResult{}, sar.ErrSegmentsConflict
	case codeNotFound:
		if w.ExpectVersion != 0 {
			return sar.TaskWriteResult{}, sar.NotFound("task")
		}
	}
	if err != nil {
		return sar.TaskWriteResult{}, fail(err, "incident")
	}
	r := newReply("put task", res, 3)
	out := sar.TaskWriteResult{}
	switch r.word(0, "ok", "dup") {
	case "ok":
		out.Version, out.FeedID, out.Task = r.int(1), r.str(2), t
	case "dup":
		prev := &sarv1.Task{}
		if err := unmarshal(r.str(1), prev); err != nil {
			return sar.TaskWriteResult{}, err
		}
		out.Duplicate, out.Task, out.Version = true, prev, r.decimal(2)
		prev.Version = out.Version
	}
	if r.err != nil {
		return sar.TaskWriteResult{}, r.err
	}
	return out, nil
}

// PutNotice appends a notice to every team (kind: subject found or
// incident closed, with the incident after the change) to the task feed,
// with its events in the outbox, and returns the entry's id.
func (s *Store) PutNotice(ctx context.Context, kind sarv1.TaskNoticeKind, inc *sarv1.Incident, evs ...*sarv1.Event) (string, error) {
	id := inc.GetId()
	if _, err := s.rdb.SAdd(ctx, kIdxOutbox, id).Result(); err != nil {
		return "", fail(err, "incident")
	}
	args := []any{kind.String(), marshal(inc), feedMax, int64(s.retention / time.Second)}
	for _, ev := range evs {
		args = append(args, ev.GetId(), marshal(ev))
	}
	res, err := putNoticeScript.Run(ctx, s.rdb, []string{kInc(id), kTaskFeed(id), kOutbox(id)}, args...).Result()
	if err != nil {
		return "", fail(err, "incident")
	}
	fid, ok := res.(string)
	if !ok {
		return "", replyError("put notice", "reply is %s, want a stream id", describe(res))
	}
	return fid, nil
}

// NoticeSent reports whether a notice of kind was written for an incident.
func (s *Store) NoticeSent(ctx context.Context, incidentID string, kind sarv1.TaskNoticeKind) (bool, error) {
	ok, err := s.rdb.HExists(ctx, kInc(incidentID), "notice:"+kind.String()).Result()
	return ok, fail(err, "incident")
}

// TaskByRequest returns the task a creation with requestID made, or nil.
func (s *Store) TaskByRequest(ctx context.Context, incidentID, requestID string) (*sarv1.Task, error) {
	id, err := s.rdb.HGet(ctx, kTaskReq(incidentID), requestID).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fail(err, "task")
	}
	return s.Task(ctx, incidentID, id)
}

// FeedBounds returns the ids of an incident's task feed's first and last
// entries and of the newest entry trimmed away ("" when none).
func (s *Store) FeedBounds(ctx context.Context, incidentID string) (first, last, trimmed string, err error) {
	info, err := s.rdb.XInfoStream(ctx, kTaskFeed(incidentID)).Result()
	if err != nil {
		if strings.Contains(err.Error(), "no such key") {
			return "", "", "", nil
		}
		return "", "", "", fail(err, "task feed")
	}
	if info.MaxDeletedEntryID != "0-0" {
		trimmed = info.MaxDeletedEntryID
	}
	return info.FirstEntry.ID, info.LastGeneratedID, trimmed, nil
}

// Task returns one task with its version.
func (s *Store) Task(ctx context.Context, incidentID, taskID string) (*sarv1.Task, error) {
	if !sar.ValidID(taskID) {
		return nil, sar.NotFound("task")
	}
	var pb, ver *redis.StringCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		pb = p.HGet(ctx, kTasks(incidentID), taskID)
		ver = p.HGet(ctx, kTaskVer(incidentID), taskID)
		return nil
	})
	if errors.Is(err, redis.Nil) {
		return nil, sar.NotFound("task")
	}
	if err != nil {
		return nil, fail(err, "task")
	}
	t := &sarv1.Task{}
	if err := unmarshal(pb.Val(), t); err != nil {
		return nil, err
	}
	if t.Version, err = parseInt(ver.Val()); err != nil {
		return nil, err
	}
	return t, nil
}

// Tasks returns every task of an incident, in no order.
func (s *Store) Tasks(ctx context.Context, incidentID string) ([]*sarv1.Task, error) {
	var pbs, vers *redis.MapStringStringCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		pbs = p.HGetAll(ctx, kTasks(incidentID))
		vers = p.HGetAll(ctx, kTaskVer(incidentID))
		return nil
	})
	if err != nil {
		return nil, fail(err, "task")
	}
	out := make([]*sarv1.Task, 0, len(pbs.Val()))
	for id, pb := range pbs.Val() {
		t := &sarv1.Task{}
		if err := unmarshal(pb, t); err != nil {
			return nil, err
		}
		if t.Version, err = parseInt(vers.Val()[id]); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// TaskFeed returns up to count entries of an incident's task feed after
// the cursor ("" for the start), oldest first.
func (s *Store) TaskFeed(ctx context.Context, incidentID, after string, count int) ([]sar.FeedEntry, error) {
	start := "-"
	if after != "" {
		if _, ok := sar.ParseFeedCursor(after); !ok {
			return nil, sar.Invalid("invalid cursor", sar.Field("cursor", "INVALID", "cursor must be one the feed gave"))
		}
		start = "(" + after
	}
	msgs, err := s.rdb.XRangeN(ctx, kTaskFeed(incidentID), start, "+", int64(count)).Result()
	if err != nil {
		return nil, fail(err, "task feed")
	}
	out := make([]sar.FeedEntry, 0, len(msgs))
	for _, m := range msgs {
		e := sar.FeedEntry{ID: m.ID}
		if c, ok := sar.ParseFeedCursor(m.ID); ok {
			e.TimeMs = int64(c[0]) // a stream id starts with its write time in ms
		}
		e.Team, _ = m.Values["team"].(string)
		if k, _ := m.Values["kind"].(string); k != "task" {
			e.Notice = sarv1.TaskNoticeKind(sarv1.TaskNoticeKind_value[k])
		}
		pb, _ := m.Values["pb"].(string)
		var msg proto.Message
		switch e.Notice {
		case sarv1.TaskNoticeKind_TASK_NOTICE_KIND_SUBJECT_FOUND, sarv1.TaskNoticeKind_TASK_NOTICE_KIND_INCIDENT_CLOSED:
			e.Incident = &sarv1.Incident{}
			msg = e.Incident
		default:
			e.Task = &sarv1.Task{}
			msg = e.Task
		}
		if err := unmarshal(pb, msg); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// DueTasks returns, for every open incident, the ids of its tasks whose
// answer deadline is at or before nowMs: two round trips (the open
// incidents, then one pipelined read per incident). Only open incidents
// can have offers waiting: closing cancels them.
func (s *Store) DueTasks(ctx context.Context, nowMs int64) (map[string][]string, error) {
	open, err := s.rdb.SMembers(ctx, kIdxOpen).Result()
	if err != nil {
		return nil, fail(err, "task")
	}
	cmds := make([]*redis.StringSliceCmd, len(open))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range open {
			cmds[i] = p.ZRangeByScore(ctx, kTaskDeadlines(id), &redis.ZRangeBy{Min: "-inf", Max: strconv.FormatInt(nowMs, 10), Count: 1000})
		}
		return nil
	})
	if err != nil {
		return nil, fail(err, "task")
	}
	out := map[string][]string{}
	for i, c := range cmds {
		if ids := c.Val(); len(ids) > 0 {
			out[open[i]] = ids
		}
	}
	return out, nil
}
