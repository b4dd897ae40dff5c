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
	// Queue asks the same atomic run to queue the search work the batch
	// makes (see WorkKind), so that it is done after the acknowledgement
	// and survives the process.
	Queue WorkKind
	NowMs int64 // the queue entry's time
}

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
	Queued       bool               // search work was queued
}

// CellVisit is one cell's visit count and newest fix time.
type CellVisit struct {
	Cell       string
	Fixes      int64
	LastTimeMs int64
}
