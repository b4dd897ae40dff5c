package geo

import (
	"fmt"
	"math"

	"github.com/uber/h3-go/v4"
)

// IndexResolution is the H3 resolution of the coarse index of where teams
// are (cells of about 1,770 km², edges of about 23 km): a county-sized
// cell, so that a query for 50 km reads a few dozen index keys.
const IndexResolution = 4

// MaxNearRadiusM bounds the radius of a CellsNear query (300 km).
const MaxNearRadiusM = 300_000.0

// IndexCell returns the index cell (IndexResolution) of a point.
func IndexCell(lat, lng float64) (uint64, error) { return CellAt(lat, lng, IndexResolution) }

// CellsNear returns index cells (IndexResolution) that together contain
// every point within radiusM of lat/lng, and some beyond: callers filter
// what they find by exact distance. The disk's radius in rings is taken
// from a lower bound of the distance between neighbouring cell centres
// (H3 edges vary by about a factor of two over the globe), so no cell
// that holds a point within the radius is left out.
func CellsNear(lat, lng, radiusM float64) ([]uint64, error) {
	if !(radiusM >= 0) || radiusM > MaxNearRadiusM {
		return nil, fmt.Errorf("%w: radius %v m (0 to %v)", ErrInvalidArgument, radiusM, MaxNearRadiusM)
	}
	c, err := IndexCell(lat, lng)
	if err != nil {
		return nil, err
	}
	edge, err := h3.HexagonEdgeLengthAvgM(IndexResolution)
	if err != nil {
		return nil, fmt.Errorf("geo: edge length: %w", err)
	}
	// Neighbouring centres are √3·edge apart on an average cell; the
	// smallest cells have edges about half the average.
	step := math.Sqrt(3) * edge * 0.5
	k := int(math.Ceil(radiusM/step)) + 1
	disk, err := h3.GridDisk(h3.Cell(c), k)
	if err != nil {
		return nil, fmt.Errorf("geo: grid disk: %w", err)
	}
	out := make([]uint64, 0, len(disk))
	for _, d := range disk {
		if d != 0 {
			out = append(out, uint64(d))
		}
	}
	return out, nil
}

// TravelDetour is how much longer than the straight line a journey to a
// search area is taken to be (roads and paths are not straight).
const TravelDetour = 1.3

// TravelSeconds estimates the time to cover a straight-line distance at a
// speed (m/s), with TravelDetour.
func TravelSeconds(distanceM, speedMS float64) float64 {
	if !(speedMS > 0) {
		return math.Inf(1)
	}
	return TravelDetour * distanceM / speedMS
}
