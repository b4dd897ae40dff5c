package core

import (
	"context"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/sar"
)

// The domain owns the interfaces of what it needs from the outside world.
// internal/store implements the stores on Redis and dispatch implements the
// publisher and the watcher on NATS; unit tests of the rules use the
// hand-written fakes of fakes_test.go. The data types they exchange live
// in internal/sar, which both sides import.

// IncidentStore keeps incidents, their participants and their outbox of
// durable events.
type IncidentStore interface {
	// CreateIncident stores a new incident with its event, idempotently per
	// (jurisdiction, requestID): a repeat returns the stored incident and
	// created=false.
	CreateIncident(ctx context.Context, inc *sarv1.Incident, requestID string, ev *sarv1.Event) (stored *sarv1.Incident, created bool, err error)
	// GetIncident returns an incident and its version, or a NotFound error.
	GetIncident(ctx context.Context, id string) (*sarv1.Incident, int64, error)
	// UpdateIncident applies change by compare-and-set (retrying on
	// conflict) and writes the event change returns to the outbox.
	UpdateIncident(ctx context.Context, id string, change func(*sarv1.Incident) (*sarv1.Event, error)) (*sarv1.Incident, error)
	// ListIncidents pages through an index, newest first.
	ListIncidents(ctx context.Context, ix sar.IncidentIndex, before string, limit int) ([]*sarv1.Incident, string, error)
	// AddParticipant stores a participant made without a device (a caller).
	AddParticipant(ctx context.Context, p *sarv1.Participant, ev *sarv1.Event) error
	// Participant returns one participant, or a NotFound error.
	Participant(ctx context.Context, incidentID, participantID string) (*sarv1.Participant, error)
	// Participants returns every participant of an incident.
	Participants(ctx context.Context, incidentID string) ([]*sarv1.Participant, error)
	// PutEvent writes one durable event to the incident's outbox.
	PutEvent(ctx context.Context, ev *sarv1.Event) error
}

// FixStore keeps devices, their sequence numbers and the location fixes.
type FixStore interface {
	// Join binds a device to a participant of an open incident,
	// idempotently; sar.ErrDeviceTaken when the device is bound elsewhere.
	Join(ctx context.Context, a sar.JoinArgs) (sar.JoinResult, error)
	// DeviceBinding returns the participant and credential a device is
	// bound to ("" when unbound).
	DeviceBinding(ctx context.Context, incidentID, deviceID string) (participantID, credentialID string, err error)
	// DeviceOwner returns the participant bound to a device and the
	// participant of a credential, in one round trip.
	DeviceOwner(ctx context.Context, incidentID, deviceID, credentialID string) (devicePart, credPart string, err error)
	// Ingest stores one device's batch atomically, exactly once per
	// sequence number.
	Ingest(ctx context.Context, a sar.IngestArgs) (sar.IngestResult, error)
	// Track returns a participant's breadcrumbs since a time, oldest first.
	Track(ctx context.Context, incidentID, participantID string, sinceMs int64, limit int) ([]*sarv1.LocationFix, error)
	// CellVisits returns the visited cells of an incident.
	CellVisits(ctx context.Context, incidentID string) ([]sar.CellVisit, error)
}

// GridStore keeps an incident's search grid and its segments.
type GridStore interface {
	// GridMeta returns a grid's meta, or NotFound without a search plan.
	GridMeta(ctx context.Context, id string) (sar.GridMeta, error)
	// LoadGrid returns the whole grid (since 0) or the cells changed since
	// a version, as one consistent snapshot.
	LoadGrid(ctx context.Context, id string, since int64) (*sar.Grid, error)
	// PutGrid writes a seed or rebase by compare-and-set with its event:
	// sar.ErrGridConflict or *sar.VersionMovedError when it lost.
	PutGrid(ctx context.Context, w sar.GridWrite) error
	// AddCoverage adds one searcher's batch of coverage.
	AddCoverage(ctx context.Context, a sar.CoverageArgs) (sar.CoverageResult, error)
	// FlushGridEvent claims a due trailing grid event.
	FlushGridEvent(ctx context.Context, id string, minDelta float64, everyMs, nowMs int64) (sar.TrailingEvent, error)
	// UpdateGridSummary replaces the grid's settings by compare-and-set.
	UpdateGridSummary(ctx context.Context, id string, expectWriteVersion int64, sm *sarv1.SearchGridSummary) error
	// Segmentation returns the incident's kept segments (nil if none).
	Segmentation(ctx context.Context, id string) (*sar.Segmentation, error)
	// PutSegmentation replaces the segments by compare-and-set on
	// seg.Version (sar.ErrSegmentsConflict) and returns the new version.
	PutSegmentation(ctx context.Context, id string, seg *sar.Segmentation, ev *sarv1.Event) (int64, error)
}

