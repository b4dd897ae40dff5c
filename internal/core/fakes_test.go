package core

import (
	"context"
	"fmt"
	"sync"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/sar"
)

// Hand-written fakes of the domain's ports, for unit tests of its rules:
// each method calls the function field of the same name, and a call to a
// method whose field is nil fails the test (through the error it returns
// or the panic it raises), so a test states every dependency it relies on.
// The real Redis and NATS implementations are tested in internal/store,
// dispatch and server.

var (
	_ Store = (*fakeStore)(nil)
	_ Bus   = (*fakeBus)(nil)
)

type fakeStore struct {
	CreateIncidentFn    func(ctx context.Context, inc *sarv1.Incident, requestID string, ev *sarv1.Event) (stored *sarv1.Incident, created bool, err error)
	GetIncidentFn       func(ctx context.Context, id string) (*sarv1.Incident, int64, error)
	UpdateIncidentFn    func(ctx context.Context, id string, change func(*sarv1.Incident) (*sarv1.Event, error)) (*sarv1.Incident, error)
	ListIncidentsFn     func(ctx context.Context, ix sar.IncidentIndex, before string, limit int) ([]*sarv1.Incident, string, error)
	AddParticipantFn    func(ctx context.Context, p *sarv1.Participant, ev *sarv1.Event) error
	ParticipantFn       func(ctx context.Context, incidentID, participantID string) (*sarv1.Participant, error)
	ParticipantsFn      func(ctx context.Context, incidentID string) ([]*sarv1.Participant, error)
	PutEventFn          func(ctx context.Context, ev *sarv1.Event) error
	JoinFn              func(ctx context.Context, a sar.JoinArgs) (sar.JoinResult, error)
	DeviceBindingFn     func(ctx context.Context, incidentID, deviceID string) (participantID, credentialID string, err error)
	DeviceOwnerFn       func(ctx context.Context, incidentID, deviceID, credentialID string) (devicePart, credPart string, err error)
	IngestFn            func(ctx context.Context, a sar.IngestArgs) (sar.IngestResult, error)
	TrackFn             func(ctx context.Context, incidentID, participantID string, sinceMs int64, limit int) ([]*sarv1.LocationFix, error)
	CellVisitsFn        func(ctx context.Context, incidentID string) ([]sar.CellVisit, error)
	GridMetaFn          func(ctx context.Context, id string) (sar.GridMeta, error)
	LoadGridFn          func(ctx context.Context, id string, since int64) (*sar.Grid, error)
	PutGridFn           func(ctx context.Context, w sar.GridWrite) error
	SearchWorkFn        func(ctx context.Context, incidentID string) ([]sar.WorkItem, error)
	StaleWorkFn         func(ctx context.Context, beforeMs int64) ([]string, error)
	CoverWorkFn         func(ctx context.Context, incidentID, participantID string, limit int) (sar.CoverWork, error)
	FollowWorkFn        func(ctx context.Context, incidentID, participantID string) (sar.FollowWork, error)
	WorkDoneFn          func(ctx context.Context, incidentID, member, gen string, nowMs int64) (bool, error)
	AddCoverageFn       func(ctx context.Context, a sar.CoverageArgs) (sar.CoverageResult, error)
	FlushGridEventFn    func(ctx context.Context, id string, minDelta float64, everyMs, nowMs int64) (sar.TrailingEvent, error)
	UpdateGridSummaryFn func(ctx context.Context, id string, expectWriteVersion int64, sm *sarv1.SearchGridSummary) error
	SegmentationFn      func(ctx context.Context, id string) (*sar.Segmentation, error)
	PutSegmentationFn   func(ctx context.Context, id string, seg *sar.Segmentation, ev *sarv1.Event) (int64, error)
	CreateAgencyFn      func(ctx context.Context, a *sarv1.Agency) error
	AgencyFn            func(ctx context.Context, id string) (*sarv1.Agency, error)
	AgenciesFn          func(ctx context.Context) ([]*sarv1.Agency, error)
	CreateTeamFn        func(ctx context.Context, t *sarv1.Team) error
	TeamFn              func(ctx context.Context, agencyID, teamID string) (*sarv1.Team, error)
	TeamsFn             func(ctx context.Context, agencyID string) ([]*sarv1.Team, error)
	TeamExistsFn        func(ctx context.Context, agencyID, teamID string) (bool, error)
	UpdateTeamFn        func(ctx context.Context, agencyID, teamID string, change func(*sarv1.Team) error) (*sarv1.Team, error)
	TeamsInFn           func(ctx context.Context, cells []uint64) ([]*sarv1.Team, error)
	PutCredentialFn     func(ctx context.Context, hash string, p *sarv1.Principal) error
	CredentialFn        func(ctx context.Context, id string) (hash string, p *sarv1.Principal, err error)
	DeleteCredentialFn  func(ctx context.Context, id string) error
	PutTaskFn           func(ctx context.Context, w sar.TaskWrite) (sar.TaskWriteResult, error)
	TaskFn              func(ctx context.Context, incidentID, taskID string) (*sarv1.Task, error)
	TasksFn             func(ctx context.Context, incidentID string) ([]*sarv1.Task, error)
	TaskFeedFn          func(ctx context.Context, incidentID, after string, count int) ([]sar.FeedEntry, error)
	PutNoticeFn         func(ctx context.Context, kind sarv1.TaskNoticeKind, inc *sarv1.Incident, evs ...*sarv1.Event) (string, error)
	NoticeSentFn        func(ctx context.Context, incidentID string, kind sarv1.TaskNoticeKind) (bool, error)
	TaskByRequestFn     func(ctx context.Context, incidentID, requestID string) (*sarv1.Task, error)
	FeedBoundsFn        func(ctx context.Context, incidentID string) (first, last, trimmed string, err error)
	DueTasksFn          func(ctx context.Context, nowMs int64) (map[string][]string, error)
}

