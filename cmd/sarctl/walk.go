package main

import "github.com/mountain-sar/sar/internal/sim"

// Where the simulated search happens: a valley in the Alps (Lauterbrunnen).
const (
	benchLat = sim.ValleyLat
	benchLng = sim.ValleyLng
)

// newWalker is one simulated searcher of the bench: a random walk at
// walking speed around the bench's centre, one second of walking per fix
// (see sim.Walker).
func newWalker(seed uint64) *sim.Walker {
	return sim.NewWalker(seed, sim.Frame{Lat: benchLat, Lng: benchLng})
}
