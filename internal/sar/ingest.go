package sar

import sarv1 "github.com/mountain-sar/sar/gen/sar/v1"

// IngestFix is one sequence of a batch: a valid fix to store, or (Fix nil)
// a refused one that only consumes its sequence number.
type IngestFix struct {
	Sequence uint64
	Fix      *sarv1.LocationFix // Cell already set; nil when refused
	TimeMs   int64
	// Pb is Fix's wire encoding, made once for the track and the positions
	// event; empty: the store encodes Fix itself.
	Pb []byte
}

// IngestArgs is one device's batch for the ingest script.
type IngestArgs struct {
	IncidentID     string
	ParticipantID  string
	DeviceID       string
	SkippedThrough uint64      // sequences the device gave up on (below the batch's)
	Fixes          []IngestFix // increasing sequence, each once
	// Want asks the same atomic run for what the step after the batch
	// needs, so that it costs no read of its own.
	Want IngestWant
}

// IngestWant is what IngestResult.Search holds.
type IngestWant int

const (
	WantNothing IngestWant = iota
	// WantTracker (a rescuer): the grid's meta, the participant's tracker
	// state and searcher type, when the incident has a search plan and
	// fixes were stored.
	WantTracker
	// WantGrid (a caller): the grid's meta, when the incident has a search
	// plan and the last position changed.
	WantGrid
)

// IngestResult is what the script did. A sequence s of the batch was a
// duplicate if s <= AckedBefore, was processed (stored or refused for good)
// if AckedBefore < s <= AckedThrough, and follows a gap (not processed) if
// s > AckedThrough.
type IngestResult struct {
	AckedBefore  uint64 // the device's acked-through sequence before the batch
	AckedThrough uint64 // after it
	Stored       int
	LastChanged  bool
	Last         *sarv1.LocationFix // last known position after the batch, if any
	HasGrid      bool               // the incident has a search plan
	// Search is what IngestArgs.Want asked for, read atomically with the
	// batch; nil when the condition of Want did not hold. Its HasGrid is
	// true.
	Search *Searcher
}

// CellVisit is one cell's visit count and newest fix time.
type CellVisit struct {
	Cell       string
	Fixes      int64
	LastTimeMs int64
}
