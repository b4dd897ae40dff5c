package core

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/geo"
	"github.com/mountain-sar/sar/internal/sar"
)

// How a caller's live fix collapses the search grid (see
// SetSearchPlanRequest.follow_caller_fixes).
const (
	// CallerFixMaxAccuracyM: coarser fixes (cell towers, Wi-Fi guesses)
	// are kept as positions but do not replace the plan.
	CallerFixMaxAccuracyM = 1000.0
	// callerRefollowMin: a newer fix that moved or is markedly more
	// accurate collapses the grid again only this long after the fix the
	// grid follows (the share page sends a fix every few seconds).
	callerRefollowMin = 10 * time.Second
	// callerBetterAccuracy: a fix this much more accurate counts as new.
	callerBetterAccuracy = 0.7
	// callerMaxSpeedMS: a fix implying that the caller moved faster than
	// this (a run, after both fixes' accuracy) since the fix the grid
	// follows is not followed: a GPS glitch, or the link opened on another
	// phone somewhere else. Operators still see it and can seed from it.
	callerMaxSpeedMS = 4.0
	// callerNoteEvery: a fix that is not followed is written to the
	// summary's last_caller_fix when its decision differs from the one
	// stored, else at most this often (each write counts as a grid write
	// that a concurrent seed or rebase must retry after).
	callerNoteEvery = 30 * time.Second
	// trailingEventDelta: a change of the probability of success smaller
	// than the throttle's delta still gets a trailing event once tracks
	// pause, unless it is below this.
	trailingEventDelta = 1e-6
)

// followedFix is the caller's fix a plan follows: the summary's
// followed_fix, or for a grid stored before that field, its origin when a
// caller's fix seeded it. nil when no caller's fix was ever followed.
func followedFix(sm *sarv1.SearchGridSummary) *sarv1.CallerFix {
	if ff := sm.GetFollowedFix(); ff != nil {
		return ff
	}
	if sm.GetOriginParticipantId() == "" || sm.GetOriginTime() == nil {
		return nil
	}
	return &sarv1.CallerFix{ParticipantId: sm.GetOriginParticipantId(), Position: sm.GetOrigin(),
		AccuracyM: sm.GetOriginAccuracyM(), Time: sm.GetOriginTime()}
}

// callerCollapseDue decides what a caller's fix f (of 1 km accuracy or
// better) does to a grid with summary sm (nil: the incident has no plan):
// whether it collapses the grid to the fix's disk, which rule applied, and
// its distance from the fix the plan follows. The rule, in order:
//
//   - no plan: collapse (FIRST_FIX); a plan that does not follow caller
//     fixes: nothing (UNSPECIFIED, not recorded);
//   - a plan made without any followed fix (from the IPP or an operator's
//     point): collapse (PLAN_SUPERSEDED), the live fix is better evidence;
//   - otherwise against the followed fix F (time t₀, accuracy a₀), with
//     the fix's accuracy a, distance d and Δt = t − t₀: not newer (OLDER);
//     less than 10 s (TOO_SOON); d − a − a₀ > 4 m/s · Δt (IMPLAUSIBLE);
//   - moved means d > max(a, a₀): the two positions are further apart
//     than either fix's 68 % radius. A fix within that confirms F and
//     never collapses, however late;
//   - an operator's plan made after F (plan_time set) stands unless the
//     fix moved (OPERATOR_PLAN_SUPERSEDED, else OPERATOR_PLAN_STANDS);
//   - a grid seeded from F collapses when the fix moved (MOVED) or
//     a ≤ 0.7 a₀ (MORE_ACCURATE), else not (CONFIRMS).
func callerCollapseDue(sm *sarv1.SearchGridSummary, f *sarv1.LocationFix) (bool, sarv1.CallerFixDecision, float64) {
	if sm == nil {
		return true, sarv1.CallerFixDecision_CALLER_FIX_DECISION_FIRST_FIX, 0
	}
	if !sm.GetFollowCallerFixes() {
		return false, sarv1.CallerFixDecision_CALLER_FIX_DECISION_UNSPECIFIED, 0
	}
	ff := followedFix(sm)
	if ff == nil {
		return true, sarv1.CallerFixDecision_CALLER_FIX_DECISION_PLAN_SUPERSEDED, 0
	}
	acc, old := f.GetHorizontalAccuracyM(), ff.GetAccuracyM()
	d := geo.DistanceM(f.GetLat(), f.GetLng(), ff.GetPosition().GetLat(), ff.GetPosition().GetLng())
	dt := f.GetTime().AsTime().Sub(ff.GetTime().AsTime())
	switch {
	case dt <= 0:
		return false, sarv1.CallerFixDecision_CALLER_FIX_DECISION_OLDER, d
	case dt < callerRefollowMin:
		return false, sarv1.CallerFixDecision_CALLER_FIX_DECISION_TOO_SOON, d
	case d-acc-old > callerMaxSpeedMS*dt.Seconds():
		return false, sarv1.CallerFixDecision_CALLER_FIX_DECISION_IMPLAUSIBLE, d // implausible for a person on foot
	}
	moved := d > max(acc, old)
	switch {
	case sm.GetPlanTime() != nil && moved:
		return true, sarv1.CallerFixDecision_CALLER_FIX_DECISION_OPERATOR_PLAN_SUPERSEDED, d
	case sm.GetPlanTime() != nil:
		return false, sarv1.CallerFixDecision_CALLER_FIX_DECISION_OPERATOR_PLAN_STANDS, d
	case moved:
		return true, sarv1.CallerFixDecision_CALLER_FIX_DECISION_MOVED, d
	case acc <= callerBetterAccuracy*old:
		return true, sarv1.CallerFixDecision_CALLER_FIX_DECISION_MORE_ACCURATE, d
	}
	return false, sarv1.CallerFixDecision_CALLER_FIX_DECISION_CONFIRMS, d
}

