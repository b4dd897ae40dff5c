package core

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/geo"
	"github.com/mountain-sar/sar/internal/auth"
	"github.com/mountain-sar/sar/internal/sar"
)

// Task defaults of SuggestNextTask: a team on foot in mountain terrain.
const (
	// DefaultSearchSpeedMS is the walking speed while searching (1.8 km/h:
	// hasty-to-thorough search pace off trail).
	DefaultSearchSpeedMS = 0.5
	// DefaultTravelSpeedMS is the straight-line speed of approach (about
	// 3 km/h: a path winds, climbs and descends).
	DefaultTravelSpeedMS = 0.8
	// DefaultTaskCoverage is the coverage a task aims at: a POD of 63 %.
	DefaultTaskCoverage = 1.0
	segmentWriteTries   = 5
)

// segmentInput is what an incident's segmentation must fit.
type segmentInput struct {
	area    float64 // requested target area (0: keep)
	initial float64 // target area if the incident has no segmentation yet (0: the default)
	force   bool    // cut the unassigned part anew
	// need is the segment id the request names (0: none). A cut without
	// it is not stored: a request refused NOT_FOUND writes nothing.
	need int
}

// segmentsFor returns the incident's segmentation for grid g, cutting the
// unassigned part anew (and storing it) when there is none yet, the grid
// was re-seeded since, the grid holds cells no segment does, the target
// area changes or in.force. Assigned segments keep their cells and ids.
// When the stored segmentation was cut from a newer grid than g (another
// request re-seeded meanwhile), the grid is loaded again: the grid
// returned is the one the segmentation fits.
func (s *Service) segmentsFor(ctx context.Context, inc *sarv1.Incident, g *grid, in segmentInput) (*sar.Segmentation, *grid, error) {
	for attempt := 0; attempt < segmentWriteTries; attempt++ {
		seg, err := s.st.Segmentation(ctx, inc.GetId())
		if err != nil {
			return nil, nil, err
		}
		if seg != nil && seg.SeedVersion > g.meta.SeedVersion {
			if g, err = s.loadGrid(ctx, inc.GetId()); err != nil {
				return nil, nil, err
			}
			continue
		}
		if seg != nil && !in.force && (in.area == 0 || in.area == seg.TargetAreaM2) && seg.SeedVersion == g.meta.SeedVersion &&
			coversGrid(seg, g.g) {
			return seg, g, nil
		}
		area := cmp.Or(in.area, targetArea(seg), in.initial, DefaultSegmentAreaM2)
		if inc.GetState() != sarv1.IncidentState_INCIDENT_STATE_OPEN {
			if seg != nil {
				return seg, g, nil // as it was when the incident closed
			}
			next, err := cutSegments(nil, g, area) // for this read only: nothing is written to a closed incident
			return next, g, err
		}
		next, err := cutSegments(seg, g, area)
		if err != nil {
			return nil, nil, err
		}
		if in.need != 0 {
			if _, err := segmentIndex(next, in.need); err != nil {
				return nil, nil, err
			}
		}
		desc := fmt.Sprintf("%d segments of about %.2f km²", len(next.Segments), next.TargetAreaM2/1e6)
		if n := outsideGrid(next, g.g); n > 0 {
			desc += fmt.Sprintf("; %d assigned segments lie outside the current grid (free or reassign them)", n)
		}
		ev := s.gridEvent(inc.GetId(), sarv1.SearchGridChange_SEARCH_GRID_CHANGE_SEGMENTS,
			summary(g.meta, g.meta.Version, len(g.g.Cells), g.g.RestOfWorld, g.g.CumulativePOS), len(g.g.Cells), desc)
		v, err := s.st.PutSegmentation(ctx, inc.GetId(), next, ev)
		if errors.Is(err, sar.ErrSegmentsConflict) {
			in.force = false // whoever won cut it anew already
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		next.Version = v
		s.deliver(ctx, ev)
		s.log.Info("search segments cut", "incident", inc.GetId(), "segments", len(next.Segments), "version", v)
		return next, g, nil
	}
	return nil, nil, sar.ErrSegmentsConflict
}

// outsideGrid counts the assigned segments none of whose cells is in the
// grid (kept through a re-seed elsewhere: their team searches where the
// plan no longer puts any probability).
func outsideGrid(seg *sar.Segmentation, g *geo.Grid) int {
	n := 0
	for _, ss := range seg.Segments {
		if ss.Assigned() && !slices.ContainsFunc(ss.Cells, func(c uint64) bool { _, ok := g.Index(c); return ok }) {
			n++
		}
	}
	return n
}

// coversGrid reports whether every cell of the grid is in a segment.
func coversGrid(seg *sar.Segmentation, g *geo.Grid) bool {
	in := make(map[uint64]struct{}, len(g.Cells))
	for _, ss := range seg.Segments {
		for _, c := range ss.Cells {
			in[c] = struct{}{}
		}
	}
	for _, c := range g.Cells {
		if _, ok := in[c.ID]; !ok {
			return false
		}
	}
	return true
}

// cutSegments cuts the grid's cells that no assigned segment holds into
// new segments numbered after the old ones.
func cutSegments(old *sar.Segmentation, g *grid, area float64) (*sar.Segmentation, error) {
	next := &sar.Segmentation{SeedVersion: g.meta.SeedVersion, TargetAreaM2: area, NextID: 1}
	taken := map[uint64]bool{}
	if old != nil {
		next.Version, next.NextID = old.Version, max(old.NextID, 1)
		for _, ss := range old.Segments {
			if ss.Assigned() {
				next.Segments = append(next.Segments, ss)
				for _, c := range ss.Cells {
					taken[c] = true
				}
			}
		}
	}
	free := make(map[uint64]float64, len(g.g.Cells))
	for _, c := range g.g.Cells {
		if !taken[c.ID] {
			free[c.ID] = c.POA
		}
	}
	if len(free) == 0 {
		return next, nil
	}
	sub, err := geo.NewGrid(g.g.Resolution, free, g.g.RestOfWorld+1e-300)
	if err != nil {
		return nil, sar.Wrap(sar.KindInternal, err, "segments")
	}
	segs, err := geo.Segments(sub, geo.SegmentOptions{TargetAreaM2: area})
	if err != nil {
		return nil, geoError(err, "target_area_m2", "segments")
	}
	for _, sg := range segs {
		next.Segments = append(next.Segments, sar.StoredSegment{ID: next.NextID, Cells: sg.Cells, AreaM2: sg.AreaM2, Lat: sg.Lat, Lng: sg.Lng})
		next.NextID++
	}
	return next, nil
}

// segmentStats returns a segment's POA in the grid as it is now, its POD
// (the share of the probability it held before the searches that they
// would have detected) and its area-weighted mean coverage.
func segmentStats(g *grid, ss sar.StoredSegment) (poa, pod, coverage float64) {
	var before, detected, covArea, area float64
	for _, c := range ss.Cells {
		i, ok := g.g.Index(c)
		if !ok {
			continue
		}
		cell := g.g.Cells[i]
		poa += cell.POA
		b := geo.PriorOf(cell.POA, cell.Coverage)
		before += b
		detected += b * geo.PODFromCoverage(cell.Coverage)
		covArea += cell.Coverage * cell.AreaM2
		area += cell.AreaM2
	}
	if before > 0 {
		pod = detected / before
	}
	if area > 0 {
		coverage = covArea / area
	}
	return poa, pod, coverage
}

func segmentPB(g *grid, ss sar.StoredSegment) *sarv1.SearchSegment {
	poa, pod, coverage := segmentStats(g, ss)
	cells := make([]string, len(ss.Cells))
	for i, c := range ss.Cells {
		cells[i] = sar.CellHex(c)
	}
	out := &sarv1.SearchSegment{Id: int32(ss.ID), Cells: cells, Poa: poa, AreaM2: ss.AreaM2,
		Centroid: &sarv1.LatLng{Lat: ss.Lat, Lng: ss.Lng}, Pod: pod, Coverage: coverage}
	if ss.AreaM2 > 0 {
		out.DensityPerKm2 = poa / (ss.AreaM2 / 1e6)
	}
	if ss.Assigned() {
		out.AssignedTeam = &sarv1.TeamRef{AgencyId: ss.Agency, TeamId: ss.Team}
		out.AssignTime = timestamppb.New(time.UnixMilli(ss.AssignMs))
	}
	return out
}

// rankedSegments returns the segments densest first (ties: lower id).
func rankedSegments(g *grid, seg *sar.Segmentation) []*sarv1.SearchSegment {
	out := make([]*sarv1.SearchSegment, 0, len(seg.Segments))
	for _, ss := range seg.Segments {
		out = append(out, segmentPB(g, ss))
	}
	slices.SortStableFunc(out, func(a, b *sarv1.SearchSegment) int {
		if c := cmp.Compare(b.GetDensityPerKm2(), a.GetDensityPerKm2()); c != 0 {
			return c
		}
		return cmp.Compare(a.GetId(), b.GetId())
	})
	return out
}

func validSegmentArea(area float64, field string) error {
	if area != 0 && (!finitePos(area) || area < 10_000 || area > 100e6) {
		return sar.Invalid("invalid segment size", sar.Field(field, "OUT_OF_RANGE", "%s must be from 10,000 m² to 100 km²", field))
	}
	return nil
}

// geoSegments converts stored segments for geo's ranking and export.
func geoSegments(seg *sar.Segmentation) []geo.Segment {
	out := make([]geo.Segment, len(seg.Segments))
	for i, ss := range seg.Segments {
		out[i] = geo.Segment{ID: ss.ID, Cells: ss.Cells, AreaM2: ss.AreaM2, Lat: ss.Lat, Lng: ss.Lng}
	}
	return out
}

// ListSegments returns an incident's segments, densest first.
func (s *Service) ListSegments(ctx context.Context, req *sarv1.ListSegmentsRequest) (*sarv1.ListSegmentsResponse, error) {
	p, inc, err := s.readableIncident(ctx, req.GetIncidentId())
	if err != nil {
		return nil, err
	}
	if err := validSegmentArea(req.GetTargetAreaM2(), "target_area_m2"); err != nil {
		return nil, err
	}
	if req.GetResegment() && !auth.CanCommandIncident(p, inc) {
		return nil, sar.Errorf(sar.KindPermissionDenied, "only the incident's operators may cut segments anew")
	}
	work, err := s.pendingWork(ctx, inc.GetId()) // before the grid (see GetSearchGrid)
	if err != nil {
		return nil, err
	}
	g, err := s.loadGrid(ctx, inc.GetId())
	if err != nil {
		return nil, err
	}
	area := req.GetTargetAreaM2()
	if !auth.CanCommandIncident(p, inc) {
		area = 0 // a rescuer's read does not re-cut an assigned plan
	}
	seg, g, err := s.segmentsFor(ctx, inc, g, segmentInput{area: area, force: req.GetResegment()})
	if err != nil {
		return nil, err
	}
	out := &sarv1.ListSegmentsResponse{Grid: summary(g.meta, g.meta.Version, len(g.g.Cells), g.g.RestOfWorld, g.g.CumulativePOS),
		Segments: rankedSegments(g, seg), SegmentationVersion: seg.Version, TargetAreaM2: seg.TargetAreaM2}
	work(out.Grid)
	return out, nil
}

// takesPart reports whether a team (or its whole agency) is assigned to
// the incident.
func takesPart(inc *sarv1.Incident, t *sarv1.TeamRef) bool {
	if slices.Contains(inc.GetAgencyIds(), t.GetAgencyId()) {
		return true
	}
	return t.GetTeamId() != "" && slices.Contains(inc.GetTeamRefs(), auth.TeamRef(t.GetAgencyId(), t.GetTeamId()))
}

// checkTaskTeam refuses a team that does not take part in the incident or
// does not exist (a typo must not assign a segment to nobody).
func (s *Service) checkTaskTeam(ctx context.Context, inc *sarv1.Incident, t *sarv1.TeamRef, what string) error {
	if !takesPart(inc, t) {
		return sar.Invalid(what, sar.Field("team", "NOT_ASSIGNED", "the team does not take part in the incident"))
	}
	if t.GetTeamId() == "" {
		return nil
	}
	ok, err := s.st.TeamExists(ctx, t.GetAgencyId(), t.GetTeamId())
	if err != nil {
		return err
	}
	if !ok {
		return sar.Invalid(what, sar.Field("team.team_id", "NOT_FOUND", "the agency has no team %q", t.GetTeamId()))
	}
	return nil
}

func validTeamRef(fv *[]sar.FieldViolation, field string, t *sarv1.TeamRef) {
	if !sar.ValidSlug(t.GetAgencyId()) {
		*fv = append(*fv, sar.Field(field+".agency_id", "INVALID", "agency_id must be an agency id"))
	}
	if t.GetTeamId() != "" && !sar.ValidSlug(t.GetTeamId()) {
		*fv = append(*fv, sar.Field(field+".team_id", "INVALID", "team_id must be a team id"))
	}
}

// teamPosition returns the newest last known position among the team's
// rescuers in the incident, and how many they are.
func (s *Service) teamPosition(ctx context.Context, incidentID string, t *sarv1.TeamRef) (*sarv1.LocationFix, int, error) {
	parts, err := s.st.Participants(ctx, incidentID)
	if err != nil {
		return nil, 0, err
	}
	var newest *sarv1.LocationFix
	n := 0
	for _, pt := range parts {
		if pt.GetKind() != sarv1.ParticipantKind_PARTICIPANT_KIND_RESCUER || pt.GetAgencyId() != t.GetAgencyId() || pt.GetTeamId() != t.GetTeamId() {
			continue
		}
		n++
		if f := pt.GetLastFix(); f != nil && (newest == nil || f.GetTime().AsTime().After(newest.GetTime().AsTime())) {
			newest = f
		}
	}
	return newest, n, nil
}

// SuggestNextTask picks the best unassigned segment for a team, and
// assigns it on request.
func (s *Service) SuggestNextTask(ctx context.Context, req *sarv1.SuggestNextTaskRequest) (*sarv1.SuggestNextTaskResponse, error) {
	p, inc, err := s.readableIncident(ctx, req.GetIncidentId())
	if err != nil {
		return nil, err
	}
	commands := auth.CanCommandIncident(p, inc)
	team := req.GetTeam()
	if p.GetRole() == sarv1.Role_ROLE_RESCUER {
		own := &sarv1.TeamRef{AgencyId: p.GetAgencyId(), TeamId: p.GetTeamId()}
		if team == nil {
			team = own
		}
		if team.GetAgencyId() != own.GetAgencyId() || team.GetTeamId() != own.GetTeamId() {
			return nil, sar.Errorf(sar.KindPermissionDenied, "rescuers ask for their own team's task only")
		}
	}
	var fv []sar.FieldViolation
	if team != nil {
		validTeamRef(&fv, "team", team)
	}
	if req.GetAssign() && team == nil {
		fv = append(fv, sar.Field("team", "REQUIRED", "assign needs a team"))
	}
	if req.Position != nil {
		validPoint(&fv, "position", req.GetPosition())
	} else if team == nil {
		fv = append(fv, sar.Field("position", "REQUIRED", "give a team or a position"))
	}
	if n := req.GetSearchers(); n < 0 || n > 1000 {
		fv = append(fv, sar.Field("searchers", "OUT_OF_RANGE", "searchers must be from 1 to 1000 (0: the team's size)"))
	}
	if t := req.GetSearcherType(); t != "" && !searcherType.MatchString(t) {
		fv = append(fv, sar.Field("searcher_type", "INVALID", "searcher_type must be 1-32 characters of a-z, 0-9, '-' and '_'"))
	}
	speed := func(field string, v, hi float64) {
		if v != 0 && (!finitePos(v) || v < 0.05 || v > hi) {
			fv = append(fv, sar.Field(field, "OUT_OF_RANGE", "%s must be from 0.05 to %g m/s (0: the default)", field, hi))
		}
	}
	speed("search_speed_m_s", req.GetSearchSpeedMS(), 10)
	speed("travel_speed_m_s", req.GetTravelSpeedMS(), 100)
	if c := req.GetCoverage(); c != 0 && (!finitePos(c) || c < 0.1 || c > 5) {
		fv = append(fv, sar.Field("coverage", "OUT_OF_RANGE", "coverage must be from 0.1 to 5 (0: 1)"))
	}
	if len(fv) > 0 {
		return nil, sar.Invalid("invalid task request", fv...)
	}
	if req.GetAssign() && !commands {
		return nil, sar.Errorf(sar.KindPermissionDenied, "only the incident's operators assign segments")
	}
	if team != nil {
		if err := s.checkTaskTeam(ctx, inc, team, "invalid task request"); err != nil {
			return nil, err
		}
	}
	pos, searchers := req.GetPosition(), int(req.GetSearchers())
	if team != nil && (pos == nil || searchers == 0) {
		last, n, err := s.teamPosition(ctx, inc.GetId(), team)
		if err != nil {
			return nil, err
		}
		if pos == nil {
			if last == nil {
				return nil, sar.Errorf(sar.KindFailedPrecondition, "the team has no position in this incident yet: give a position")
			}
			pos = &sarv1.LatLng{Lat: last.GetLat(), Lng: last.GetLng()}
		}
		if searchers == 0 {
			searchers = n
		}
	}
	geoTeam := geo.Team{Lat: pos.GetLat(), Lng: pos.GetLng(), Searchers: max(searchers, 1),
		SearchSpeedMS: cmp.Or(req.GetSearchSpeedMS(), DefaultSearchSpeedMS), TravelSpeedMS: cmp.Or(req.GetTravelSpeedMS(), DefaultTravelSpeedMS)}
	coverage := cmp.Or(req.GetCoverage(), DefaultTaskCoverage)
	for attempt := 0; attempt < segmentWriteTries; attempt++ {
		g, err := s.planGrid(ctx, inc.GetId())
		if err != nil {
			return nil, err
		}
		seg, g, err := s.segmentsFor(ctx, inc, g, segmentInput{})
		if err != nil {
			return nil, err
		}
		geoTeam.SweepWidthM = sweepWidth(g.meta.Summary, cmp.Or(req.GetSearcherType(), SearcherFoot))
		segs := geoSegments(seg)
		taken := map[int]bool{}
		for _, ss := range seg.Segments {
			taken[ss.ID] = ss.Assigned()
		}
		task, err := geo.NextTask(g.g, segs, geoTeam, coverage, taken)
		if errors.Is(err, geo.ErrNoSegment) {
			return nil, sar.Errorf(sar.KindFailedPrecondition, "every segment with probability left is assigned")
		}
		if err != nil {
			return nil, geoError(err, "team", "task")
		}
		chosen := seg.Segments[task.Index]
		out := &sarv1.SuggestNextTaskResponse{ExpectedPos: task.POS, ScorePerHour: task.Score,
			Travel: durationpb.New(task.Travel.Round(time.Second)), Search: durationpb.New(task.Search.Round(time.Second)),
			TeamPosition: pos, Grid: summary(g.meta, g.meta.Version, len(g.g.Cells), g.g.RestOfWorld, g.g.CumulativePOS)}
		if req.GetAssign() {
			chosen.Agency, chosen.Team, chosen.AssignMs = team.GetAgencyId(), team.GetTeamId(), s.now().UnixMilli()
			seg.Segments[task.Index] = chosen
			_, err := s.putAssignment(ctx, p, inc, g, seg, chosen)
			if errors.Is(err, sar.ErrSegmentsConflict) {
				continue // someone assigned or cut meanwhile: choose again
			}
			if err != nil {
				return nil, err
			}
			out.Assigned = true
			s.log.Info("segment assigned", "incident", inc.GetId(), "segment", chosen.ID, "agency", chosen.Agency, "team", chosen.Team,
				"by", p.GetCredentialId())
		}
		out.Segment = segmentPB(g, chosen)
		return out, nil
	}
	return nil, sar.ErrSegmentsConflict
}

// putAssignment stores a segmentation whose segment ss was just assigned
// or freed, announcing it, together with the segment's task, so that the
// two never disagree: assigning offers the team a new task (or moves the
// segment's open task to it), freeing cancels the open task. It returns
// the segmentation's new version; sar.ErrSegmentsConflict when another
// change of the segments or of the task won (choose again).
func (s *Service) putAssignment(ctx context.Context, p *sarv1.Principal, inc *sarv1.Incident, g *grid, seg *sar.Segmentation, ss sar.StoredSegment) (int64, error) {
	incidentID := inc.GetId()
	desc := fmt.Sprintf("segment %d freed", ss.ID)
	if ss.Assigned() {
		desc = fmt.Sprintf("segment %d assigned to %s", ss.ID, auth.TeamRef(ss.Agency, ss.Team))
	}
	sm := summary(g.meta, g.meta.Version, len(g.g.Cells), g.g.RestOfWorld, g.g.CumulativePOS)
	ev := s.gridEvent(incidentID, sarv1.SearchGridChange_SEARCH_GRID_CHANGE_SEGMENTS, sm, len(ss.Cells), desc)
	w, before, beforeTeam, err := s.segmentTaskChange(ctx, p, inc, ss)
	if err != nil {
		return 0, err
	}
	if w == nil {
		v, err := s.st.PutSegmentation(ctx, incidentID, seg, ev)
		if err != nil {
			return 0, err
		}
		s.deliver(ctx, ev)
		return v, nil
	}
	w.Segments, w.MoreEvents = seg, []*sarv1.Event{ev}
	w.Event = s.taskEvent(incidentID, w.Task, w.Task.Transitions[len(w.Task.Transitions)-1])
	if _, err := s.putTask(ctx, *w); err != nil {
		if errors.Is(err, sar.ErrTaskConflict) {
			return 0, sar.ErrSegmentsConflict
		}
		return 0, err
	}
	if w.ExpectVersion != 0 {
		s.afterTaskChange(ctx, before, beforeTeam, w.Task)
	}
	return seg.Version + 1, nil
}

// segmentTaskChange is the change of a segment's task that its new
// assignment ss needs, or nil for none.
func (s *Service) segmentTaskChange(ctx context.Context, p *sarv1.Principal, inc *sarv1.Incident, ss sar.StoredSegment) (w *sar.TaskWrite, before sarv1.TaskState, beforeTeam *sarv1.TeamRef, err error) {
	incidentID := inc.GetId()
	tasks, err := s.st.Tasks(ctx, incidentID)
	if err != nil {
		return nil, 0, nil, err
	}
	var open *sarv1.Task // the segment's task not yet ended (declined included)
	for _, t := range tasks {
		if t.GetKind() == sarv1.TaskKind_TASK_KIND_SEARCH_SEGMENT && int(t.GetSegmentId()) == ss.ID && !finalTask(t.GetState()) &&
			(open == nil || t.GetId() > open.GetId()) {
			open = t
		}
	}
	team := &sarv1.TeamRef{AgencyId: ss.Agency, TeamId: ss.Team}
	if ss.Assigned() && ss.Team == "" {
		return nil, 0, nil, nil // held by a whole agency: no team to offer a task to
	}
	if open != nil {
		before, beforeTeam = open.GetState(), open.GetTeam()
	}
	switch {
	case !ss.Assigned():
		if open == nil || awaitsOperator(open.GetState()) {
			return nil, 0, nil, nil
		}
		w = &sar.TaskWrite{IncidentID: incidentID, Task: open, ExpectVersion: open.GetVersion(), FeedTeam: teamRefOf(open.GetTeam())}
		open.OfferDeadline = nil
		s.transition(open, p, sarv1.TaskState_TASK_STATE_CANCELLED, "segment freed")
		return w, before, beforeTeam, nil
	case open != nil && teamRefOf(open.GetTeam()) == teamRefOf(team) && !awaitsOperator(open.GetState()):
		return nil, 0, nil, nil // the team has it already
	case open != nil && !slices.ContainsFunc(open.GetDeclinedBy(), func(r *sarv1.TeamRef) bool { return teamRefOf(r) == teamRefOf(team) }):
		w = &sar.TaskWrite{IncidentID: incidentID, Task: open, ExpectVersion: open.GetVersion(), FeedTeam: teamRefOf(open.GetTeam())}
		open.Team = team
		s.offer(w, p, open, taskAnswerWithin(open), "segment reassigned")
		return w, before, beforeTeam, nil
	}
	now := s.now()
	t := &sarv1.Task{Id: sar.NewID(), IncidentId: incidentID, Kind: sarv1.TaskKind_TASK_KIND_SEARCH_SEGMENT,
		Priority: sarv1.TaskPriority_TASK_PRIORITY_NORMAL, SegmentId: int32(ss.ID), Team: team,
		CreatedBy: p.GetCredentialId(), CreatedByName: p.GetDisplayName(), CreateTime: timestamppb.New(now)}
	t.Title = defaultTitle(t)
	t.AnswerWithin = durationpb.New(incidentAnswerWithin(inc, t.GetPriority()))
	w = &sar.TaskWrite{IncidentID: incidentID, Task: t}
	s.offer(w, p, t, taskAnswerWithin(t), "")
	return w, 0, nil, nil
}

// AssignSegment assigns a segment to a team, or frees it.
func (s *Service) AssignSegment(ctx context.Context, req *sarv1.AssignSegmentRequest) (*sarv1.AssignSegmentResponse, error) {
	p, inc, err := s.commandedIncident(ctx, req.GetIncidentId())
	if err != nil {
		return nil, err
	}
	var fv []sar.FieldViolation
	if req.GetSegmentId() <= 0 {
		fv = append(fv, sar.Field("segment_id", "REQUIRED", "segment_id must be a segment's id (see ListSegments)"))
	}
	team := req.GetTeam()
	if team != nil && (team.GetAgencyId() != "" || team.GetTeamId() != "") {
		validTeamRef(&fv, "team", team)
	} else {
		team = nil
	}
	if len(fv) > 0 {
		return nil, sar.Invalid("invalid assignment", fv...)
	}
	if team != nil {
		if err := s.checkTaskTeam(ctx, inc, team, "invalid assignment"); err != nil {
			return nil, err
		}
	}
	if err := searching(inc); err != nil {
		return nil, err
	}
	for attempt := 0; attempt < segmentWriteTries; attempt++ {
		g, err := s.planGrid(ctx, inc.GetId())
		if err != nil {
			return nil, err
		}
		seg, g, err := s.segmentsFor(ctx, inc, g, segmentInput{need: int(req.GetSegmentId())}) // ids of the current cut only
		if err != nil {
			return nil, err
		}
		i, err := segmentIndex(seg, int(req.GetSegmentId()))
		if err != nil {
			return nil, err
		}
		ss := seg.Segments[i]
		if team != nil && ss.Assigned() && (ss.Agency != team.GetAgencyId() || ss.Team != team.GetTeamId()) && !req.GetReassign() {
			return nil, sar.Errorf(sar.KindFailedPrecondition, "segment %d is assigned to %s: free it first, or set reassign",
				ss.ID, auth.TeamRef(ss.Agency, ss.Team))
		}
		if team != nil && ss.Agency == team.GetAgencyId() && ss.Team == team.GetTeamId() {
			return &sarv1.AssignSegmentResponse{Segment: segmentPB(g, ss), SegmentationVersion: seg.Version}, nil // already so
		}
		if team == nil && !ss.Assigned() {
			return &sarv1.AssignSegmentResponse{Segment: segmentPB(g, ss), SegmentationVersion: seg.Version}, nil
		}
		ss.Agency, ss.Team, ss.AssignMs = "", "", 0
		if team != nil {
			ss.Agency, ss.Team, ss.AssignMs = team.GetAgencyId(), team.GetTeamId(), s.now().UnixMilli()
		}
		seg.Segments[i] = ss
		v, err := s.putAssignment(ctx, p, inc, g, seg, ss)
		if errors.Is(err, sar.ErrSegmentsConflict) {
			continue
		}
		if err != nil {
			return nil, err
		}
		s.log.Info("segment assignment changed", "incident", inc.GetId(), "segment", ss.ID, "agency", ss.Agency, "team", ss.Team,
			"by", p.GetCredentialId())
		return &sarv1.AssignSegmentResponse{Segment: segmentPB(g, ss), SegmentationVersion: v}, nil
	}
	return nil, sar.ErrSegmentsConflict
}

// segmentIndex finds a segment of the current cut by id.
func segmentIndex(seg *sar.Segmentation, id int) (int, error) {
	i := slices.IndexFunc(seg.Segments, func(ss sar.StoredSegment) bool { return ss.ID == id })
	if i < 0 {
		return 0, sar.NotFound("segment")
	}
	return i, nil
}

// targetArea is a segmentation's target area, 0 for none.
func targetArea(seg *sar.Segmentation) float64 {
	if seg == nil {
		return 0
	}
	return seg.TargetAreaM2
}
