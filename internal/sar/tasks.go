package sar

import (
	"strconv"
	"strings"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
)

// TaskWrite is one change of a task, written atomically with what changes
// with it. Version 0 creates the task.
type TaskWrite struct {
	IncidentID    string
	Task          *sarv1.Task // the task after the change; its Version is set by the store
	ExpectVersion int64       // the version read (0: create)
	RequestID     string      // create only: idempotency key ("" if none)
	Event         *sarv1.Event
	// More events written to the outbox with the change (a notice's
	// copies for each agency).
	MoreEvents []*sarv1.Event
	// FeedTeam is the team ref ("<agency>/<team>") of the feed entry,
	// FeedAll for a notice to every team.
	FeedTeam string
	// FeedAlsoTeam, if set, gets an entry too: the team a task was taken
	// from (reassigned or escalated), so its devices drop it.
	FeedAlsoTeam string
	FeedNotice   sarv1.TaskNoticeKind // unspecified for a task change
	DeadlineMs   int64                // answer deadline to keep (0: none)
	// Segments, when set, is written with the task by compare-and-set on
	// its Version (ErrSegmentsConflict when it lost).
	Segments *Segmentation
	// AllowClosed lets the write happen on a closed incident (the
	// cancellations that closing makes).
	AllowClosed bool
}

// FeedAll is the FeedTeam of an entry for every team.
const FeedAll = "*"

// TaskWriteResult is what a task write did.
type TaskWriteResult struct {
	Version int64
	// Duplicate: the request id was used before; Task is the task made
	// then (and nothing was written).
	Duplicate bool
	Task      *sarv1.Task
	FeedID    string // the feed entry's id (its cursor)
}

// FeedEntry is one entry of an incident's task feed.
type FeedEntry struct {
	ID       string // cursor: a Redis stream id
	TimeMs   int64
	Team     string // "<agency>/<team>" or FeedAll
	Notice   sarv1.TaskNoticeKind
	Task     *sarv1.Task     // a task change, or a message's task
	Incident *sarv1.Incident // with a subject found or incident closed notice
}

// FeedCursor is a task feed cursor: a Redis stream id "<ms>-<seq>".
type FeedCursor [2]uint64

// ParseFeedCursor parses a feed cursor.
func ParseFeedCursor(s string) (FeedCursor, bool) {
	ms, seq, ok := strings.Cut(s, "-")
	if !ok {
		return FeedCursor{}, false
	}
	a, err1 := strconv.ParseUint(ms, 10, 64)
	b, err2 := strconv.ParseUint(seq, 10, 64)
	return FeedCursor{a, b}, err1 == nil && err2 == nil
}

// Less reports whether c comes before d in the feed.
func (c FeedCursor) Less(d FeedCursor) bool { return c[0] < d[0] || (c[0] == d[0] && c[1] < d[1]) }

// ErrTaskConflict says the task changed since it was read.
var ErrTaskConflict = Errorf(KindAborted, "task changed concurrently; retry")
