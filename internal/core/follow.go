package core

import (
	"context"
	"errors"
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
	// accurate collapses the grid again after this long…
	callerRefollowMin = 10 * time.Second
	// callerRefollowMax: …and any newer fix after this long (it confirms
	// the position, undoing the drift of searches since).
	callerRefollowMax = 2 * time.Minute
	// callerBetterAccuracy: a fix this much more accurate counts as new.
	callerBetterAccuracy = 0.7
	// callerMaxSpeedMS: a fix implying that the caller moved faster than
	// this (a run, after both fixes' accuracy) since the fix the grid
	// follows is not followed: a GPS glitch, or the link opened on another
	// phone somewhere else. Operators still see it and can seed from it.
	callerMaxSpeedMS = 4.0
	// trailingEventDelta: a change of the probability of success smaller
	// than the throttle's delta still gets a trailing event once tracks
	// pause, unless it is below this.
	trailingEventDelta = 1e-6
)

// callerCollapseDue reports whether a caller's fix should re-seed a grid
// with summary sm.
func callerCollapseDue(sm *sarv1.SearchGridSummary, f *sarv1.LocationFix) bool {
	if !sm.GetFollowCallerFixes() {
		return false
	}
	if sm.GetOriginParticipantId() == "" || sm.GetOriginTime() == nil {
		return true // a plan from the IPP or an operator's point: the live fix is better evidence
	}
	dt := f.GetTime().AsTime().Sub(sm.GetOriginTime().AsTime())
	if dt <= 0 {
		return false
	}
	if dt < callerRefollowMin {
		return false
	}
	acc, old := f.GetHorizontalAccuracyM(), sm.GetOriginAccuracyM()
	d := geo.DistanceM(f.GetLat(), f.GetLng(), sm.GetOrigin().GetLat(), sm.GetOrigin().GetLng())
	if d-acc-old > callerMaxSpeedMS*dt.Seconds() {
		return false // implausible for a person on foot
	}
	moved := d > max(acc, old)/2
	if moved || acc <= callerBetterAccuracy*old {
		return true
	}
	// Only confirms the position: worth it after a while, unless operators
	// adjusted the grid or recorded clues since, which a re-seed would drop.
	return dt >= callerRefollowMax && !sm.GetAdjusted()
}

// followCaller collapses an incident's grid to a caller's new last known
// position when the plan follows caller fixes (an incident without a plan
// gets one). The fix is stored already; this is derived, so failures are
// logged and counted, never returned.
func (s *Service) followCaller(ctx context.Context, inc *sarv1.Incident, participantID string, f *sarv1.LocationFix) {
	acc := f.GetHorizontalAccuracyM()
	if !finitePos(acc) || acc > CallerFixMaxAccuracyM {
		return
	}
	warn := func(msg string, err error) {
		s.met.GridErrors.Inc()
		s.log.Warn(msg, "incident", inc.GetId(), "participant", participantID, "err", err)
	}
	for attempt := 0; attempt < gridWriteTries; attempt++ {
		meta, err := s.st.GridMeta(ctx, inc.GetId())
		has := err == nil
		switch {
		case sar.KindOf(err) == sar.KindNotFound:
		case err != nil:
			warn("caller fix not applied to the search grid", err)
			return
		case !callerCollapseDue(meta.Summary, f):
			return
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
			warn("caller fix not applied to the search grid", err)
			return
		}
		// Searches made before the fix do not count against it: the disk's
		// cells start with no coverage (their POD then shows the searches
		// after the fix only), so the posterior is the disk itself.
		prior := make(map[uint64]float64, len(g.Cells))
		for _, c := range g.Cells {
			prior[c.ID] = c.POA
		}
		sm := &sarv1.SearchGridSummary{IncidentId: inc.GetId(), Resolution: int32(res), CellCount: int32(len(g.Cells)),
			Origin: &sarv1.LatLng{Lat: f.GetLat(), Lng: f.GetLng()}, OriginAccuracyM: acc, Profile: "fix", SweepWidthsM: widths,
			MaxSpeedsMS: speeds, FollowCallerFixes: true, OriginParticipantId: participantID, OriginTime: f.GetTime()}
		w := sar.GridWrite{IncidentID: inc.GetId(), ExpectWriteVersion: meta.WriteVersion, ExpectVersion: meta.Version,
			Seed: true, ClearCoverage: true, Summary: staticSummary(sm), Prior: prior, RestOfWorld: g.RestOfWorld}
		out, err := s.writeSeed(ctx, w, sm, sarv1.SearchGridChange_SEARCH_GRID_CHANGE_CALLER_FIX, 1) // no coverage in the disk: z = 1
		if errors.Is(err, sar.ErrGridConflict) {
			continue
		}
		if err != nil {
			if sar.KindOf(err) != sar.KindFailedPrecondition { // closed meanwhile
				warn("caller fix not applied to the search grid", err)
			}
			return
		}
		s.log.Info("search grid collapsed to a caller's fix", "incident", inc.GetId(), "participant", participantID,
			"accuracy_m", acc, "cells", len(g.Cells), "version", out.GetVersion())
		return
	}
	warn("caller fix not applied to the search grid", sar.ErrGridConflict)
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

// Close stops the background work of the service (trailing grid events).
func (s *Service) Close() { s.trailing.close() }
