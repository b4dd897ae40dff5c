package sim

import (
	"errors"
	"fmt"
	"math"

	"github.com/uber/h3-go/v4"
)

// SweepRoute is a lawnmower route over a search segment (its H3 cells,
// as hex strings) for searcher lane of lanes walking abreast: the
// segment's footprint is cut into east-west lanes spacing metres apart,
// searcher i walks lanes i, i+lanes, i+2·lanes, ... turning at the
// segment's edge, and the route starts at the end nearest from. Each lane
// runs between the first and last points of its line that lie in the
// segment, so a lane crosses a notch of a concave segment rather than
// going around it.
func SweepRoute(f Frame, cells []string, spacing float64, lane, lanes int, from XY) ([]XY, error) {
	if len(cells) == 0 {
		return nil, errors.New("sim: segment without cells")
	}
	if !(spacing > 0) || lanes < 1 || lane < 0 || lane >= lanes {
		return nil, fmt.Errorf("sim: bad sweep: spacing %v, lane %d of %d", spacing, lane, lanes)
	}
	in := make(map[h3.Cell]bool, len(cells))
	res := -1
	minX, minY, maxX, maxY := math.Inf(1), math.Inf(1), math.Inf(-1), math.Inf(-1)
	for _, s := range cells {
		c := h3.CellFromString(s)
		if !c.IsValid() {
			return nil, fmt.Errorf("sim: %q is not an H3 cell", s)
		}
		if res >= 0 && c.Resolution() != res {
			return nil, fmt.Errorf("sim: cells of resolutions %d and %d", res, c.Resolution())
		}
		res = c.Resolution()
		in[c] = true
		b, err := c.Boundary()
		if err != nil {
			return nil, fmt.Errorf("sim: boundary of %s: %w", s, err)
		}
		for _, v := range b {
			p := f.XY(v.Lat, v.Lng)
			minX, minY, maxX, maxY = min(minX, p.X), min(minY, p.Y), max(maxX, p.X), max(maxY, p.Y)
		}
	}
	inside := func(p XY) bool {
		lat, lng := f.LatLng(p)
		c, err := h3.LatLngToCell(h3.LatLng{Lat: lat, Lng: lng}, res)
		return err == nil && in[c]
	}
	const probe = 5.0 // metres between the points tried along a lane
	var lines [][2]XY
	for k := 0; ; k++ {
		y := minY + spacing*(float64(k)+0.5)
		if y > maxY {
			break
		}
		if k%lanes != lane {
			continue
		}
		first, last := math.NaN(), math.NaN()
		for x := minX; x <= maxX; x += probe {
			if inside(XY{x, y}) {
				if math.IsNaN(first) {
					first = x
				}
				last = x
			}
		}
		if !math.IsNaN(first) {
			lines = append(lines, [2]XY{{first, y}, {last, y}})
		}
	}
	if len(lines) == 0 { // a sliver narrower than the spacing: walk through its middle
		c := XY{(minX + maxX) / 2, (minY + maxY) / 2}
		return []XY{c}, nil
	}
	if Dist(from, lines[len(lines)-1][0]) < Dist(from, lines[0][0]) { // start from the north
		for i, j := 0, len(lines)-1; i < j; i, j = i+1, j-1 {
			lines[i], lines[j] = lines[j], lines[i]
		}
	}
	east := Dist(from, lines[0][0]) <= Dist(from, lines[0][1]) // first lane walked eastwards
	route := make([]XY, 0, 2*len(lines))
	for _, l := range lines {
		if east {
			route = append(route, l[0], l[1])
		} else {
			route = append(route, l[1], l[0])
		}
		east = !east
	}
	return route, nil
}