func (f *fakeStore) CreateIncident(ctx context.Context, inc *sarv1.Incident, requestID string, ev *sarv1.Event) (stored *sarv1.Incident, created bool, err error) {
	if f.CreateIncidentFn == nil {
		panic(notFaked("CreateIncident"))
	}
	return f.CreateIncidentFn(ctx, inc, requestID, ev)
}

func (f *fakeStore) GetIncident(ctx context.Context, id string) (*sarv1.Incident, int64, error) {
	if f.GetIncidentFn == nil {
		panic(notFaked("GetIncident"))
	}
	return f.GetIncidentFn(ctx, id)
}

func (f *fakeStore) UpdateIncident(ctx context.Context, id string, change func(*sarv1.Incident) (*sarv1.Event, error)) (*sarv1.Incident, error) {
	if f.UpdateIncidentFn == nil {
		panic(notFaked("UpdateIncident"))
	}
	return f.UpdateIncidentFn(ctx, id, change)
}

func (f *fakeStore) ListIncidents(ctx context.Context, ix sar.IncidentIndex, before string, limit int) ([]*sarv1.Incident, string, error) {
	if f.ListIncidentsFn == nil {
		panic(notFaked("ListIncidents"))
	}
	return f.ListIncidentsFn(ctx, ix, before, limit)
}

func (f *fakeStore) AddParticipant(ctx context.Context, p *sarv1.Participant, ev *sarv1.Event) error {
	if f.AddParticipantFn == nil {
		panic(notFaked("AddParticipant"))
	}
	return f.AddParticipantFn(ctx, p, ev)
}

func (f *fakeStore) Participant(ctx context.Context, incidentID, participantID string) (*sarv1.Participant, error) {
	if f.ParticipantFn == nil {
		panic(notFaked("Participant"))
	}
	return f.ParticipantFn(ctx, incidentID, participantID)
}

func (f *fakeStore) Participants(ctx context.Context, incidentID string) ([]*sarv1.Participant, error) {
	if f.ParticipantsFn == nil {
		panic(notFaked("Participants"))
	}
	return f.ParticipantsFn(ctx, incidentID)
}

func (f *fakeStore) PutEvent(ctx context.Context, ev *sarv1.Event) error {
	if f.PutEventFn == nil {
		panic(notFaked("PutEvent"))
	}
	return f.PutEventFn(ctx, ev)
}

