package geo

import (
	"encoding/xml"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A minimal GPX 1.0/1.1 reader for the tests: track points with lat, lon
// and time. geo itself reads no files.
type gpxFile struct {
	Waypoints []gpxPoint `xml:"wpt"`
	Tracks    []struct {
		Segments []struct {
			Points []gpxPoint `xml:"trkpt"`
		} `xml:"trkseg"`
	} `xml:"trk"`
}

type gpxPoint struct {
	Lat  float64 `xml:"lat,attr"`
	Lon  float64 `xml:"lon,attr"`
	Time string  `xml:"time"`
	Sym  string  `xml:"sym"`
}

// mustReadGPX reads a tracklog from testdata/ and returns its track points
// as fixes, in file order, and its waypoints.
func mustReadGPX(tb testing.TB, name string) ([]Fix, []gpxPoint) {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatalf("tracklog %s: %v", name, err)
	}
	var f gpxFile
	if err := xml.Unmarshal(data, &f); err != nil {
		tb.Fatalf("parse %s: %v", name, err)
	}
	var fixes []Fix
	for _, tr := range f.Tracks {
		for _, s := range tr.Segments {
			for _, p := range s.Points {
				ts, err := time.Parse(time.RFC3339, p.Time)
				if err != nil {
					tb.Fatalf("%s: time %q: %v", name, p.Time, err)
				}
				fixes = append(fixes, Fix{Lat: p.Lat, Lng: p.Lon, Time: ts})
			}
		}
	}
	return fixes, f.Waypoints
}
