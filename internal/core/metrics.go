package core

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the domain's Prometheus metrics.
type Metrics struct {
	FixesStored    prometheus.Counter
	FixesDuplicate prometheus.Counter
	FixesRejected  *prometheus.CounterVec
	Batches        *prometheus.CounterVec
	IngestSeconds  prometheus.Histogram
	PublishErrors  prometheus.Counter
	GridErrors     prometheus.Counter
	Escalations    prometheus.Counter
	CallerFixes    *prometheus.CounterVec
	SearchWorkLag  prometheus.Histogram
}

// NewMetrics makes the metrics and registers them with reg (nil: not
// registered, for tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		FixesStored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sar_fixes_stored_total", Help: "Location fixes stored."}),
		FixesDuplicate: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sar_fixes_duplicate_total", Help: "Location fixes received again after being stored (retries)."}),
		FixesRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sar_fixes_rejected_total", Help: "Location fixes refused, by reason."}, []string{"reason"}),
		Batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sar_fix_batches_total", Help: "Fix batches handled, by outcome."}, []string{"outcome"}),
		IngestSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "sar_ingest_batch_seconds", Help: "Time to validate and store one fix batch.",
			Buckets: prometheus.ExponentialBuckets(0.0002, 2, 14)}),
		PublishErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sar_event_publish_errors_total", Help: "Live events that could not be handed to NATS."}),
		SearchWorkLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "sar_search_work_lag_seconds", Help: "Time from a batch's acknowledgement to the start of its search work (coverage, following a caller), per queue entry: its oldest unfinished batch.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
		GridErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sar_search_grid_update_errors_total", Help: "Fix batches whose search grid coverage update failed (the fixes are stored)."}),
		Escalations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sar_task_offers_lapsed_total", Help: "Task offers not answered in time and escalated (to another team, or to the console)."}),
		CallerFixes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sar_caller_fixes_total", Help: "Callers' live fixes considered for the search grid, by decision (first_fix, plan_superseded, moved, more_accurate, operator_plan_superseded collapse it; confirms, operator_plan_stands, implausible, too_soon, older, too_coarse, not_following do not)."},
			[]string{"decision"}),
	}
	if reg != nil {
		reg.MustRegister(m.FixesStored, m.FixesDuplicate, m.FixesRejected, m.Batches, m.IngestSeconds, m.PublishErrors, m.GridErrors, m.Escalations, m.CallerFixes, m.SearchWorkLag)
	}
	return m
}