func (f *fakeStore) Join(ctx context.Context, a sar.JoinArgs) (sar.JoinResult, error) {
	if f.JoinFn == nil {
		panic(notFaked("Join"))
	}
	return f.JoinFn(ctx, a)
}

func (f *fakeStore) DeviceBinding(ctx context.Context, incidentID, deviceID string) (participantID, credentialID string, err error) {
	if f.DeviceBindingFn == nil {
		panic(notFaked("DeviceBinding"))
	}
	return f.DeviceBindingFn(ctx, incidentID, deviceID)
}

func (f *fakeStore) DeviceOwner(ctx context.Context, incidentID, deviceID, credentialID string) (devicePart, credPart string, err error) {
	if f.DeviceOwnerFn == nil {
		panic(notFaked("DeviceOwner"))
	}
	return f.DeviceOwnerFn(ctx, incidentID, deviceID, credentialID)
}

func (f *fakeStore) Ingest(ctx context.Context, a sar.IngestArgs) (sar.IngestResult, error) {
	if f.IngestFn == nil {
		panic(notFaked("Ingest"))
	}
	return f.IngestFn(ctx, a)
}

func (f *fakeStore) Track(ctx context.Context, incidentID, participantID string, sinceMs int64, limit int) ([]*sarv1.LocationFix, error) {
	if f.TrackFn == nil {
		panic(notFaked("Track"))
	}
	return f.TrackFn(ctx, incidentID, participantID, sinceMs, limit)
}

func (f *fakeStore) CellVisits(ctx context.Context, incidentID string) ([]sar.CellVisit, error) {
	if f.CellVisitsFn == nil {
		panic(notFaked("CellVisits"))
	}
	return f.CellVisitsFn(ctx, incidentID)
}

func (f *fakeStore) GridMeta(ctx context.Context, id string) (sar.GridMeta, error) {
	if f.GridMetaFn == nil {
		panic(notFaked("GridMeta"))
	}
	return f.GridMetaFn(ctx, id)
}

func (f *fakeStore) LoadGrid(ctx context.Context, id string, since int64) (*sar.Grid, error) {
	if f.LoadGridFn == nil {
		panic(notFaked("LoadGrid"))
	}
	return f.LoadGridFn(ctx, id, since)
}

func (f *fakeStore) PutGrid(ctx context.Context, w sar.GridWrite) error {
	if f.PutGridFn == nil {
		panic(notFaked("PutGrid"))
	}
	return f.PutGridFn(ctx, w)
}

func (f *fakeStore) SearchWork(ctx context.Context, incidentID string) ([]sar.WorkItem, error) {
	if f.SearchWorkFn == nil {
		panic(notFaked("SearchWork"))
	}
	return f.SearchWorkFn(ctx, incidentID)
}

func (f *fakeStore) StaleWork(ctx context.Context, beforeMs int64) ([]string, error) {
	if f.StaleWorkFn == nil {
		panic(notFaked("StaleWork"))
	}
	return f.StaleWorkFn(ctx, beforeMs)
}

func (f *fakeStore) CoverWork(ctx context.Context, incidentID, participantID string, limit int) (sar.CoverWork, error) {
	if f.CoverWorkFn == nil {
		panic(notFaked("CoverWork"))
	}
	return f.CoverWorkFn(ctx, incidentID, participantID, limit)
}

func (f *fakeStore) FollowWork(ctx context.Context, incidentID, participantID string) (sar.FollowWork, error) {
	if f.FollowWorkFn == nil {
		panic(notFaked("FollowWork"))
	}
	return f.FollowWorkFn(ctx, incidentID, participantID)
}

func (f *fakeStore) WorkDone(ctx context.Context, incidentID, member, gen string, nowMs int64) (bool, error) {
	if f.WorkDoneFn == nil {
		panic(notFaked("WorkDone"))
	}
	return f.WorkDoneFn(ctx, incidentID, member, gen, nowMs)
}

func (f *fakeStore) AddCoverage(ctx context.Context, a sar.CoverageArgs) (sar.CoverageResult, error) {
	if f.AddCoverageFn == nil {
		panic(notFaked("AddCoverage"))
	}
	return f.AddCoverageFn(ctx, a)
}

