package geo

import (
	"errors"
	"testing"
)

func TestISRIDTable(t *testing.T) {
	// The design document's figures (Koester 2008, hiker, temperate
	// mountainous): 1.1 / 3.1 / 5.8 / 18.3 km.
	p, err := LookupProfile(Hiker, Temperate, Mountainous)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p.DistanceKm, [4]float64{1.1, 3.1, 5.8, 18.3}; got != want {
		t.Errorf("LookupProfile(hiker, temperate, mountainous) = %v, want %v", got, want)
	}
	seen := map[[3]string]bool{}
	for _, p := range Profiles() {
		if err := p.Validate(); err != nil {
			t.Errorf("profile %s/%s/%s: %v", p.Category, p.Ecoregion, p.Terrain, err)
		}
		k := [3]string{string(p.Category), string(p.Ecoregion), string(p.Terrain)}
		if seen[k] {
			t.Errorf("profile %v listed twice", k)
		}
		seen[k] = true
		if _, err := Seed(ippLat, ippLng, p, WithResolution(7)); err != nil {
			t.Errorf("Seed(%v) = %v", k, err)
		}
	}
	ps := Profiles()
	ps[0].DistanceKm[0] = 99
	if q, _ := LookupProfile(ps[0].Category, ps[0].Ecoregion, ps[0].Terrain); q.DistanceKm[0] == 99 {
		t.Error("Profiles() returned the table itself, not a copy")
	}
	if _, err := LookupProfile("climber", Temperate, Mountainous); !errors.Is(err, ErrUnknownProfile) {
		t.Errorf("LookupProfile(climber) error = %v, want %v (not shipped: one source only)", err, ErrUnknownProfile)
	}
}
