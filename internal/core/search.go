package core

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/geo"
	"github.com/mountain-sar/sar/internal/auth"
	"github.com/mountain-sar/sar/internal/sar"
)

// Search plan defaults.
const (
	// SearcherFoot is the searcher type of a rescuer who joined without
	// one, and the width used for types the plan has no width for.
	SearcherFoot = "foot"
	// DefaultSweepWidthM is the sweep width of a searcher on foot until the
	// incident sets its own: a deliberately modest figure for a responsive
	// adult subject in moderate vegetation (published effective sweep
	// widths on foot range from about 10 m in dense forest to over 50 m in
	// open ground); SetSearchPlan overrides it.
	DefaultSweepWidthM = 20.0
	// DefaultSegmentAreaM2 is the segment size of ListSegments (0.5 km²).
	DefaultSegmentAreaM2 = 500_000.0
	// gridEventDelta and gridEventEvery throttle coverage-driven grid
	// events: the probability of success must have moved by 1 percentage
	// point since the last event, at least 5 s ago (per incident, across
	// replicas).
	gridEventDelta = 0.01
	gridEventEvery = 5 * time.Second
	maxAdjustCells = 10_000
	gridWriteTries = 8
)

var searcherType = regexp.MustCompile(`^[a-z0-9_-]{1,32}$`)

// sweepWidth is the sweep width a searcher's track counts with: the plan's
// width for the searcher's type, else the plan's "foot" width, else the
// default.
func sweepWidth(sm *sarv1.SearchGridSummary, typ string) float64 {
	if w := sm.GetSweepWidthsM()[typ]; typ != "" && finitePos(w) {
		return w
	}
	if w := sm.GetSweepWidthsM()[SearcherFoot]; finitePos(w) {
		return w
	}
	return DefaultSweepWidthM
}

// subjectCategories maps the API's categories onto ISRID categories; a
// child is mapped by age (childBand), the others not listed here (other,
// unspecified, values this server does not know) have no category of their
// own and geo.ChooseProfile answers them with the most similar one.
var subjectCategories = map[sarv1.SubjectCategory]geo.Category{
	sarv1.SubjectCategory_SUBJECT_CATEGORY_HIKER:                   geo.Hiker,
	sarv1.SubjectCategory_SUBJECT_CATEGORY_DEMENTIA:                geo.Dementia,
	sarv1.SubjectCategory_SUBJECT_CATEGORY_HUNTER:                  geo.Hunter,
	sarv1.SubjectCategory_SUBJECT_CATEGORY_CLIMBER:                 geo.Climber,
	sarv1.SubjectCategory_SUBJECT_CATEGORY_MOUNTAIN_BIKER:          geo.MountainBiker,
	sarv1.SubjectCategory_SUBJECT_CATEGORY_SKIER:                   geo.Skier,
	sarv1.SubjectCategory_SUBJECT_CATEGORY_GATHERER:                geo.Gatherer,
	sarv1.SubjectCategory_SUBJECT_CATEGORY_RUNNER:                  geo.Runner,
	sarv1.SubjectCategory_SUBJECT_CATEGORY_DESPONDENT:              geo.Despondent,
	sarv1.SubjectCategory_SUBJECT_CATEGORY_OTHER:                   geo.Other,
	sarv1.SubjectCategory_SUBJECT_CATEGORY_SKIER_ALPINE:            geo.SkierAlpine,
	sarv1.SubjectCategory_SUBJECT_CATEGORY_SKIER_NORDIC:            geo.SkierNordic,
	sarv1.SubjectCategory_SUBJECT_CATEGORY_SNOWBOARDER:             geo.Snowboarder,
	sarv1.SubjectCategory_SUBJECT_CATEGORY_SNOWMOBILER:             geo.Snowmobiler,
	sarv1.SubjectCategory_SUBJECT_CATEGORY_ANGLER:                  geo.Angler,
	sarv1.SubjectCategory_SUBJECT_CATEGORY_ATV:                     geo.ATV,
	sarv1.SubjectCategory_SUBJECT_CATEGORY_CAMPER:                  geo.Camper,
	sarv1.SubjectCategory_SUBJECT_CATEGORY_MENTAL_ILLNESS:          geo.MentalIllness,
	sarv1.SubjectCategory_SUBJECT_CATEGORY_INTELLECTUAL_DISABILITY: geo.IntellectualDisability,
	sarv1.SubjectCategory_SUBJECT_CATEGORY_AUTISTIC:                geo.Autistic,
	sarv1.SubjectCategory_SUBJECT_CATEGORY_SUBSTANCE_ABUSE:         geo.SubstanceAbuse,
	sarv1.SubjectCategory_SUBJECT_CATEGORY_HORSEBACK_RIDER:         geo.HorsebackRider,
}

// childBand is the ISRID age band of a child, with a note when the age is
// outside the bands (under 1: the youngest band; over 15: the oldest, as
// the most similar; ISRID files older teenagers by their activity).
func childBand(sp *sarv1.SubjectProfile) (geo.Category, string) {
	if sp.AgeYears == nil {
		return geo.Child, ""
	}
	switch a := sp.GetAgeYears(); {
	case a < 1:
		return geo.Child1to3, fmt.Sprintf("child aged %d: the youngest band (1–3)", a)
	case a <= 3:
		return geo.Child1to3, ""
	case a <= 6:
		return geo.Child4to6, ""
	case a <= 9:
		return geo.Child7to9, ""
	case a <= 12:
		return geo.Child10to12, ""
	case a <= 15:
		return geo.Child13to15, ""
	default:
		return geo.Child13to15, fmt.Sprintf("child aged %d: the oldest band (13–15), the most similar; a category by activity (hiker, …) may fit better", a)
	}
}