// decisionLabel is a decision's metric label ("moved", "confirms", …).
func decisionLabel(d sarv1.CallerFixDecision) string {
	return strings.ToLower(strings.TrimPrefix(d.String(), "CALLER_FIX_DECISION_"))
}

// followCaller collapses an incident's grid to a caller's new last known
// position when the plan follows caller fixes and callerCollapseDue says
// so (an incident without a plan gets one). A fix that is not followed
// changes neither the grid nor its version: it is counted
// (sar_caller_fixes_total) and noted in the summary's last_caller_fix
// (throttled, no event). The fix is stored already; this is derived. It
// returns the store's failures (the search work then stays queued and is
// done again: deciding on the same fix twice only confirms it).
//
// A collapse keeps the coverage recorded in the cells of the new disk:
// it is a seed like SetSearchPlan's without reset_coverage, so a sweep
// already made in a cell that stays in the area counts against the new
// prior (the cell's POD stays, its POA is the disk's times e^(−coverage)).
// The alternative, not counting searches made before the fix, is right
// for a subject who walked into ground searched earlier. But coverage is
// kept per cell without its time, so it cannot be told apart from the
// common case: the caller stays put (injured, waiting) and teams sweep the
// disk while the phone keeps saying so; a sharper or slightly moved fix
// then collapsed the grid, and clearing threw those sweeps away and sent
// the next task back over them. Search planning treats the subject as
// stationary and every sweep as evidence, as SetSearchPlan does; an
// operator who knows the subject moved into searched ground re-seeds with
// SetSearchPlan(reset_coverage).
//
// Every write is checked against the version it was decided on, so a grid
// written since is a conflict and the next attempt reads again. It runs
// after the ack, as the incident's search work (searchwork.go).
func (s *Service) followCaller(ctx context.Context, inc *sarv1.Incident, participantID string, f *sarv1.LocationFix) error {
	acc := f.GetHorizontalAccuracyM()
	if !finitePos(acc) || acc > CallerFixMaxAccuracyM {
		s.met.CallerFixes.WithLabelValues("too_coarse").Inc()
		return nil
	}
	warn := func(msg string, err error) {
		s.met.GridErrors.Inc()
		s.log.Warn(msg, "incident", inc.GetId(), "participant", participantID, "err", err)
	}
	cf := &sarv1.CallerFix{ParticipantId: participantID, Position: &sarv1.LatLng{Lat: f.GetLat(), Lng: f.GetLng()},
		AccuracyM: acc, Time: f.GetTime()}
	for attempt := 0; attempt < gridWriteTries; attempt++ {
		meta, err := s.st.GridMeta(ctx, inc.GetId())
		has := err == nil
		if err != nil && sar.KindOf(err) != sar.KindNotFound {
			return err // the store failed: the work stays queued
		}
		due, decision, dist := callerCollapseDue(meta.Summary, f)
		cf.Decision, cf.DistanceM = decision, dist
		if !due {
			if decision == sarv1.CallerFixDecision_CALLER_FIX_DECISION_UNSPECIFIED {
				s.met.CallerFixes.WithLabelValues("not_following").Inc()
				return nil
			}
			err := s.noteCallerFix(ctx, inc.GetId(), meta, cf)
			if errors.Is(err, sar.ErrGridConflict) {
				continue
			}
			s.met.CallerFixes.WithLabelValues(decisionLabel(decision)).Inc()
			if err != nil && sar.KindOf(err) != sar.KindFailedPrecondition && sar.KindOf(err) != sar.KindNotFound {
				warn("caller fix decision not noted in the search grid's summary", err)
			}
			return nil
		}
		// The coverage kept needs the cells: read the whole grid, and
		// decide again on that snapshot (the write is checked against it).
		var coverage map[uint64]float64
		if has {
			st, err := s.st.LoadGrid(ctx, inc.GetId(), 0)
			if err != nil && sar.KindOf(err) != sar.KindNotFound {
				return err
			}
			if err != nil {
				continue // dropped meanwhile: decide again
			}
			if again, d2, _ := callerCollapseDue(st.Meta.Summary, f); !again || d2 != decision {
				continue // changed meanwhile: decide again
			}
			meta = st.Meta
			coverage = make(map[uint64]float64, len(st.Cells))
			for c, cs := range st.Cells {
				if cs.Coverage > 0 {
					coverage[c] = cs.Coverage
				}
			}
		}
		res := int(inc.GetSearchResolution())
		widths := map[string]float64{SearcherFoot: DefaultSweepWidthM}
		var speeds map[string]float64
		if has {
			res = int(meta.Summary.GetResolution())
			for k, w := range meta.Summary.GetSweepWidthsM() {
				widths[k] = w
			}
			speeds = meta.Summary.GetMaxSpeedsMS()
		}
		if res == 0 {
			res = s.cfg.Resolution
		}
		g, err := geo.SeedFix(f.GetLat(), f.GetLng(), acc, geo.WithResolution(res), geo.WithMaxCells(MaxGridCells))
		if err != nil {
			warn("caller fix not applied to the search grid", err) // the fix itself: trying again will not help
			return nil
		}
		// The disk is the new prior; the coverage its cells hold stays and
		// counts against it (see above): z = Σ wᵢe^(−cᵢ) + row.
		prior := make(map[uint64]float64, len(g.Cells))
		z := g.RestOfWorld
		for _, c := range g.Cells {
			prior[c.ID] = c.POA
			z += geo.Undetected(c.POA, coverage[c.ID])
		}
		sm := &sarv1.SearchGridSummary{IncidentId: inc.GetId(), Resolution: int32(res), CellCount: int32(len(g.Cells)),
			Origin: &sarv1.LatLng{Lat: f.GetLat(), Lng: f.GetLng()}, OriginAccuracyM: acc, Profile: "fix", SweepWidthsM: widths,
			MaxSpeedsMS: speeds, FollowCallerFixes: true, OriginParticipantId: participantID, OriginTime: f.GetTime(),
			FollowedFix: cf, LastCallerFix: cf}
		w := sar.GridWrite{IncidentID: inc.GetId(), ExpectWriteVersion: meta.WriteVersion, ExpectVersion: meta.Version,
			Seed: true, Summary: staticSummary(sm), Prior: prior, RestOfWorld: g.RestOfWorld}
		out, err := s.writeSeed(ctx, w, sm, sarv1.SearchGridChange_SEARCH_GRID_CHANGE_CALLER_FIX, z)
		if errors.Is(err, sar.ErrGridConflict) {
			continue
		}
		if sar.KindOf(err) == sar.KindFailedPrecondition { // closed meanwhile
			return nil
		}
		if err != nil {
			return err
		}
		s.met.CallerFixes.WithLabelValues(decisionLabel(decision)).Inc()
		s.log.Info("search grid collapsed to a caller's fix", "incident", inc.GetId(), "participant", participantID,
			"rule", decisionLabel(decision), "distance_m", dist, "accuracy_m", acc, "cells", len(g.Cells), "version", out.GetVersion())
		return nil
	}
	return sar.ErrGridConflict // the work stays queued: the next pass decides again
}

