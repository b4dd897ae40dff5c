package geo

import (
	"fmt"
	"math"
	"slices"
)

// SearchResult reports one unsuccessful search applied to a grid.
type SearchResult struct {
	// POS is the probability that this search would have found the subject
	// given the POA before it: Σᵢ POAᵢ·PODᵢ.
	POS float64
	// CumulativePOS is the probability of success of all the searches
	// applied to the grid so far, 1 − Π(1 − POSₖ).
	CumulativePOS float64
	// Cells is how many grid cells the search covered.
	Cells int
	// Outside is how many covered cells are not in the grid; their effort
	// changes nothing (the rest of world has POD 0).
	Outside int
}

// ApplySearch updates the grid after a search that did not find the
// subject, given the coverage of each searched cell (see Coverage). With
// PODᵢ = 1 − e^(−coverageᵢ), Bayes' rule gives
//
//	POA′ᵢ = POAᵢ(1 − PODᵢ) / Σⱼ POAⱼ(1 − PODⱼ)
//
// where the sum includes the rest of world with POD 0. Coverage also adds to
// each cell's cumulative Coverage, so its POD is the cumulative
// 1 − Π(1 − PODₖ). Applying two searches one after the other is the same as
// applying their summed coverage once. On error the grid is unchanged.
func (g *Grid) ApplySearch(coverage map[uint64]float64) (SearchResult, error) {
	var res SearchResult
	ids := make([]uint64, 0, len(coverage))
	for id, c := range coverage {
		if !finite(c) || c < 0 {
			return res, fmt.Errorf("%w: coverage %v of cell %x", ErrInvalidArgument, c, id)
		}
		ids = append(ids, id)
	}
	// Sorted, so that the sums and so the result do not depend on map order.
	slices.Sort(ids)
	idx := make([]int, 0, len(ids))
	var pos, miss, searched neumaier
	for _, id := range ids {
		i, ok := g.Index(id)
		if !ok {
			res.Outside++
			idx = append(idx, -1)
			continue
		}
		res.Cells++
		idx = append(idx, i)
		p := g.Cells[i].POA
		pod := PODFromCoverage(coverage[id])
		pos.add(p * pod)
		searched.add(p)
		miss.add(p * (1 - pod))
	}
	res.POS = min(1, max(0, pos.value()))
	// The grid sums to 1, so what is left is the unsearched mass plus what
	// the search missed. rescale corrects any rounding in this estimate.
	z := miss.value() + max(0, 1-searched.value())
	if !(z > 0) || !finite(z) {
		return res, fmt.Errorf("%w: nothing left after a search of POS %v", ErrDegenerate, res.POS)
	}
	for k, id := range ids {
		i := idx[k]
		if i < 0 {
			continue
		}
		c := coverage[id]
		g.Cells[i].POA = Undetected(g.Cells[i].POA, c)
		g.Cells[i].Coverage += c
	}
	g.rescale(1 / z)
	g.CumulativePOS = 1 - (1-g.CumulativePOS)*(1-res.POS)
	res.CumulativePOS = g.CumulativePOS
	return res, nil
}

// rescale multiplies every probability by k and, if the total then misses
// 1 by more than rounding, scales again by the measured total, so that
// error cannot accumulate over many updates.
func (g *Grid) rescale(k float64) {
	t := scaleAndSum(g.Cells, k)
	g.RestOfWorld *= k
	t += g.RestOfWorld
	if t > 0 && math.Abs(t-1) > 1e-13 {
		scaleAndSum(g.Cells, 1/t)
		g.RestOfWorld /= t
	}
}

// scaleAndSum multiplies each POA by k and returns their sum. Blocks of 64
// are summed in four independent lanes (fast: no loop-carried chain of
// compensation steps) and the block sums are added with compensation, so
// the total is accurate to about 1e-14 for any grid size.
func scaleAndSum(cells []GridCell, k float64) float64 {
	var total neumaier
	for len(cells) > 0 {
		n := min(64, len(cells))
		blk := cells[:n]
		var s0, s1, s2, s3 float64
		i := 0
		for ; i+4 <= n; i += 4 {
			blk[i].POA *= k
			blk[i+1].POA *= k
			blk[i+2].POA *= k
			blk[i+3].POA *= k
			s0 += blk[i].POA
			s1 += blk[i+1].POA
			s2 += blk[i+2].POA
			s3 += blk[i+3].POA
		}
		for ; i < n; i++ {
			blk[i].POA *= k
			s0 += blk[i].POA
		}
		total.add((s0 + s1) + (s2 + s3))
		cells = cells[n:]
	}
	return total.value()
}