// profileFor chooses the ISRID row for the API's subject profile (see
// geo.ChooseProfile for the fallbacks): never silently another category.
func profileFor(sp *sarv1.SubjectProfile) geo.Choice {
	c, ok := subjectCategories[sp.GetCategory()]
	var note string
	switch {
	case sp.GetCategory() == sarv1.SubjectCategory_SUBJECT_CATEGORY_CHILD:
		c, note = childBand(sp)
	case !ok:
		c = "" // unspecified, or a value this server does not know
	}
	var e geo.Ecoregion
	switch sp.GetEcoregion() {
	case sarv1.Ecoregion_ECOREGION_TEMPERATE:
		e = geo.Temperate
	case sarv1.Ecoregion_ECOREGION_DRY:
		e = geo.Dry
	case sarv1.Ecoregion_ECOREGION_POLAR:
		e = geo.Polar
	case sarv1.Ecoregion_ECOREGION_TROPICAL:
		e = geo.Tropical
	}
	var t geo.Terrain
	switch sp.GetTerrain() {
	case sarv1.Terrain_TERRAIN_MOUNTAINOUS:
		t = geo.Mountainous
	case sarv1.Terrain_TERRAIN_FLAT:
		t = geo.Flat
	}
	ch := geo.ChooseProfile(c, e, t)
	if note != "" {
		ch.Requested.Category = geo.Child
		ch.Fallback = true
		ch.Reason = strings.TrimSuffix(note+"; "+ch.Reason, "; ")
	}
	return ch
}

// setProfile records the chosen row in a plan's summary.
func setProfile(sm *sarv1.SearchGridSummary, ch geo.Choice) {
	sm.Profile, sm.ProfileFallback = ch.Profile.Name(), ch.Fallback
	sm.ProfileRequested, sm.ProfileReason = ch.Requested.Name(), ch.Reason
	sm.ProfileDistancesKm = ch.Profile.DistanceKm[:]
}

// storedProfile returns the lost-person row a plan was seeded with, if it
// was seeded from one (not from a fix) that is still shipped. A plan stored
// before fallbacks were recorded (a fallback without profile_requested:
// the old silent hiker row) is not reused: the subject is chosen again.
func storedProfile(sm *sarv1.SearchGridSummary) (geo.Choice, bool) {
	p, err := geo.ParseProfileName(sm.GetProfile())
	if err != nil || (sm.GetProfileFallback() && sm.GetProfileRequested() == "") {
		return geo.Choice{}, false
	}
	req := geo.Profile{Category: p.Category, Ecoregion: p.Ecoregion, Terrain: p.Terrain}
	if q, err := parseRequested(sm.GetProfileRequested()); err == nil {
		req = q
	}
	return geo.Choice{Requested: req, Profile: p, Fallback: sm.GetProfileFallback(), Reason: sm.GetProfileReason()}, true
}

func parseRequested(name string) (geo.Profile, error) {
	parts := strings.Split(name, "/")
	if len(parts) != 3 {
		return geo.Profile{}, fmt.Errorf("requested profile %q", name)
	}
	return geo.Profile{Category: geo.Category(parts[0]), Ecoregion: geo.Ecoregion(parts[1]), Terrain: geo.Terrain(parts[2])}, nil
}

// validTypeTable checks a table per searcher type (sweep widths, speeds):
// at most MaxSearcherTypes valid type names, values from lo to hi.
func validTypeTable(fv *[]sar.FieldViolation, field string, table map[string]float64, lo, hi float64, what string) {
	if len(table) > MaxSearcherTypes {
		*fv = append(*fv, sar.Field(field, "TOO_MANY", "at most %d searcher types", MaxSearcherTypes))
	}
	for k, v := range table {
		if !searcherType.MatchString(k) || !finitePos(v) || v < lo || v > hi {
			*fv = append(*fv, sar.Field(field, "INVALID", "searcher types are 1-32 characters of a-z, 0-9, '-' and '_'; %s", what))
			return
		}
	}
}

func validSweepWidths(fv *[]sar.FieldViolation, widths map[string]float64) {
	validTypeTable(fv, "sweep_widths_m", widths, 0.5, 10_000, "widths from 0.5 m to 10 km")
}

func validMaxSpeeds(fv *[]sar.FieldViolation, speeds map[string]float64) {
	validTypeTable(fv, "max_speeds_m_s", speeds, 0.5, 100, "speeds from 0.5 to 100 m/s")
}

// errNoPlan answers a change or task request on an incident without a
// search plan.
var errNoPlan = sar.Errorf(sar.KindFailedPrecondition, "the incident has no search plan yet (call SetSearchPlan)")

// planGrid loads an incident's grid for a change or a task: no plan yet is
// a failed precondition, not a missing object.
func (s *Service) planGrid(ctx context.Context, id string) (*grid, error) {
	g, err := s.loadGrid(ctx, id)
	if sar.KindOf(err) == sar.KindNotFound {
		return nil, errNoPlan
	}
	return g, err
}