// noteCallerFix stores a caller's fix that was not followed as the
// summary's last_caller_fix: when its decision differs from the one
// stored, else at most every callerNoteEvery. It changes no cell and no
// version, and makes no event. sar.ErrGridConflict: the grid was written
// since meta was read.
func (s *Service) noteCallerFix(ctx context.Context, id string, meta sar.GridMeta, cf *sarv1.CallerFix) error {
	last := meta.Summary.GetLastCallerFix()
	if last.GetDecision() == cf.GetDecision() && last.GetParticipantId() == cf.GetParticipantId() {
		gap := cf.GetTime().AsTime().Sub(last.GetTime().AsTime())
		if gap.Abs() < callerNoteEvery {
			return nil
		}
	}
	sm := staticSummary(meta.Summary)
	sm.LastCallerFix = cf
	return s.st.UpdateGridSummary(ctx, id, meta.WriteVersion, sm)
}

// trailer sends the trailing grid event of an incident whose coverage
// moved the probability of success by less than the throttle's delta:
// once tracks pause, watchers still see the final figure. One timer per
// incident on this replica; the store decides across replicas.
type trailer struct {
	mu     sync.Mutex
	timers map[string]*time.Timer
	closed bool
	wg     sync.WaitGroup
	flush  func(id string) time.Duration // returns when to ask again (0: done)
}