func (f *fakeStore) FlushGridEvent(ctx context.Context, id string, minDelta float64, everyMs, nowMs int64) (sar.TrailingEvent, error) {
	if f.FlushGridEventFn == nil {
		panic(notFaked("FlushGridEvent"))
	}
	return f.FlushGridEventFn(ctx, id, minDelta, everyMs, nowMs)
}

func (f *fakeStore) UpdateGridSummary(ctx context.Context, id string, expectWriteVersion int64, sm *sarv1.SearchGridSummary) error {
	if f.UpdateGridSummaryFn == nil {
		panic(notFaked("UpdateGridSummary"))
	}
	return f.UpdateGridSummaryFn(ctx, id, expectWriteVersion, sm)
}

func (f *fakeStore) Segmentation(ctx context.Context, id string) (*sar.Segmentation, error) {
	if f.SegmentationFn == nil {
		panic(notFaked("Segmentation"))
	}
	return f.SegmentationFn(ctx, id)
}

func (f *fakeStore) PutSegmentation(ctx context.Context, id string, seg *sar.Segmentation, ev *sarv1.Event) (int64, error) {
	if f.PutSegmentationFn == nil {
		panic(notFaked("PutSegmentation"))
	}
	return f.PutSegmentationFn(ctx, id, seg, ev)
}

func (f *fakeStore) CreateAgency(ctx context.Context, a *sarv1.Agency) error {
	if f.CreateAgencyFn == nil {
		panic(notFaked("CreateAgency"))
	}
	return f.CreateAgencyFn(ctx, a)
}

func (f *fakeStore) Agency(ctx context.Context, id string) (*sarv1.Agency, error) {
	if f.AgencyFn == nil {
		panic(notFaked("Agency"))
	}
	return f.AgencyFn(ctx, id)
}

func (f *fakeStore) Agencies(ctx context.Context) ([]*sarv1.Agency, error) {
	if f.AgenciesFn == nil {
		panic(notFaked("Agencies"))
	}
	return f.AgenciesFn(ctx)
}

func (f *fakeStore) CreateTeam(ctx context.Context, t *sarv1.Team) error {
	if f.CreateTeamFn == nil {
		panic(notFaked("CreateTeam"))
	}
	return f.CreateTeamFn(ctx, t)
}

func (f *fakeStore) Team(ctx context.Context, agencyID, teamID string) (*sarv1.Team, error) {
	if f.TeamFn == nil {
		panic(notFaked("Team"))
	}
	return f.TeamFn(ctx, agencyID, teamID)
}

func (f *fakeStore) Teams(ctx context.Context, agencyID string) ([]*sarv1.Team, error) {
	if f.TeamsFn == nil {
		panic(notFaked("Teams"))
	}
	return f.TeamsFn(ctx, agencyID)
}

func (f *fakeStore) TeamExists(ctx context.Context, agencyID, teamID string) (bool, error) {
	if f.TeamExistsFn == nil {
		panic(notFaked("TeamExists"))
	}
	return f.TeamExistsFn(ctx, agencyID, teamID)
}

func (f *fakeStore) UpdateTeam(ctx context.Context, agencyID, teamID string, change func(*sarv1.Team) error) (*sarv1.Team, error) {
	if f.UpdateTeamFn == nil {
		panic(notFaked("UpdateTeam"))
	}
	return f.UpdateTeamFn(ctx, agencyID, teamID, change)
}

func (f *fakeStore) TeamsIn(ctx context.Context, cells []uint64) ([]*sarv1.Team, error) {
	if f.TeamsInFn == nil {
		panic(notFaked("TeamsIn"))
	}
	return f.TeamsInFn(ctx, cells)
}

func (f *fakeStore) PutCredential(ctx context.Context, hash string, p *sarv1.Principal) error {
	if f.PutCredentialFn == nil {
		panic(notFaked("PutCredential"))
	}
	return f.PutCredentialFn(ctx, hash, p)
}

func (f *fakeStore) Credential(ctx context.Context, id string) (hash string, p *sarv1.Principal, err error) {
	if f.CredentialFn == nil {
		panic(notFaked("Credential"))
	}
	return f.CredentialFn(ctx, id)
}