// trackFilter is the jitter filter of a searcher type: the foot
// defaults, with the plan's fastest credible speed for the type.
func trackFilter(sm *sarv1.SearchGridSummary, typ string) geo.JitterFilter {
	f := geo.DefaultJitterFilter()
	if v := sm.GetMaxSpeedsMS()[typ]; typ != "" && finitePos(v) {
		f.MaxSpeedMS = v
	}
	return f
}

// mergeTable merges (or, with replace, replaces) a per-searcher-type
// table; keep names entries a replace keeps unless given.
func mergeTable(old, given map[string]float64, replace bool, keep ...string) map[string]float64 {
	out := map[string]float64{}
	if !replace {
		maps.Copy(out, old)
	}
	for _, k := range keep {
		if v, ok := old[k]; ok && replace {
			out[k] = v
		}
	}
	maps.Copy(out, given)
	return out
}

// UpdateSearchSettings changes a plan's settings without re-seeding it.
func (s *Service) UpdateSearchSettings(ctx context.Context, req *sarv1.UpdateSearchSettingsRequest) (*sarv1.SearchGridSummary, error) {
	p, inc, err := s.commandedIncident(ctx, req.GetIncidentId())
	if err != nil {
		return nil, err
	}
	var fv []sar.FieldViolation
	validSweepWidths(&fv, req.GetSweepWidthsM())
	validMaxSpeeds(&fv, req.GetMaxSpeedsMS())
	if len(req.GetSweepWidthsM()) == 0 && len(req.GetMaxSpeedsMS()) == 0 && req.FollowCallerFixes == nil && !req.GetReplace() {
		fv = append(fv, sar.Field("sweep_widths_m", "REQUIRED", "give a setting to change"))
	}
	if len(fv) > 0 {
		return nil, sar.Invalid("invalid search settings", fv...)
	}
	if err := searching(inc); err != nil {
		return nil, err
	}
	for attempt := 0; attempt < gridWriteTries; attempt++ {
		meta, err := s.st.GridMeta(ctx, inc.GetId())
		if sar.KindOf(err) == sar.KindNotFound {
			return nil, errNoPlan
		}
		if err != nil {
			return nil, err
		}
		sm := staticSummary(meta.Summary)
		sm.SweepWidthsM = mergeTable(sm.GetSweepWidthsM(), req.GetSweepWidthsM(), req.GetReplace(), SearcherFoot)
		sm.MaxSpeedsMS = mergeTable(sm.GetMaxSpeedsMS(), req.GetMaxSpeedsMS(), req.GetReplace())
		if len(sm.SweepWidthsM) > MaxSearcherTypes || len(sm.MaxSpeedsMS) > MaxSearcherTypes {
			return nil, sar.Invalid("invalid search settings", sar.Field("sweep_widths_m", "TOO_MANY", "at most %d searcher types in all", MaxSearcherTypes))
		}
		if req.FollowCallerFixes != nil {
			sm.FollowCallerFixes = req.GetFollowCallerFixes()
		}
		err = s.st.UpdateGridSummary(ctx, inc.GetId(), meta.WriteVersion, sm)
		if errors.Is(err, sar.ErrGridConflict) {
			continue
		}
		if err != nil {
			return nil, err
		}
		s.log.Info("search settings changed", "incident", inc.GetId(), "by", p.GetCredentialId(), "sweep_widths_m", sm.SweepWidthsM,
			"max_speeds_m_s", sm.MaxSpeedsMS, "follow_caller_fixes", sm.FollowCallerFixes)
		meta.Summary = sm
		return summary(meta, meta.Version, -1, meta.RestOfWorld/meta.Z, posOf(meta.POSBase, meta.Z)), nil
	}
	return nil, sar.ErrGridConflict
}

// readableIncident is visibleIncident for the search plan: callers may not
// read it.
func (s *Service) readableIncident(ctx context.Context, id string) (*sarv1.Principal, *sarv1.Incident, error) {
	p, inc, err := s.visibleIncident(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	if p.GetRole() == sarv1.Role_ROLE_CALLER {
		return nil, nil, sar.Errorf(sar.KindPermissionDenied, "callers do not read the search plan")
	}
	return p, inc, nil
}

// geoError turns a geo error about the request into a field violation.
// Limits of a search plan.
const (
	MaxGridCells     = 100_000 // cells of one grid (seeding refuses more)
	MaxSearcherTypes = 16      // sweep widths per incident
)

func geoError(err error, field, what string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, geo.ErrInvalidArgument), errors.Is(err, geo.ErrInvalidPoint), errors.Is(err, geo.ErrInvalidCell),
		errors.Is(err, geo.ErrCellNotInGrid), errors.Is(err, geo.ErrDegenerate), errors.Is(err, geo.ErrTooManyCells):
		return sar.Invalid("invalid "+what, sar.Field(field, "INVALID", "%s", strings.TrimPrefix(err.Error(), "geo: ")))
	}
	return sar.Wrap(sar.KindInternal, err, what+" failed")
}

func validPoint(fv *[]sar.FieldViolation, field string, ll *sarv1.LatLng) {
	if ll == nil {
		*fv = append(*fv, sar.Field(field, "REQUIRED", "%s is required", field))
		return
	}
	if !geo.ValidPoint(ll.GetLat(), ll.GetLng()) {
		*fv = append(*fv, sar.Field(field, "OUT_OF_RANGE", "lat must be -90..90 and lng -180..180"))
	}
}

func finitePos(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) && v > 0 }

