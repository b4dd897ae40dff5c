package geo

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// BenchmarkSeedHiker95 seeds the 95 % area of a hiker in temperate
// mountains at resolution 9 (about 11,000 cells). Target: under 50 ms.
func BenchmarkSeedHiker95(b *testing.B) {
	p := mustProfile(b, Hiker, Temperate, Mountainous)
	var n int
	for b.Loop() {
		g, err := Seed(ippLat, ippLng, p)
		if err != nil {
			b.Fatal(err)
		}
		n = len(g.Cells)
	}
	b.ReportMetric(float64(n), "cells")
}

// BenchmarkSeedFix seeds a caller's fix with 50 m accuracy.
func BenchmarkSeedFix(b *testing.B) {
	for b.Loop() {
		if _, err := SeedFix(ippLat, ippLng, 50); err != nil {
			b.Fatal(err)
		}
	}
}

// loopWalk returns n fixes of a searcher walking at 1.2 m/s around a 1 km
// square loop starting at the IPP, every 5–10 s (deterministic), with 3 m
// of noise and an accuracy of 5 m.
func loopWalk(n int) []Fix {
	r := rand.New(rand.NewPCG(3, 4))
	t := time.Date(2025, 6, 1, 8, 0, 0, 0, time.UTC)
	var out []Fix
	s := 0.0
	for range n {
		dt := 5 + 5*r.Float64()
		t = t.Add(time.Duration(dt * float64(time.Second)))
		s += 1.2 * dt
		p := math.Mod(s, 4000)
		var x, y float64
		switch {
		case p < 1000:
			x, y = p, 0
		case p < 2000:
			x, y = 1000, p-1000
		case p < 3000:
			x, y = 3000-p, 1000
		default:
			x, y = 0, 4000-p
		}
		x += r.NormFloat64() * 3
		y += r.NormFloat64() * 3
		lat := ippLat + y/EarthRadiusM/degToRad
		lng := ippLng + x/(EarthRadiusM*math.Cos(ippLat*degToRad))/degToRad
		out = append(out, Fix{Lat: lat, Lng: lng, AccuracyM: 5, Time: t})
	}
	return out
}

// BenchmarkApplyTrackBatch10 is the per-batch geo work of the server for
// one searcher: 10 fixes 5–10 s apart → jitter filter and swept length per
// cell → coverage → Bayes update of the hiker grid (about 11,000 cells).
// Target: under 100 µs.
func BenchmarkApplyTrackBatch10(b *testing.B) {
	g := mustHikerGrid(b)
	fixes := loopWalk(100_000)
	tr := mustTracker(b)
	lengths := make(map[uint64]float64)
	i := 0
	for b.Loop() {
		if i+10 > len(fixes) {
			i = 0
			tr.State = TrackState{}
		}
		clear(lengths)
		if _, err := tr.Add(fixes[i:i+10], lengths); err != nil {
			b.Fatal(err)
		}
		i += 10
		cov, err := Coverage(lengths, 15)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := g.ApplySearch(cov); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTrackBatch10 is the track part alone: 10 fixes → swept length
// per cell.
func BenchmarkTrackBatch10(b *testing.B) {
	fixes := loopWalk(100_000)
	tr := mustTracker(b)
	lengths := make(map[uint64]float64)
	i := 0
	for b.Loop() {
		if i+10 > len(fixes) {
			i = 0
			tr.State = TrackState{}
		}
		clear(lengths)
		if _, err := tr.Add(fixes[i:i+10], lengths); err != nil {
			b.Fatal(err)
		}
		i += 10
	}
}

// BenchmarkApplySearch is the Bayes update of the hiker grid for effort in
// two cells.
func BenchmarkApplySearch(b *testing.B) {
	g := mustHikerGrid(b)
	cov := map[uint64]float64{g.Cells[100].ID: 0.01, g.Cells[101].ID: 0.02}
	for b.Loop() {
		if _, err := g.ApplySearch(cov); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSegments partitions the hiker grid into 2 km² segments.
func BenchmarkSegments(b *testing.B) {
	g := mustHikerGrid(b)
	for b.Loop() {
		if _, err := Segments(g, SegmentOptions{TargetAreaM2: 2e6}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNextTask picks a task among the hiker grid's 2 km² segments.
func BenchmarkNextTask(b *testing.B) {
	g := mustHikerGrid(b)
	segs, err := Segments(g, SegmentOptions{TargetAreaM2: 2e6})
	if err != nil {
		b.Fatal(err)
	}
	team := Team{Lat: ippLat + 0.05, Lng: ippLng, Searchers: 4, SweepWidthM: 15, SearchSpeedMS: 0.4, TravelSpeedMS: 0.8}
	for b.Loop() {
		if _, err := NextTask(g, segs, team, 1, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkApplyClue re-weights the hiker grid around a clue.
func BenchmarkApplyClue(b *testing.B) {
	g := mustHikerGrid(b)
	for b.Loop() {
		if err := g.ApplyClue(Clue{Lat: ippLat + 0.02, Lng: ippLng, RadiusM: 300, Weight: 1.01}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGeoJSON exports the hiker grid with its segments.
func BenchmarkGeoJSON(b *testing.B) {
	g := mustHikerGrid(b)
	segs, err := Segments(g, SegmentOptions{TargetAreaM2: 2e6})
	if err != nil {
		b.Fatal(err)
	}
	var n int
	for b.Loop() {
		out, err := GeoJSON(g, segs)
		if err != nil {
			b.Fatal(err)
		}
		n = len(out)
	}
	b.ReportMetric(float64(n)/1e6, "MB")
}
