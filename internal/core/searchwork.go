package core

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/geo"
	"github.com/mountain-sar/sar/internal/sar"
)

// Search work runs after the acknowledgement. A batch is acknowledged once
// the ingest script stored it; the same atomic run queues the work it
// makes for the search grid (a rescuer's coverage, a caller's moved
// position) in the store (see internal/store/searchwork.go). This
// replica's worker then does the incident's queued work with its own
// context and timeout, never the request's: a device that goes away after
// its ack loses nothing, and a batch costs the device one round trip to
// Redis. The acknowledged fixes are the record: the worker reads the
// rescuer's track since its coverage checkpoint, however many batches that
// covers (a worker behind its devices credits many batches at once), and
// a replica that dies leaves its entries queued, where any replica's sweep
// (RunSearchWork) finds them once they are stale and does them.
const (
	// workTimeout bounds one pass over an incident's queue.
	workTimeout = 30 * time.Second
	// workParallel is how many participants of one incident are worked on
	// at once by one replica.
	workParallel = 4
	// coverReadFixes is the most fixes one coverage step reads; a longer
	// backlog (a phone back after hours) takes several steps.
	coverReadFixes = 2000
	// workRounds bounds the passes over one incident's queue per kick.
	workRounds = 1000
	// workDelay is how long a kicked worker waits before a pass, so that
	// the batches arriving meanwhile share it.
	workDelay = 100 * time.Millisecond
)

// searchWorker runs the queued search work of the incidents this replica
// kicked (one goroutine per incident at a time).
type searchWorker struct {
	do      func(ctx context.Context, incidentID string) bool // one pass; false: stop (failure)
	delay   time.Duration                                     // before each pass (workDelay)
	mu      sync.Mutex
	running map[string]bool
	again   map[string]bool
	closed  bool
	wg      sync.WaitGroup
	// stop ends the passes running when the service closes: what they did
	// not finish stays queued in the store, for another replica's sweep.
	stop      chan struct{} // made by New
	closeOnce sync.Once
}

// kick makes sure the incident's queue is worked on after this call.
func (w *searchWorker) kick(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return // the queue keeps it: another replica's sweep, or our next start
	}
	if w.running[id] {
		w.again[id] = true
		return
	}
	if w.running == nil {
		w.running, w.again = map[string]bool{}, map[string]bool{}
	}
	w.running[id] = true
	w.wg.Add(1)
	go w.run(id)
}

func (w *searchWorker) run(id string) {
	defer w.wg.Done()
	for {
		// Wait a moment first, so that the batches of the incident's
		// devices that arrive meanwhile are credited in the same pass
		// (one read of each track, one coverage write per participant):
		// at a few batches a second per incident, crediting batch by
		// batch costs several times the CPU. The grid's events are
		// throttled to one per 5 s anyway.
		select {
		case <-time.After(w.delay):
		case <-w.stop:
		}
		select {
		case <-w.stop: // closing: the work stays queued
			w.mu.Lock()
			delete(w.running, id)
			delete(w.again, id)
			w.mu.Unlock()
			return
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), workTimeout)
		go func() {
			select {
			case <-w.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		ok := w.do(ctx, id)
		cancel()
		w.mu.Lock()
		if ok && w.again[id] && !w.closed {
			delete(w.again, id)
			w.mu.Unlock()
			continue
		}
		delete(w.running, id)
		delete(w.again, id)
		w.mu.Unlock()
		return
	}
}

// close stops taking kicks, ends the passes running and waits for them.
func (w *searchWorker) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	w.closeOnce.Do(func() { close(w.stop) })
	w.wg.Wait()
}