// grid is a stored grid made into a geo.Grid (POA = posterior), with what
// the API reports beside it.
type grid struct {
	g        *geo.Grid
	meta     sar.GridMeta
	coverage map[uint64]float64 // every covered cell, in the grid or not
	versions map[uint64]int64
	weights  map[uint64]float64
	total    float64 // Σ weights + rest of world's weight
}

// loadGrid reads an incident's whole grid.
func (s *Service) loadGrid(ctx context.Context, id string) (*grid, error) {
	st, err := s.st.LoadGrid(ctx, id, 0)
	if err != nil {
		return nil, err
	}
	out := &grid{meta: st.Meta, coverage: map[uint64]float64{}, versions: map[uint64]int64{}, weights: map[uint64]float64{}}
	ids := make([]uint64, 0, len(st.Cells))
	for c, cs := range st.Cells {
		if cs.Coverage > 0 {
			out.coverage[c] = cs.Coverage
		}
		if cs.InGrid {
			ids = append(ids, c)
		}
	}
	slices.Sort(ids) // a sum independent of map order
	poa := make(map[uint64]float64, len(ids))
	for _, c := range ids {
		cs := st.Cells[c]
		w := geo.Undetected(cs.Prior, cs.Coverage)
		out.weights[c], out.versions[c] = w, cs.Version
		out.total += w
		poa[c] = w
	}
	out.total += st.Meta.RestOfWorld
	if !(out.total > 0) {
		return nil, sar.Errorf(sar.KindInternal, "search grid holds no probability")
	}
	g, err := geo.NewGrid(int(st.Meta.Summary.GetResolution()), poa, st.Meta.RestOfWorld)
	if err != nil {
		return nil, sar.Wrap(sar.KindInternal, err, "corrupt search grid")
	}
	for i := range g.Cells {
		g.Cells[i].Coverage = st.Cells[g.Cells[i].ID].Coverage
	}
	g.CumulativePOS = posOf(st.Meta.POSBase, out.total)
	out.g = g
	return out, nil
}

func clamp01(v float64) float64 { return math.Min(1, math.Max(0, v)) }

// posOf is the probability of success 1 − (1 − posb)·z, with the rounding
// of summing thousands of weights (~1e-15) not reported as success.
func posOf(posb, z float64) float64 {
	p := clamp01(1 - (1-posb)*z)
	if math.Abs(p-posb) < 1e-12 {
		return posb
	}
	return p
}

// summary fills the dynamic fields of a grid's summary (cells < 0 keeps
// the stored cell count).
func summary(m sar.GridMeta, version int64, cells int, restOfWorld, pos float64) *sarv1.SearchGridSummary {
	sm := m.Summary
	sm.Version, sm.SeedVersion, sm.RestOfWorld, sm.ProbabilityOfSuccess = version, m.SeedVersion, restOfWorld, pos
	if cells >= 0 {
		sm.CellCount = int32(cells)
	}
	return sm
}

// staticSummary is the part of a summary stored with the grid (the rest is
// computed when read).
func staticSummary(sm *sarv1.SearchGridSummary) *sarv1.SearchGridSummary {
	return &sarv1.SearchGridSummary{IncidentId: sm.GetIncidentId(), Resolution: sm.GetResolution(), CellCount: sm.GetCellCount(),
		Origin: sm.GetOrigin(), OriginAccuracyM: sm.GetOriginAccuracyM(), Profile: sm.GetProfile(),
		ProfileFallback: sm.GetProfileFallback(), SweepWidthsM: sm.GetSweepWidthsM(), FollowCallerFixes: sm.GetFollowCallerFixes(),
		OriginParticipantId: sm.GetOriginParticipantId(), OriginTime: sm.GetOriginTime(), MaxSpeedsMS: sm.GetMaxSpeedsMS(),
		Adjusted: sm.GetAdjusted(), ProfileRequested: sm.GetProfileRequested(), ProfileReason: sm.GetProfileReason(),
		ProfileDistancesKm: sm.GetProfileDistancesKm(), PlanTime: sm.GetPlanTime(), FollowedFix: sm.GetFollowedFix(),
		LastCallerFix: sm.GetLastCallerFix()}
}

func (s *Service) gridEvent(incidentID string, change sarv1.SearchGridChange, sm *sarv1.SearchGridSummary, cells int, desc string) *sarv1.Event {
	ev := s.newEvent(incidentID)
	ev.Payload = &sarv1.Event_SearchGridChanged{SearchGridChanged: &sarv1.SearchGridChangedEvent{
		Change: change, Grid: sm, CellsChanged: int32(cells), Description: desc}}
	return ev
}