func (f *fakeStore) DeleteCredential(ctx context.Context, id string) error {
	if f.DeleteCredentialFn == nil {
		panic(notFaked("DeleteCredential"))
	}
	return f.DeleteCredentialFn(ctx, id)
}

func (f *fakeStore) PutTask(ctx context.Context, w sar.TaskWrite) (sar.TaskWriteResult, error) {
	if f.PutTaskFn == nil {
		panic(notFaked("PutTask"))
	}
	return f.PutTaskFn(ctx, w)
}

func (f *fakeStore) Task(ctx context.Context, incidentID, taskID string) (*sarv1.Task, error) {
	if f.TaskFn == nil {
		panic(notFaked("Task"))
	}
	return f.TaskFn(ctx, incidentID, taskID)
}

func (f *fakeStore) Tasks(ctx context.Context, incidentID string) ([]*sarv1.Task, error) {
	if f.TasksFn == nil {
		panic(notFaked("Tasks"))
	}
	return f.TasksFn(ctx, incidentID)
}

func (f *fakeStore) TaskFeed(ctx context.Context, incidentID, after string, count int) ([]sar.FeedEntry, error) {
	if f.TaskFeedFn == nil {
		panic(notFaked("TaskFeed"))
	}
	return f.TaskFeedFn(ctx, incidentID, after, count)
}

func (f *fakeStore) PutNotice(ctx context.Context, kind sarv1.TaskNoticeKind, inc *sarv1.Incident, evs ...*sarv1.Event) (string, error) {
	if f.PutNoticeFn == nil {
		panic(notFaked("PutNotice"))
	}
	return f.PutNoticeFn(ctx, kind, inc, evs...)
}

func (f *fakeStore) NoticeSent(ctx context.Context, incidentID string, kind sarv1.TaskNoticeKind) (bool, error) {
	if f.NoticeSentFn == nil {
		panic(notFaked("NoticeSent"))
	}
	return f.NoticeSentFn(ctx, incidentID, kind)
}

func (f *fakeStore) TaskByRequest(ctx context.Context, incidentID, requestID string) (*sarv1.Task, error) {
	if f.TaskByRequestFn == nil {
		panic(notFaked("TaskByRequest"))
	}
	return f.TaskByRequestFn(ctx, incidentID, requestID)
}

func (f *fakeStore) FeedBounds(ctx context.Context, incidentID string) (first, last, trimmed string, err error) {
	if f.FeedBoundsFn == nil {
		panic(notFaked("FeedBounds"))
	}
	return f.FeedBoundsFn(ctx, incidentID)
}

func (f *fakeStore) DueTasks(ctx context.Context, nowMs int64) (map[string][]string, error) {
	if f.DueTasksFn == nil {
		panic(notFaked("DueTasks"))
	}
	return f.DueTasksFn(ctx, nowMs)
}

func notFaked(method string) string { return fmt.Sprintf("core test: %s called but not faked", method) }

// fakeBus records what was published.
type fakeBus struct {
	mu        sync.Mutex
	delivered []*sarv1.Event
	live      []*sarv1.Event
	liveErr   error // returned by PublishLive when set
	WatchFn   func(ctx context.Context, incidentID string) (<-chan sar.BusEvent, func() int, func(), error)
}

func (b *fakeBus) Deliver(_ context.Context, evs ...*sarv1.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.delivered = append(b.delivered, evs...)
}

func (b *fakeBus) PublishLive(ev *sarv1.Event) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.liveErr != nil {
		return b.liveErr
	}
	b.live = append(b.live, ev)
	return nil
}

func (b *fakeBus) Watch(ctx context.Context, incidentID string) (<-chan sar.BusEvent, func() int, func(), error) {
	if b.WatchFn == nil {
		panic(notFaked("Watch"))
	}
	return b.WatchFn(ctx, incidentID)
}

func (b *fakeBus) WatchTasks(ctx context.Context, incidentID, _, _ string) (<-chan sar.BusEvent, func() int, func(), error) {
	return b.Watch(ctx, incidentID)
}

func (b *fakeBus) published() (delivered, live []*sarv1.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]*sarv1.Event(nil), b.delivered...), append([]*sarv1.Event(nil), b.live...)
}
