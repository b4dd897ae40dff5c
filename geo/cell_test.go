package geo

import (
	"errors"
	"math"
	"testing"
)

func TestCellAt(t *testing.T) {
	// Reference value from the H3 documentation's example (San Francisco).
	c, err := CellAt(37.775938728915946, -122.41795063018799, 9)
	if err != nil {
		t.Fatalf("CellAt: %v", err)
	}
	if got, want := CellString(c), "8928308280fffff"; got != want {
		t.Errorf("CellAt(37.78,-122.42,9) = %s, want %s", got, want)
	}
}

func TestCellAtRejects(t *testing.T) {
	for _, tc := range []struct {
		lat, lng float64
		res      int
		want     error
	}{
		{math.NaN(), 0, 9, ErrInvalidPoint},
		{0, math.Inf(1), 9, ErrInvalidPoint},
		{91, 0, 9, ErrInvalidPoint},
		{0, -181, 9, ErrInvalidPoint},
		{0, 0, 16, ErrInvalidResolution},
		{0, 0, -1, ErrInvalidResolution},
	} {
		if _, err := CellAt(tc.lat, tc.lng, tc.res); !errors.Is(err, tc.want) {
			t.Errorf("CellAt(%v,%v,%d) error = %v, want %v", tc.lat, tc.lng, tc.res, err, tc.want)
		}
	}
}