// SetSearchPlan seeds (or re-seeds) an incident's search grid.
func (s *Service) SetSearchPlan(ctx context.Context, req *sarv1.SetSearchPlanRequest) (*sarv1.SearchGridSummary, error) {
	_, inc, err := s.commandedIncident(ctx, req.GetIncidentId())
	if err != nil {
		return nil, err
	}
	var fv []sar.FieldViolation
	if req.Point != nil {
		validPoint(&fv, "point", req.GetPoint())
	}
	if a := req.GetAccuracyM(); a != 0 && (!finitePos(a) || a > 100_000 || req.Point == nil) {
		fv = append(fv, sar.Field("accuracy_m", "OUT_OF_RANGE", "accuracy_m must be above 0 and at most 100 km, with point"))
	}
	if c := req.GetCut(); c != 0 && (!finitePos(c) || c > 0.95) {
		fv = append(fv, sar.Field("cut", "OUT_OF_RANGE", "cut must be above 0 and at most 0.95"))
	}
	validSweepWidths(&fv, req.GetSweepWidthsM())
	if req.GetSubject() != nil {
		validSubject(&fv, "subject", req.GetSubject())
	}
	// Defaults: the current plan's origin and profile, else the incident's.
	cur, err := s.st.GridMeta(ctx, inc.GetId())
	if err != nil && sar.KindOf(err) != sar.KindNotFound {
		return nil, err
	}
	curSM := cur.Summary // nil without a plan
	origin, accuracy := req.GetPoint(), req.GetAccuracyM()
	if origin == nil && curSM.GetOrigin() != nil {
		origin = curSM.GetOrigin()
		if req.GetSubject() == nil {
			accuracy = curSM.GetOriginAccuracyM()
		}
	}
	if origin == nil {
		origin = inc.GetInitialPlanningPoint().GetPosition()
		if origin == nil {
			fv = append(fv, sar.Field("point", "REQUIRED", "the incident has no initial planning point: give a point"))
		}
	}
	if len(fv) > 0 {
		return nil, sar.Invalid("invalid search plan", fv...)
	}
	if err := searching(inc); err != nil {
		return nil, err
	}
	res := int(inc.GetSearchResolution())
	if res == 0 {
		res = s.cfg.Resolution
	}
	// Bounded so that one plan cannot block Redis or the server for long:
	// a 95 % hiker area at resolution 9 is about 13,000 cells.
	opts := []geo.SeedOption{geo.WithResolution(res), geo.WithMaxCells(MaxGridCells)}
	if req.GetCut() > 0 {
		opts = append(opts, geo.WithCut(req.GetCut()))
	}
	sm := &sarv1.SearchGridSummary{IncidentId: inc.GetId(), Resolution: int32(res), Origin: origin, OriginAccuracyM: accuracy,
		SweepWidthsM: map[string]float64{SearcherFoot: DefaultSweepWidthM}}
	var g *geo.Grid
	if accuracy > 0 {
		sm.Profile = "fix"
		g, err = geo.SeedFix(origin.GetLat(), origin.GetLng(), accuracy, opts...)
	} else {
		ch, ok := storedProfile(curSM)
		if req.GetSubject() != nil || !ok {
			subject := req.GetSubject()
			if subject == nil {
				subject = inc.GetSubject()
			}
			ch = profileFor(subject)
		}
		setProfile(sm, ch)
		g, err = geo.Seed(origin.GetLat(), origin.GetLng(), ch.Profile, opts...)
	}
	if err != nil {
		return nil, geoError(err, "point", "search plan")
	}
	prior := make(map[uint64]float64, len(g.Cells))
	for _, c := range g.Cells {
		prior[c.ID] = c.POA
	}
	for attempt := 0; attempt < gridWriteTries; attempt++ {
		var snap sar.GridMeta
		var coverage map[uint64]float64
		old, err := s.loadGrid(ctx, inc.GetId())
		switch {
		case sar.KindOf(err) == sar.KindNotFound:
		case err != nil:
			return nil, err
		default:
			snap, coverage = old.meta, old.coverage
			for k, w := range old.meta.Summary.GetSweepWidthsM() {
				sm.SweepWidthsM[k] = w
			}
			sm.MaxSpeedsMS = old.meta.Summary.GetMaxSpeedsMS()
		}
		sm.FollowCallerFixes = snap.Summary == nil || snap.Summary.GetFollowCallerFixes()
		if req.FollowCallerFixes != nil {
			sm.FollowCallerFixes = req.GetFollowCallerFixes()
		}
		// An operator's plan, made after the caller's fix the grid
		// followed: it stands until a caller's fix moves (see followCaller).
		sm.PlanTime = timestamppb.New(s.now())
		sm.FollowedFix, sm.LastCallerFix = followedFix(snap.Summary), snap.Summary.GetLastCallerFix()
		for k, w := range req.GetSweepWidthsM() {
			sm.SweepWidthsM[k] = w
		}
		if req.GetResetCoverage() {
			coverage = nil
		}
		z := g.RestOfWorld
		for _, c := range g.Cells {
			z += geo.Undetected(c.POA, coverage[c.ID])
		}
		sm.CellCount = int32(len(g.Cells))
		w := sar.GridWrite{IncidentID: inc.GetId(), ExpectWriteVersion: snap.WriteVersion, ExpectVersion: snap.Version,
			Seed: true, ResetCoverage: req.GetResetCoverage(),
			Summary: staticSummary(sm), Prior: prior, RestOfWorld: g.RestOfWorld}
		out, err := s.writeSeed(ctx, w, sm, sarv1.SearchGridChange_SEARCH_GRID_CHANGE_SEEDED, z)
		if errors.Is(err, sar.ErrGridConflict) {
			continue
		}
		if err != nil {
			return nil, err
		}
		s.log.Info("search grid seeded", "incident", inc.GetId(), "profile", sm.Profile, "profile_reason", sm.ProfileReason, "cells", len(g.Cells), "version", out.GetVersion())
		return out, nil
	}
	return nil, sar.ErrGridConflict
}