// WorkStore keeps the search work queued with acknowledged batches (see
// searchwork.go and internal/store/searchwork.go).
type WorkStore interface {
	// SearchWork returns an incident's queue entries, oldest first.
	SearchWork(ctx context.Context, incidentID string) ([]sar.WorkItem, error)
	// StaleWork returns the open incidents with entries older than beforeMs.
	StaleWork(ctx context.Context, beforeMs int64) ([]string, error)
	// CoverWork reads a rescuer's entry and what crediting its track since
	// the checkpoint needs (at most limit fixes), in one round trip.
	CoverWork(ctx context.Context, incidentID, participantID string, limit int) (sar.CoverWork, error)
	// FollowWork reads a caller's entry and last known position.
	FollowWork(ctx context.Context, incidentID, participantID string) (sar.FollowWork, error)
	// WorkDone ends an entry if its generation is still gen.
	WorkDone(ctx context.Context, incidentID, member, gen string, nowMs int64) (bool, error)
}

// AgencyStore keeps agencies and their teams, with an index of where the
// teams are.
type AgencyStore interface {
	CreateAgency(ctx context.Context, a *sarv1.Agency) error
	Agency(ctx context.Context, id string) (*sarv1.Agency, error)
	Agencies(ctx context.Context) ([]*sarv1.Agency, error)
	CreateTeam(ctx context.Context, t *sarv1.Team) error
	Team(ctx context.Context, agencyID, teamID string) (*sarv1.Team, error)
	Teams(ctx context.Context, agencyID string) ([]*sarv1.Team, error)
	TeamExists(ctx context.Context, agencyID, teamID string) (bool, error)
	// UpdateTeam applies change by compare-and-set (change may run more
	// than once) and re-indexes the team's place.
	UpdateTeam(ctx context.Context, agencyID, teamID string, change func(*sarv1.Team) error) (*sarv1.Team, error)
	// TeamsIn returns the teams whose position (else home) lies in the
	// given index cells (geo.IndexResolution).
	TeamsIn(ctx context.Context, cells []uint64) ([]*sarv1.Team, error)
}

// CredentialStore keeps credentials by id, with the hash of their secret.
type CredentialStore interface {
	PutCredential(ctx context.Context, hash string, p *sarv1.Principal) error
	Credential(ctx context.Context, id string) (hash string, p *sarv1.Principal, err error)
	DeleteCredential(ctx context.Context, id string) error
}

// TaskStore keeps an incident's tasks, their answer deadlines and the task
// feed that teams' devices read.
type TaskStore interface {
	// PutTask writes a task change (compare-and-set on its version) with
	// its event, feed entry, deadline and optionally the segments.
	PutTask(ctx context.Context, w sar.TaskWrite) (sar.TaskWriteResult, error)
	// Task returns one task with its version, or a NotFound error.
	Task(ctx context.Context, incidentID, taskID string) (*sarv1.Task, error)
	// Tasks returns every task of an incident.
	Tasks(ctx context.Context, incidentID string) ([]*sarv1.Task, error)
	// TaskFeed returns up to count feed entries after a cursor.
	TaskFeed(ctx context.Context, incidentID, after string, count int) ([]sar.FeedEntry, error)
	// PutNotice appends a notice to every team (subject found, incident
	// closed) to the task feed with its events.
	PutNotice(ctx context.Context, kind sarv1.TaskNoticeKind, inc *sarv1.Incident, evs ...*sarv1.Event) (string, error)
	// NoticeSent reports whether a notice of kind was written.
	NoticeSent(ctx context.Context, incidentID string, kind sarv1.TaskNoticeKind) (bool, error)
	// TaskByRequest returns the task a creation with requestID made, or nil.
	TaskByRequest(ctx context.Context, incidentID, requestID string) (*sarv1.Task, error)
	// FeedBounds returns the task feed's first and last entry ids and the
	// newest trimmed one ("" when none).
	FeedBounds(ctx context.Context, incidentID string) (first, last, trimmed string, err error)
	// DueTasks returns the tasks of open incidents whose answer deadline
	// has passed, by incident.
	DueTasks(ctx context.Context, nowMs int64) (map[string][]string, error)
}

// Store is everything the domain keeps.
type Store interface {
	TaskStore
	IncidentStore
	FixStore
	GridStore
	WorkStore
	AgencyStore
	CredentialStore
}

// Publisher announces events. Durable events were written to their
// incident's outbox with the state change before Deliver is called:
// Deliver publishes them and clears what was acknowledged, and never fails
// the request (what it could not publish stays for the relay). Live events
// (positions) are lossy by design.
type Publisher interface {
	Deliver(ctx context.Context, evs ...*sarv1.Event)
	PublishLive(ev *sarv1.Event) error
}

// Watcher follows an incident's events as they are published.
type Watcher interface {
	// Watch subscribes to the incident's events until stop is called or
	// ctx ends; dropped counts live events lost to a slow reader.
	Watch(ctx context.Context, incidentID string) (events <-chan sar.BusEvent, dropped func() int, stop func(), err error)
	// WatchTasks follows only the incident's task changes and notices:
	// all of them (agency ""), or one team's and its agency's notices.
	WatchTasks(ctx context.Context, incidentID, agency, team string) (events <-chan sar.BusEvent, dropped func() int, stop func(), err error)
}

// Bus is the message bus: what is published and how it is followed.
type Bus interface {
	Publisher
	Watcher
}
