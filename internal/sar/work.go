package sar

import (
	"strings"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
)

// WorkKind is the kind of search work a batch of fixes makes: the work
// that follows from acknowledged fixes but that the device does not wait
// for. It is queued per incident in the store atomically with the batch
// and done by a worker after the acknowledgement; the fixes stored are its
// record, so any process can do it again after a crash.
type WorkKind byte

const (
	WorkNone WorkKind = 0
	// WorkCoverage (a rescuer's fixes, with a search plan): credit the
	// track since the searcher's checkpoint to the grid.
	WorkCoverage WorkKind = 'r'
	// WorkFollow (a caller's last known position moved): apply it to the
	// grid (see core.followCaller).
	WorkFollow WorkKind = 'c'
)

// WorkItem is one queue entry: one participant's unfinished work.
type WorkItem struct {
	Member        string // "<kind>:<participant>", the entry's key
	Kind          WorkKind
	ParticipantID string
	SinceMs       int64 // its oldest unfinished batch, or the last progress on it
}

// WorkMember is the queue entry's key of a participant's work.
func WorkMember(k WorkKind, participantID string) string {
	return string(k) + ":" + participantID
}

// ParseWorkMember splits a queue entry's key; ok false for a malformed one.
func ParseWorkMember(m string) (WorkItem, bool) {
	k, pid, ok := strings.Cut(m, ":")
	if !ok || len(k) != 1 || pid == "" || (WorkKind(k[0]) != WorkCoverage && WorkKind(k[0]) != WorkFollow) {
		return WorkItem{}, false
	}
	return WorkItem{Member: m, Kind: WorkKind(k[0]), ParticipantID: pid}, true
}

// TrackFix is one stored fix with its time as the track orders it.
type TrackFix struct {
	Fix    *sarv1.LocationFix
	TimeMs int64
}

// CoverWork is what crediting a rescuer's queued fixes needs, read at once.
type CoverWork struct {
	Queued    bool   // false: nothing is queued (done by another process)
	Gen       string // the entry's generation when read (ends it if unchanged)
	SinceMs   int64
	Searcher  Searcher // HasGrid false: closed or no plan, the work is void
	ThroughMs int64    // the checkpoint: fixes after it are not credited yet
	Fixes     []TrackFix
}

// FollowWork is what applying a caller's queued position needs.
type FollowWork struct {
	Queued  bool
	Gen     string
	SinceMs int64
	Last    *sarv1.LocationFix // the caller's last known position (nil: none)
}