// writeSeed stores a seeded grid (w.Seed) with the event of kind that
// announces it, and delivers the event. z is the grid's total weight with
// the coverage kept. sar.ErrGridConflict: another seed or rebase won;
// seed again from the new state.
func (s *Service) writeSeed(ctx context.Context, w sar.GridWrite, sm *sarv1.SearchGridSummary, kind sarv1.SearchGridChange,
	z float64) (*sarv1.SearchGridSummary, error) {
	cells := len(w.Prior)
	var out *sarv1.SearchGridSummary
	ev, err := s.writeGrid(ctx, w, func(version int64) *sarv1.Event {
		out = summary(sar.GridMeta{Summary: sm, SeedVersion: version}, version, cells, w.RestOfWorld/z, posOf(0, z))
		return s.gridEvent(w.IncidentID, kind, out, cells, "")
	})
	if err != nil {
		return nil, err
	}
	s.deliver(ctx, ev)
	return out, nil
}

// writeGrid stores a seeded or rebased grid with the event that number
// makes for its version. When tracks moved the version since the snapshot
// the write stays valid (see sar.GridWrite) and is only renumbered;
// sar.ErrGridConflict means another seed or rebase won: load again.
func (s *Service) writeGrid(ctx context.Context, w sar.GridWrite, number func(version int64) *sarv1.Event) (*sarv1.Event, error) {
	for attempt := 0; attempt < gridWriteTries; attempt++ {
		w.Event = number(w.ExpectVersion + 1)
		err := s.st.PutGrid(ctx, w)
		var moved *sar.VersionMovedError
		if !errors.As(err, &moved) {
			return w.Event, err
		}
		w.ExpectVersion = moved.Current
	}
	return nil, sar.ErrGridConflict
}

// rebase applies change to the posterior grid and writes it back as the
// new prior (see store/grid.go), retrying on concurrent seeds and rebases.
func (s *Service) rebase(ctx context.Context, inc *sarv1.Incident, kind sarv1.SearchGridChange, desc string,
	change func(*geo.Grid) error) (*sarv1.SearchGridSummary, error) {
	if err := searching(inc); err != nil {
		return nil, err
	}
	for attempt := 0; attempt < gridWriteTries; attempt++ {
		cur, err := s.planGrid(ctx, inc.GetId())
		if err != nil {
			return nil, err
		}
		g := cur.g
		if err := change(g); err != nil {
			return nil, err
		}
		prior := make(map[uint64]float64, len(g.Cells))
		z := g.RestOfWorld
		for _, c := range g.Cells {
			cov := cur.coverage[c.ID]
			prior[c.ID] = geo.PriorOf(c.POA, cov)
			z += geo.Undetected(prior[c.ID], cov) // POA but where the exponent was bounded
		}
		sm := cur.meta.Summary
		sm.CellCount = int32(len(g.Cells))
		sm.Adjusted = true
		w := sar.GridWrite{IncidentID: inc.GetId(), ExpectWriteVersion: cur.meta.WriteVersion, ExpectVersion: cur.meta.Version,
			Summary: staticSummary(sm), Prior: prior, RestOfWorld: g.RestOfWorld,
			POSBase: g.CumulativePOS}
		var out *sarv1.SearchGridSummary
		ev, err := s.writeGrid(ctx, w, func(version int64) *sarv1.Event {
			out = summary(cur.meta, version, len(g.Cells), g.RestOfWorld/z, posOf(g.CumulativePOS, z))
			return s.gridEvent(inc.GetId(), kind, out, len(g.Cells), desc)
		})
		if errors.Is(err, sar.ErrGridConflict) {
			continue
		}
		if err != nil {
			return nil, err
		}
		s.deliver(ctx, ev)
		return out, nil
	}
	return nil, sar.ErrGridConflict
}

// AdjustCells sets or scales the POA of chosen cells.
func (s *Service) AdjustCells(ctx context.Context, req *sarv1.AdjustCellsRequest) (*sarv1.SearchGridSummary, error) {
	p, inc, err := s.commandedIncident(ctx, req.GetIncidentId())
	if err != nil {
		return nil, err
	}
	var fv []sar.FieldViolation
	set, scale := req.GetSet(), req.GetScaleCells()
	if (len(set) == 0) == (len(scale) == 0) {
		fv = append(fv, sar.Field("set", "ONE_OF", "give exactly one of set and scale_cells"))
	}
	if len(set)+len(scale) > maxAdjustCells {
		fv = append(fv, sar.Field("set", "TOO_MANY", "at most %d cells", maxAdjustCells))
	}
	values := make(map[uint64]float64, len(set))
	for _, cp := range set {
		c, ok := sar.ParseCellHex(cp.GetCell())
		if !ok {
			fv = append(fv, sar.Field("set.cell", "INVALID", "cell %q is not a hexadecimal H3 index", cp.GetCell()))
			break
		}
		if v := cp.GetPoa(); math.IsNaN(v) || v < 0 || v > 1 {
			fv = append(fv, sar.Field("set.poa", "OUT_OF_RANGE", "poa must be from 0 to 1"))
			break
		}
		values[c] = cp.GetPoa()
	}
	cells := make([]uint64, 0, len(scale))
	for _, h := range scale {
		c, ok := sar.ParseCellHex(h)
		if !ok {
			fv = append(fv, sar.Field("scale_cells", "INVALID", "cell %q is not a hexadecimal H3 index", h))
			break
		}
		cells = append(cells, c)
	}
	if f := req.GetScaleFactor(); len(scale) > 0 && (math.IsNaN(f) || math.IsInf(f, 0) || f < 0) {
		fv = append(fv, sar.Field("scale_factor", "OUT_OF_RANGE", "scale_factor must be finite and at least 0"))
	}
	if len(fv) > 0 {
		return nil, sar.Invalid("invalid adjustment", fv...)
	}
	out, err := s.rebase(ctx, inc, sarv1.SearchGridChange_SEARCH_GRID_CHANGE_ADJUSTED, "", func(g *geo.Grid) error {
		if len(values) > 0 {
			return geoError(g.SetPOA(values), "set", "adjustment")
		}
		return geoError(g.ScaleCells(cells, req.GetScaleFactor()), "scale_cells", "adjustment")
	})
	if err == nil {
		s.log.Info("search grid adjusted", "incident", inc.GetId(), "by", p.GetCredentialId(), "version", out.GetVersion())
	}
	return out, err
}

