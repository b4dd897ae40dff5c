package sar

import (
	"strconv"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
)

// GridMeta is the grid-wide part of a stored grid.
type GridMeta struct {
	Summary     *sarv1.SearchGridSummary // static fields only
	Version     int64
	SeedVersion int64
	RestOfWorld float64 // the rest of world's weight
	Z           float64 // maintained total weight
	POSBase     float64
	// WriteVersion counts seeds and rebases (not coverage): the
	// compare-and-set of GridWrite.
	WriteVersion int64
}

// GridCellState is one stored cell.
type GridCellState struct {
	Prior    float64 // weight wᵢ (0 for a cell with coverage but outside the grid)
	Coverage float64
	Version  int64
	InGrid   bool
}

// Grid is a stored grid: whole, or only the cells changed since a version.
type Grid struct {
	Meta  GridMeta
	Cells map[uint64]GridCellState
}

// GridWrite replaces a grid's weights (seed or rebase). It was computed
// from a snapshot (LoadGrid) at version ExpectVersion. Coverage that tracks add
// after the snapshot stays valid: a weight wᵢ = POA′ᵢ·e^(cᵢ) with cᵢ from
// the snapshot, times e^(−c′ᵢ) with the newer coverage, is the Bayes update
// of the written grid by the newer search. So the write only requires that
// no other seed or rebase happened since (WriteVersion), corrects the
// maintained total for the grid cells covered since the snapshot, and
// needs the current version only to number the change exactly (the event
// in the outbox carries it).
type GridWrite struct {
	IncidentID         string
	ExpectWriteVersion int64 // the snapshot's WriteVersion (0: no grid yet)
	ExpectVersion      int64 // the version the change is numbered after (the event says ExpectVersion + 1)
	Seed               bool  // drop the old cells first; SeedVersion becomes the new version
	ResetCoverage      bool  // with Seed: forget coverage and tracker states
	ClearCoverage      bool  // forget the coverage of the written cells (the domain no longer sets it: a caller's collapse keeps coverage)
	Summary            *sarv1.SearchGridSummary
	Prior              map[uint64]float64
	RestOfWorld        float64
	POSBase            float64
	Event              *sarv1.Event // written to the outbox with the change
}

// ErrGridConflict says the grid was seeded or rebased since the snapshot:
// load it again.
var ErrGridConflict = Errorf(KindAborted, "search grid is being changed concurrently; retry")

// VersionMovedError says tracks moved the grid's version since the write
// was prepared; the write stays valid, renumber its event after Current.
type VersionMovedError struct{ Current int64 }

func (e *VersionMovedError) Error() string {
	return "store: search grid version moved to " + strconv.FormatInt(e.Current, 10)
}

// CoverageArgs is one searcher's batch of coverage.
type CoverageArgs struct {
	IncidentID    string
	ParticipantID string
	TrackerBefore string // tracker state read before (compare-and-set), "" if none
	TrackerAfter  string
	Coverage      map[uint64]float64
	EventDelta    float64 // probability of success must move this much for an event…
	EventEveryMs  int64   // …and this long after the previous one
	NowMs         int64
	// ThroughMs is the searcher's new coverage checkpoint: the time of the
	// newest fix this coverage credits.
	ThroughMs int64
	// Member and Gen end the queue entry the coverage was computed for,
	// if its generation is still Gen (Member "": leave the queue alone).
	Member, Gen string
}

// CoverageResult is the grid after a batch of coverage.
type CoverageResult struct {
	Version      int64
	Changed      int     // grid cells whose coverage changed
	POS          float64 // probability of success (from the maintained total)
	RestOfWorld  float64 // the rest of world's POA (from the maintained total)
	EventDue     bool    // the throttle says: announce it
	NoGrid       bool
	TrackerStale bool // another writer moved the tracker state: re-read and retry
	Done         bool // the queue entry ended (nothing more was queued)
}

// Searcher is what coverage needs to know about one searcher.
type Searcher struct {
	Meta    GridMeta // the grid's meta
	HasGrid bool     // false: the incident has no search plan
	Tracker string   // the stored tracker state ("" if none)
	Type    string   // the participant's searcher type ("" if not set)
}

// TrailingEvent is the answer of FlushGridEvent.
type TrailingEvent struct {
	Meta   GridMeta
	Due    bool    // announce the grid now
	WaitMs int64   // else, if positive: the change is still unannounced, ask again after this long
	POS    float64 // with Due: probability of success
	ROW    float64 // with Due: the rest of world's POA
}

// CellHex formats an H3 cell index as stored.
func CellHex(c uint64) string { return strconv.FormatUint(c, 16) }

// ParseCellHex parses an H3 cell index in hexadecimal.
func ParseCellHex(s string) (uint64, bool) {
	c, err := strconv.ParseUint(s, 16, 64)
	return c, err == nil && c != 0
}
