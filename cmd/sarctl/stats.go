package main

import (
	"math"
	"slices"
)

// percentile returns the p-th percentile (0 < p <= 100) of sorted samples
// by the nearest-rank method: the smallest sample such that at least p % of
// the samples are at or below it. p <= 0 gives the minimum; no samples
// give 0.
func percentile(sorted []float64, p float64) float64 {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	if p <= 0 {
		return sorted[0]
	}
	// p*n/100 is exact for whole p; the epsilon absorbs rounding of
	// fractional p (99.9 % of 1000 samples is rank 999, not 1000).
	rank := int(math.Ceil(p*float64(n)/100 - 1e-9))
	return sorted[min(max(rank, 1), n)-1]
}

// percentiles sorts a copy of samples and returns the given percentiles.
func percentiles(samples []float64, ps ...float64) []float64 {
	s := slices.Clone(samples)
	slices.Sort(s)
	out := make([]float64, len(ps))
	for i, p := range ps {
		out[i] = percentile(s, p)
	}
	return out
}

// round3 rounds to three decimals for reports.
func round3(v float64) float64 { return math.Round(v*1000) / 1000 }