// RecordClue re-weights an incident's grid around a clue.
func (s *Service) RecordClue(ctx context.Context, req *sarv1.RecordClueRequest) (*sarv1.SearchGridSummary, error) {
	p, inc, err := s.commandedIncident(ctx, req.GetIncidentId())
	if err != nil {
		return nil, err
	}
	var fv []sar.FieldViolation
	validPoint(&fv, "position", req.GetPosition())
	if r := req.GetRadiusM(); !finitePos(r) || r > 100_000 {
		fv = append(fv, sar.Field("radius_m", "OUT_OF_RANGE", "radius_m must be above 0 and at most 100 km"))
	}
	if w := req.GetWeight(); !finitePos(w) || w > 1e6 {
		fv = append(fv, sar.Field("weight", "OUT_OF_RANGE", "weight must be above 0 (1 changes nothing) and at most 1e6"))
	}
	text(&fv, "description", req.GetDescription(), sar.MaxTextLen, false)
	if len(fv) > 0 {
		return nil, sar.Invalid("invalid clue", fv...)
	}
	clue := geo.Clue{Lat: req.GetPosition().GetLat(), Lng: req.GetPosition().GetLng(), RadiusM: req.GetRadiusM(), Weight: req.GetWeight()}
	out, err := s.rebase(ctx, inc, sarv1.SearchGridChange_SEARCH_GRID_CHANGE_CLUE, strings.TrimSpace(req.GetDescription()), func(g *geo.Grid) error {
		if err := g.ApplyClue(clue); err != nil {
			return geoError(err, "position", "clue")
		}
		return nil
	})
	if err == nil {
		s.log.Info("clue recorded", "incident", inc.GetId(), "by", p.GetCredentialId(), "version", out.GetVersion())
	}
	return out, err
}

func searchCell(c uint64, w, total, cov, area float64, ver int64) *sarv1.SearchCell {
	return &sarv1.SearchCell{Cell: sar.CellHex(c), Poa: w / total, Pod: geo.PODFromCoverage(cov), Coverage: cov,
		AreaM2: area, Weight: w, Version: ver}
}

// GetSearchGrid returns an incident's grid, or the cells changed after a
// version, or a segment's cells.
func (s *Service) GetSearchGrid(ctx context.Context, req *sarv1.GetSearchGridRequest) (*sarv1.GetSearchGridResponse, error) {
	_, inc, err := s.readableIncident(ctx, req.GetIncidentId())
	if err != nil {
		return nil, err
	}
	work, err := s.pendingWork(ctx, inc.GetId()) // before the grid: 0 then means the grid holds every fix acknowledged so far
	if err != nil {
		return nil, err
	}
	out, err := s.getSearchGrid(ctx, inc, req)
	if err == nil {
		work(out.GetGrid())
	}
	return out, err
}

// pendingWork reads the search work queued for an incident's grid and
// returns what notes it in a summary read after.
func (s *Service) pendingWork(ctx context.Context, id string) (func(*sarv1.SearchGridSummary), error) {
	items, err := s.st.SearchWork(ctx, id)
	if err != nil {
		return nil, err
	}
	return func(sm *sarv1.SearchGridSummary) {
		if sm == nil || len(items) == 0 {
			return
		}
		sm.SearchWorkPending = uint32(len(items))
		sm.SearchWorkSince = timestamppb.New(time.UnixMilli(items[0].SinceMs)) // oldest first
	}, nil
}

func (s *Service) getSearchGrid(ctx context.Context, inc *sarv1.Incident, req *sarv1.GetSearchGridRequest) (*sarv1.GetSearchGridResponse, error) {
	since := req.GetSinceVersion()
	if since < 0 {
		return nil, sar.Invalid("invalid since_version", sar.Field("since_version", "OUT_OF_RANGE", "since_version must be at least 0"))
	}
	if req.GetSegmentId() < 0 {
		return nil, sar.Invalid("invalid segment_id", sar.Field("segment_id", "OUT_OF_RANGE", "segment_id must be at least 0"))
	}
	if req.GetSegmentId() > 0 {
		return s.segmentCells(ctx, inc, int(req.GetSegmentId()), since)
	}
	if since > 0 {
		st, err := s.st.LoadGrid(ctx, inc.GetId(), since)
		if err != nil {
			return nil, err
		}
		if since >= st.Meta.SeedVersion {
			return s.changedCells(st)
		}
	}
	g, err := s.loadGrid(ctx, inc.GetId())
	if err != nil {
		return nil, err
	}
	out := &sarv1.GetSearchGridResponse{Full: true, WeightTotal: g.total,
		Grid: summary(g.meta, g.meta.Version, len(g.g.Cells), g.g.RestOfWorld, g.g.CumulativePOS)}
	out.Cells = make([]*sarv1.SearchCell, 0, len(g.g.Cells))
	for _, c := range g.g.Cells {
		out.Cells = append(out.Cells, searchCell(c.ID, g.weights[c.ID], g.total, c.Coverage, c.AreaM2, g.versions[c.ID]))
	}
	return out, nil
}