func (t *trailer) schedule(id string, d time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || t.timers[id] != nil {
		return
	}
	if t.timers == nil {
		t.timers = map[string]*time.Timer{}
	}
	t.wg.Add(1)
	t.timers[id] = time.AfterFunc(d, func() {
		defer t.wg.Done()
		t.mu.Lock()
		delete(t.timers, id)
		closed := t.closed
		t.mu.Unlock()
		if closed {
			return
		}
		if again := t.flush(id); again > 0 {
			t.schedule(id, again)
		}
	})
}

// close stops the pending timers and waits for running flushes.
func (t *trailer) close() {
	t.mu.Lock()
	t.closed = true
	for id, tm := range t.timers {
		if tm.Stop() {
			t.wg.Done()
		}
		delete(t.timers, id)
	}
	t.mu.Unlock()
	t.wg.Wait()
}

// flushGridEvent sends an incident's trailing coverage event if due.
func (s *Service) flushGridEvent(id string) time.Duration {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	te, err := s.st.FlushGridEvent(ctx, id, trailingEventDelta, gridEventEvery.Milliseconds(), s.now().UnixMilli())
	if err != nil {
		s.met.GridErrors.Inc()
		s.log.Warn("trailing search grid event skipped", "incident", id, "err", err)
		return 0
	}
	if !te.Due {
		return time.Duration(te.WaitMs) * time.Millisecond
	}
	sm := summary(te.Meta, te.Meta.Version, -1, te.ROW, te.POS)
	ev := s.gridEvent(id, sarv1.SearchGridChange_SEARCH_GRID_CHANGE_COVERAGE, sm, 0, "")
	if err := s.st.PutEvent(ctx, ev); err != nil {
		s.met.GridErrors.Inc()
		s.log.Warn("trailing search grid event not stored", "incident", id, "err", err)
		return 0
	}
	s.deliver(ctx, ev)
	return 0
}

// Close stops the background work of the service: it finishes the search
// work running (what it does not start stays queued in the store) and
// stops the trailing grid events.
func (s *Service) Close() {
	s.work.close()
	s.trailing.close()
}