// workIncident does an incident's queued search work, in rounds while
// entries are left that nobody renewed: an entry that batches renewed
// while it was worked on waits for the next pass (see coverWork). It
// returns false when the store failed (the entries stay queued).
func (s *Service) workIncident(ctx context.Context, id string) bool {
	worked := map[string]bool{} // the entries (Member) worked on in this pass
	for round := 0; ; round++ {
		if round == workRounds {
			return true // the next kick or the sweep goes on: never a hot loop
		}
		all, err := s.st.SearchWork(ctx, id)
		if err != nil {
			s.workFailed(id, "", err)
			return false
		}
		var items []sar.WorkItem
		for _, it := range all {
			if !worked[it.Member] {
				worked[it.Member] = true
				items = append(items, it)
			}
		}
		if len(items) == 0 {
			return true // what is left was renewed meanwhile: its kick brings the next pass
		}
		var inc *sarv1.Incident
		for _, it := range items {
			if it.Kind == sar.WorkFollow && inc == nil {
				if inc, err = s.incident(ctx, id); err != nil {
					s.workFailed(id, "", err)
					return false
				}
			}
		}
		var mu sync.Mutex
		failed := false
		sem := make(chan struct{}, workParallel)
		var wg sync.WaitGroup
		for _, it := range items {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				var err error
				if it.Kind == sar.WorkFollow {
					err = s.followWork(ctx, inc, it.ParticipantID)
				} else {
					err = s.coverWork(ctx, id, it.ParticipantID)
				}
				if err != nil {
					s.workFailed(id, it.ParticipantID, err)
					mu.Lock()
					failed = true
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if failed {
			return false
		}
	}
}

func (s *Service) workFailed(id, participantID string, err error) {
	if errors.Is(err, context.Canceled) {
		return // the service is closing: the work stays queued, nothing failed
	}
	s.met.GridErrors.Inc()
	s.log.Warn("search work failed; it stays queued", "incident", id, "participant", participantID, "err", err)
}

// RunSearchWork sweeps, every interval until ctx ends, for queued search
// work that no replica progressed on for Config.WorkStaleAfter (since its
// oldest unfinished batch, or since the last progress on it: its replica
// died, or the store was down) and does it, backing off while the store
// fails.
func (s *Service) RunSearchWork(ctx context.Context, every time.Duration) {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval, bo.MaxInterval = every, 10*every
	wait := every
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		ids, err := s.st.StaleWork(ctx, s.now().Add(-cmp.Or(s.cfg.WorkStaleAfter, 15*time.Second)).UnixMilli())
		if err != nil && ctx.Err() == nil {
			s.log.Warn("search work sweep failed; retrying", "err", err)
			wait = bo.NextBackOff()
			continue
		}
		for _, id := range ids {
			s.work.kick(id)
		}
		bo.Reset()
		wait = every
	}
}

// coverWork credits a rescuer's queued fixes to the incident's search grid:
// the tracker (its state kept per participant) turns the track since the
// checkpoint into swept length per cell, the sweep width into coverage,
// and the store adds it, moves the checkpoint and ends the queue entry in
// one run (then a second run adds the change of the grid's total, see
// store.AddCoverage). The coverage is compare-and-set against the tracker
// state read, so a step another process made meanwhile is never applied
// twice: the state is read again. A step that cannot be computed (a
// corrupt tracker state, a fix the tracker refuses) moves the checkpoint
// without coverage, with a warning, so that the queue never jams.
func (s *Service) coverWork(ctx context.Context, id, pid string) error {
	member := sar.WorkMember(sar.WorkCoverage, pid)
	for step := 0; ; step++ {
		cw, err := s.st.CoverWork(ctx, id, pid, coverReadFixes)
		if err != nil {
			return err
		}
		if !cw.Queued { // done by another process (or a stray time entry, dropped)
			_, err := s.st.WorkDone(ctx, id, member, "", s.now().UnixMilli())
			return err
		}
		if step == 0 && cw.SinceMs > 0 {
			s.met.SearchWorkLag.Observe(max(0, s.now().Sub(time.UnixMilli(cw.SinceMs)).Seconds()))
		}
		if !cw.Searcher.HasGrid { // closed, or the plan is gone: nothing to credit
			_, err := s.st.WorkDone(ctx, id, member, cw.Gen, s.now().UnixMilli())
			return err
		}
		gen := cw.Gen
		if len(cw.Fixes) == coverReadFixes {
			gen = "" // more of the track to read: the entry stays
		}
		args, warnErr := s.coverage(cw, pid)
		if warnErr != nil {
			s.met.GridErrors.Inc()
			s.log.Warn("search grid coverage skipped for a part of a track", "incident", id, "participant", pid, "err", warnErr)
		}
		args.IncidentID, args.ParticipantID, args.Member, args.Gen = id, pid, member, gen
		args.EventDelta, args.EventEveryMs, args.NowMs = gridEventDelta, gridEventEvery.Milliseconds(), s.now().UnixMilli()
		res, err := s.st.AddCoverage(ctx, args)
		if err != nil {
			return err
		}
		if res.NoGrid {
			_, err := s.st.WorkDone(ctx, id, member, cw.Gen, s.now().UnixMilli())
			return err
		}
		if res.TrackerStale {
			continue // another process credited a step meanwhile: read again
		}
		if res.Changed > 0 { // first, so that a failure below does not skip it
			s.trailing.schedule(id, gridEventEvery)
		}
		if res.EventDue {
			sm := summary(cw.Searcher.Meta, res.Version, -1, res.RestOfWorld, res.POS)
			ev := s.gridEvent(id, sarv1.SearchGridChange_SEARCH_GRID_CHANGE_COVERAGE, sm, res.Changed, "")
			if err := s.st.PutEvent(ctx, ev); err != nil {
				return err
			}
			s.deliver(ctx, ev)
		}
		if res.Done || ctx.Err() != nil {
			return ctx.Err()
		}
		if gen != "" {
			// The whole track since the checkpoint is credited, but
			// batches queued meanwhile renewed the entry: the next pass
			// (after workDelay) credits them together, instead of a
			// step here for every batch or two as they arrive. Their
			// kicks bring that pass, but a batch whose reply was lost
			// (stored, then resent as duplicates) kicks nobody: so
			// this worker asks for it too.
			s.work.kick(id)
			return nil
		}
	}
}

// coverage computes one coverage step from what CoverWork read: the
// tracker state after the fixes, the coverage they add and the new
// checkpoint. On a failure it returns the arguments that only move the
// checkpoint past the fixes (no coverage, the state kept) and the error.
func (s *Service) coverage(cw sar.CoverWork, pid string) (sar.CoverageArgs, error) {
	sr := cw.Searcher
	a := sar.CoverageArgs{TrackerBefore: sr.Tracker, TrackerAfter: sr.Tracker, ThroughMs: cw.ThroughMs}
	if n := len(cw.Fixes); n > 0 {
		a.ThroughMs = cw.Fixes[n-1].TimeMs // oldest first
	}
	if len(cw.Fixes) == 0 {
		return a, nil
	}
	tr, err := geo.NewTracker(int(sr.Meta.Summary.GetResolution()), trackFilter(sr.Meta.Summary, sr.Type))
	if err != nil {
		return a, err
	}
	var reset error
	if sr.Tracker != "" {
		if err := json.Unmarshal([]byte(sr.Tracker), &tr.State); err != nil {
			tr.State, reset = geo.TrackState{}, errors.New("corrupt tracker state reset: "+err.Error())
		}
	}
	gf := make([]geo.Fix, 0, len(cw.Fixes))
	for _, f := range cw.Fixes {
		gf = append(gf, geo.Fix{Lat: f.Fix.GetLat(), Lng: f.Fix.GetLng(), AccuracyM: f.Fix.GetHorizontalAccuracyM(), Time: f.Fix.GetTime().AsTime()})
	}
	lengths := map[uint64]float64{}
	if _, err := tr.Add(gf, lengths); err != nil {
		return a, err
	}
	cov, err := geo.Coverage(lengths, sweepWidth(sr.Meta.Summary, sr.Type))
	if err != nil {
		return a, err
	}
	after, err := json.Marshal(tr.State)
	if err != nil {
		return a, err
	}
	a.TrackerAfter, a.Coverage = string(after), cov
	return a, reset
}

// followWork applies a caller's queued last known position to the grid
// (followCaller) and ends the queue entry. Following is decided on the
// position, not on the batches: a position applied twice (a replica died
// between the two steps) is only confirmed the second time.
func (s *Service) followWork(ctx context.Context, inc *sarv1.Incident, pid string) error {
	member := sar.WorkMember(sar.WorkFollow, pid)
	fw, err := s.st.FollowWork(ctx, inc.GetId(), pid)
	if err != nil {
		return err
	}
	if !fw.Queued { // done by another process (or a stray time entry, dropped)
		_, err := s.st.WorkDone(ctx, inc.GetId(), member, "", s.now().UnixMilli())
		return err
	}
	if fw.SinceMs > 0 {
		s.met.SearchWorkLag.Observe(max(0, s.now().Sub(time.UnixMilli(fw.SinceMs)).Seconds()))
	}
	if fw.Last != nil {
		if err := s.followCaller(ctx, inc, pid, fw.Last); err != nil {
			return err // the entry stays: the next pass (or the sweep) applies the position
		}
	}
	_, err = s.st.WorkDone(ctx, inc.GetId(), member, fw.Gen, s.now().UnixMilli())
	return err
}
