// Package geo holds everything spatial and pure: H3 bucketing, distances,
// search areas and probabilities. It does no I/O; callers store its results.
package geo

import (
	"errors"
	"fmt"
	"math"
	"sync"

	"github.com/uber/h3-go/v4"
)

// DefaultResolution is the H3 resolution of a search cell (about 0.1 km²).
const DefaultResolution = 9

// ErrInvalidPoint is returned for coordinates that are not a place on Earth.
var ErrInvalidPoint = errors.New("geo: invalid point")

// ErrInvalidResolution is returned for an H3 resolution outside 0..15.
var ErrInvalidResolution = errors.New("geo: invalid resolution")

// ValidPoint reports whether lat/lng are finite and within WGS84 ranges.
func ValidPoint(lat, lng float64) bool {
	return !math.IsNaN(lat) && !math.IsNaN(lng) &&
		lat >= -90 && lat <= 90 && lng >= -180 && lng <= 180
}

// ValidResolution reports whether res is an H3 resolution.
func ValidResolution(res int) bool { return res >= 0 && res <= 15 }

// CellAt returns the H3 cell at resolution res that contains the point.
func CellAt(lat, lng float64, res int) (uint64, error) {
	if !ValidPoint(lat, lng) {
		return 0, fmt.Errorf("%w: lat=%v lng=%v", ErrInvalidPoint, lat, lng)
	}
	if !ValidResolution(res) {
		return 0, fmt.Errorf("%w: %d", ErrInvalidResolution, res)
	}
	c, err := h3.LatLngToCell(h3.LatLng{Lat: lat, Lng: lng}, res)
	if err != nil {
		return 0, fmt.Errorf("geo: cell of %v,%v: %w", lat, lng, err)
	}
	return uint64(c), nil
}

// CellString formats a cell the way H3 tools print it (lowercase hex).
func CellString(c uint64) string { return h3.Cell(c).String() }

// The exact area of an H3 cell costs a cgo call and a spherical polygon
// sum (~80 µs); grids are rebuilt from stored weights on every read, with
// the same cells each time. Areas never change, so they are memoised: a
// bounded map (dropped whole when full: an entry is 16 bytes, so the bound
// is about 32 MiB) behind a read-mostly lock.
const maxMemoAreas = 1 << 21

var areaMemo = struct {
	sync.RWMutex
	m map[h3.Cell]float64
}{m: map[h3.Cell]float64{}}

// cellAreaM2 returns the exact area of a valid cell (the caller checked
// it), memoised.
func cellAreaM2(c h3.Cell) (float64, error) {
	areaMemo.RLock()
	a, ok := areaMemo.m[c]
	areaMemo.RUnlock()
	if ok {
		return a, nil
	}
	a, err := h3.CellAreaM2(c)
	if err != nil || !(a > 0) {
		return a, err
	}
	areaMemo.Lock()
	if len(areaMemo.m) >= maxMemoAreas {
		areaMemo.m = map[h3.Cell]float64{}
	}
	areaMemo.m[c] = a
	areaMemo.Unlock()
	return a, nil
}

// knownCell reports whether c's area is memoised, which it only is for a
// valid cell.
func knownCell(c h3.Cell) bool {
	areaMemo.RLock()
	_, ok := areaMemo.m[c]
	areaMemo.RUnlock()
	return ok
}
