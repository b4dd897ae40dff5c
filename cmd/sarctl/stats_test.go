package main

import (
	"slices"
	"testing"
)

func TestPercentile(t *testing.T) {
	wiki := []float64{15, 20, 35, 40, 50}
	wiki2 := []float64{3, 6, 7, 8, 8, 10, 13, 15, 16, 20}
	thousand := make([]float64, 1000)
	for i := range thousand {
		thousand[i] = float64(i + 1)
	}
	tests := []struct {
		sorted []float64
		p      float64
		want   float64
	}{
		{nil, 50, 0},
		{[]float64{7}, 50, 7},
		{[]float64{7}, 99, 7},
		{wiki, 5, 15},
		{wiki, 30, 20},
		{wiki, 40, 20},
		{wiki, 50, 35},
		{wiki, 100, 50},
		{wiki2, 25, 7},
		{wiki2, 50, 8},
		{wiki2, 75, 15},
		{wiki2, 90, 16},
		{wiki2, 100, 20},
		{thousand, 0, 1},
		{thousand, 50, 500},
		{thousand, 99, 990},
		{thousand, 99.9, 999},
		{thousand, 100, 1000},
	}
	for _, tt := range tests {
		if got := percentile(tt.sorted, tt.p); got != tt.want {
			t.Errorf("percentile(%v, %v) = %v, want %v", short(tt.sorted), tt.p, got, tt.want)
		}
	}
}

func short(s []float64) []float64 {
	if len(s) > 10 {
		return s[:10]
	}
	return s
}

func TestPercentilesSortsACopy(t *testing.T) {
	samples := []float64{50, 15, 40, 20, 35}
	in := slices.Clone(samples)
	got := percentiles(samples, 50, 99, 100)
	if want := []float64{35, 50, 50}; !slices.Equal(got, want) {
		t.Errorf("percentiles(%v, 50, 99, 100) = %v, want %v", in, got, want)
	}
	if !slices.Equal(samples, in) {
		t.Errorf("percentiles changed its input to %v, want %v", samples, in)
	}
}