// segmentCells answers a read of one segment's cells (changed after since).
func (s *Service) segmentCells(ctx context.Context, inc *sarv1.Incident, id int, since int64) (*sarv1.GetSearchGridResponse, error) {
	g, err := s.loadGrid(ctx, inc.GetId())
	if err != nil {
		return nil, err
	}
	seg, g, err := s.segmentsFor(ctx, inc, g, segmentInput{need: id}) // the same segments ListSegments shows
	if err != nil {
		return nil, err
	}
	i, err := segmentIndex(seg, id)
	if err != nil {
		return nil, err
	}
	ss := seg.Segments[i]
	out := &sarv1.GetSearchGridResponse{WeightTotal: g.total, Segment: segmentPB(g, ss),
		Grid: summary(g.meta, g.meta.Version, len(g.g.Cells), g.g.RestOfWorld, g.g.CumulativePOS)}
	for _, c := range ss.Cells {
		j, ok := g.g.Index(c)
		if !ok || g.versions[c] <= since {
			continue // not in the grid any more (re-seeded), or unchanged
		}
		cell := g.g.Cells[j]
		out.Cells = append(out.Cells, searchCell(c, g.weights[c], g.total, cell.Coverage, cell.AreaM2, g.versions[c]))
	}
	return out, nil
}

// changedCells answers an incremental read from the maintained total.
func (s *Service) changedCells(st *sar.Grid) (*sarv1.GetSearchGridResponse, error) {
	m := st.Meta
	total := m.Z
	if !(total > 0) {
		return nil, sar.Errorf(sar.KindInternal, "search grid holds no probability")
	}
	ids := make([]uint64, 0, len(st.Cells))
	for c := range st.Cells {
		ids = append(ids, c)
	}
	slices.Sort(ids)
	areas := map[uint64]float64{}
	if len(ids) > 0 {
		uniform := make(map[uint64]float64, len(ids))
		for _, c := range ids {
			uniform[c] = 1
		}
		g, err := geo.NewGrid(int(m.Summary.GetResolution()), uniform, 0)
		if err != nil {
			return nil, sar.Wrap(sar.KindInternal, err, "corrupt search grid")
		}
		for _, c := range g.Cells {
			areas[c.ID] = c.AreaM2
		}
	}
	out := &sarv1.GetSearchGridResponse{WeightTotal: total, Grid: summary(m, m.Version, -1, m.RestOfWorld/total, posOf(m.POSBase, total))}
	for _, c := range ids {
		cs := st.Cells[c]
		out.Cells = append(out.Cells, searchCell(c, geo.Undetected(cs.Prior, cs.Coverage), total, cs.Coverage, areas[c], cs.Version))
	}
	return out, nil
}

// ExportSearchGrid renders an incident's grid as GeoJSON or KML.
func (s *Service) ExportSearchGrid(ctx context.Context, req *sarv1.ExportSearchGridRequest) (*sarv1.ExportSearchGridResponse, error) {
	p, inc, err := s.readableIncident(ctx, req.GetIncidentId())
	if err != nil {
		return nil, err
	}
	f := req.GetFormat()
	if f != sarv1.ExportFormat_EXPORT_FORMAT_GEOJSON && f != sarv1.ExportFormat_EXPORT_FORMAT_KML {
		return nil, sar.Invalid("invalid export", sar.Field("format", "REQUIRED", "format must be EXPORT_FORMAT_GEOJSON or EXPORT_FORMAT_KML"))
	}
	area := req.GetSegmentAreaM2()
	if area != 0 && (!finitePos(area) || area < 10_000 || area > 100e6) {
		return nil, sar.Invalid("invalid export", sar.Field("segment_area_m2", "OUT_OF_RANGE", "segment_area_m2 must be 0 or from 10,000 m² to 100 km²"))
	}
	g, err := s.loadGrid(ctx, inc.GetId())
	if err != nil {
		return nil, err
	}
	var segs []geo.Segment
	if area > 0 {
		initial := area
		if !auth.CanCommandIncident(p, inc) {
			initial = 0 // a rescuer's export does not choose the incident's segment size
		}
		seg, g2, err := s.segmentsFor(ctx, inc, g, segmentInput{initial: initial})
		if err != nil {
			return nil, err
		}
		g = g2
		segs = geo.RankSegments(g.g, geoSegments(seg))
	}
	out := &sarv1.ExportSearchGridResponse{Version: g.meta.Version}
	if f == sarv1.ExportFormat_EXPORT_FORMAT_GEOJSON {
		out.Content, err = geo.GeoJSON(g.g, segs)
		out.ContentType = "application/geo+json"
	} else {
		out.Content, err = geo.KML(g.g, segs, "Search grid "+inc.GetTitle())
		out.ContentType = "application/vnd.google-earth.kml+xml"
	}
	if err != nil {
		return nil, sar.Wrap(sar.KindInternal, err, "export failed")
	}
	return out, nil
}
