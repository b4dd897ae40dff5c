package geo

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/uber/h3-go/v4"
)

// signedArea2 is twice the signed area of a closed ring in (lng, lat):
// positive when counter-clockwise.
func signedArea2(r [][]float64) float64 {
	var a float64
	for i := 0; i+1 < len(r); i++ {
		a += r[i][0]*r[i+1][1] - r[i+1][0]*r[i][1]
	}
	return a
}

// checkRing checks a GeoJSON linear ring: at least 4 positions, closed,
// [lng, lat] near the IPP (so the order is not swapped), and the wanted
// orientation.
func checkRing(t *testing.T, where string, r [][]float64, ccw bool) {
	t.Helper()
	if len(r) < 4 {
		t.Fatalf("%s: ring of %d positions, want ≥ 4", where, len(r))
	}
	if r[0][0] != r[len(r)-1][0] || r[0][1] != r[len(r)-1][1] {
		t.Errorf("%s: ring not closed: %v … %v", where, r[0], r[len(r)-1])
	}
	for _, p := range r {
		if len(p) != 2 || math.Abs(p[0]-ippLng) > 1 || math.Abs(p[1]-ippLat) > 1 {
			t.Fatalf("%s: position %v, want [lng≈%v, lat≈%v]", where, p, ippLng, ippLat)
		}
	}
	if a := signedArea2(r); (a > 0) != ccw {
		t.Errorf("%s: signed area %v, want counter-clockwise = %v (RFC 7946)", where, a, ccw)
	}
}

func seededWithSegments(t *testing.T) (*Grid, []Segment) {
	t.Helper()
	g, err := Seed(ippLat, ippLng, mustProfile(t, Dementia, Temperate, Mountainous), WithResolution(8))
	if err != nil {
		t.Fatal(err)
	}
	segs, err := Segments(g, SegmentOptions{TargetAreaM2: 5e6})
	if err != nil {
		t.Fatal(err)
	}
	return g, segs
}

func TestGeoJSONValid(t *testing.T) {
	g, segs := seededWithSegments(t)
	out, err := GeoJSON(g, segs)
	if err != nil {
		t.Fatal(err)
	}
	var fc struct {
		Type        string  `json:"type"`
		RestOfWorld float64 `json:"rest_of_world"`
		Features    []struct {
			Type     string `json:"type"`
			ID       string `json:"id"`
			Geometry struct {
				Type        string          `json:"type"`
				Coordinates json.RawMessage `json:"coordinates"`
			} `json:"geometry"`
			Properties map[string]any `json:"properties"`
		} `json:"features"`
	}
	if err := json.Unmarshal(out, &fc); err != nil {
		t.Fatalf("json.Unmarshal(GeoJSON) = %v", err)
	}
	if fc.Type != "FeatureCollection" {
		t.Errorf("type = %q, want FeatureCollection", fc.Type)
	}
	if got, want := len(fc.Features), len(g.Cells)+len(segs); got != want {
		t.Fatalf("features = %d, want %d cells + segments", got, want)
	}
	var cellPOA, segPOA float64
	for i, f := range fc.Features {
		where := "feature " + strconv.Itoa(i) + " " + f.ID
		if f.Type != "Feature" {
			t.Errorf("%s: type %q", where, f.Type)
		}
		for _, k := range []string{"kind", "poa", "pod", "coverage", "density_per_km2"} {
			if _, ok := f.Properties[k]; !ok {
				t.Errorf("%s: no property %q", where, k)
			}
		}
		switch f.Geometry.Type {
		case "Polygon":
			var rings [][][]float64
			if err := json.Unmarshal(f.Geometry.Coordinates, &rings); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			checkRing(t, where, rings[0], true)
			if f.Properties["kind"] != "cell" || f.Properties["cell"] != f.ID {
				t.Errorf("%s: properties %v", where, f.Properties)
			}
			cellPOA += f.Properties["poa"].(float64)
		case "MultiPolygon":
			var polys [][][][]float64
			if err := json.Unmarshal(f.Geometry.Coordinates, &polys); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			for _, p := range polys {
				checkRing(t, where+" outer", p[0], true)
				for _, h := range p[1:] {
					checkRing(t, where+" hole", h, false)
				}
			}
			segPOA += f.Properties["poa"].(float64)
		default:
			t.Errorf("%s: geometry %q", where, f.Geometry.Type)
		}
	}
	for name, got := range map[string]float64{"cells": cellPOA, "segments": segPOA} {
		if want := 1 - fc.RestOfWorld; math.Abs(got-want) > 1e-9 {
			t.Errorf("Σ poa of %s = %v, want 1 − rest_of_world = %v", name, got, want)
		}
	}
}

func TestKMLValid(t *testing.T) {
	g, segs := seededWithSegments(t)
	out, err := KML(g, segs, "Incident <42> & co")
	if err != nil {
		t.Fatal(err)
	}
	type ring struct {
		Coords string `xml:"LinearRing>coordinates"`
	}
	type poly struct {
		Outer ring   `xml:"outerBoundaryIs"`
		Inner []ring `xml:"innerBoundaryIs"`
	}
	var doc struct {
		XMLName  xml.Name
		Document struct {
			Name    string `xml:"name"`
			Folders []struct {
				Name       string `xml:"name"`
				Placemarks []struct {
					Name string `xml:"name"`
					Data []struct {
						Name  string `xml:"name,attr"`
						Value string `xml:"value"`
					} `xml:"ExtendedData>Data"`
					Polygon *poly  `xml:"Polygon"`
					Multi   []poly `xml:"MultiGeometry>Polygon"`
				} `xml:"Placemark"`
			} `xml:"Folder"`
		} `xml:"Document"`
	}
	if err := xml.Unmarshal(out, &doc); err != nil {
		t.Fatalf("xml.Unmarshal(KML) = %v", err)
	}
	if doc.XMLName.Space != "http://www.opengis.net/kml/2.2" || doc.XMLName.Local != "kml" {
		t.Errorf("root = %v, want kml in the KML 2.2 namespace", doc.XMLName)
	}
	if doc.Document.Name != "Incident <42> & co" {
		t.Errorf("name = %q, want it escaped and read back", doc.Document.Name)
	}
	if len(doc.Document.Folders) != 2 || len(doc.Document.Folders[0].Placemarks) != len(g.Cells) || len(doc.Document.Folders[1].Placemarks) != len(segs) {
		t.Fatalf("folders/placemarks do not match %d cells and %d segments", len(g.Cells), len(segs))
	}
	parse := func(where, s string) [][]float64 {
		var r [][]float64
		for _, tup := range strings.Fields(s) {
			parts := strings.Split(tup, ",")
			if len(parts) != 2 {
				t.Fatalf("%s: coordinate tuple %q", where, tup)
			}
			lng, err1 := strconv.ParseFloat(parts[0], 64)
			lat, err2 := strconv.ParseFloat(parts[1], 64)
			if err1 != nil || err2 != nil {
				t.Fatalf("%s: coordinate tuple %q", where, tup)
			}
			r = append(r, []float64{lng, lat})
		}
		return r
	}
	var poa float64
	for _, pm := range doc.Document.Folders[0].Placemarks {
		if pm.Polygon == nil {
			t.Fatalf("cell %s: no Polygon", pm.Name)
		}
		checkRing(t, pm.Name, parse(pm.Name, pm.Polygon.Outer.Coords), true)
		for _, d := range pm.Data {
			if d.Name == "poa" {
				v, _ := strconv.ParseFloat(d.Value, 64)
				poa += v
			}
		}
	}
	if want := 1 - g.RestOfWorld; math.Abs(poa-want) > 1e-4 {
		t.Errorf("Σ poa in KML = %v, want %v (6 significant digits)", poa, want)
	}
	for _, pm := range doc.Document.Folders[1].Placemarks {
		if len(pm.Multi) == 0 {
			t.Fatalf("%s: no polygons", pm.Name)
		}
		for _, p := range pm.Multi {
			checkRing(t, pm.Name, parse(pm.Name, p.Outer.Coords), true)
			for _, h := range p.Inner {
				checkRing(t, pm.Name+" hole", parse(pm.Name, h.Coords), false)
			}
		}
	}
}

func TestExportRejectsEmpty(t *testing.T) {
	if _, err := GeoJSON(&Grid{}, nil); !errors.Is(err, ErrEmptyGrid) {
		t.Errorf("GeoJSON(empty) error = %v, want %v", err, ErrEmptyGrid)
	}
	if _, err := KML(&Grid{}, nil, ""); !errors.Is(err, ErrEmptyGrid) {
		t.Errorf("KML(empty) error = %v, want %v", err, ErrEmptyGrid)
	}
}

// A ring of six cells around an empty one: the segment's outline has a
// hole, which must run clockwise in GeoJSON and get its own
// innerBoundaryIs in KML.
func TestExportHole(t *testing.T) {
	a, _, _ := threeCells(t)
	ring, err := h3.GridRing(h3.Cell(a), 1)
	if err != nil {
		t.Fatal(err)
	}
	poa := map[uint64]float64{}
	var cells []uint64
	for _, c := range ring {
		poa[uint64(c)] = 1.0 / 6
		cells = append(cells, uint64(c))
	}
	slices.Sort(cells)
	g := mustGrid(t, poa, 0)
	seg := []Segment{{ID: 1, Cells: cells, AreaM2: 6e5, POA: 1, Lat: ippLat, Lng: ippLng}}
	out, err := GeoJSON(g, seg)
	if err != nil {
		t.Fatal(err)
	}
	var fc struct {
		Features []struct {
			Geometry struct {
				Type        string          `json:"type"`
				Coordinates json.RawMessage `json:"coordinates"`
			} `json:"geometry"`
		} `json:"features"`
	}
	if err := json.Unmarshal(out, &fc); err != nil {
		t.Fatal(err)
	}
	last := fc.Features[len(fc.Features)-1]
	var polys [][][][]float64
	if err := json.Unmarshal(last.Geometry.Coordinates, &polys); err != nil {
		t.Fatal(err)
	}
	if len(polys) != 1 || len(polys[0]) != 2 {
		t.Fatalf("ring segment outline = %d polygons, %d rings; want 1 polygon with 1 hole", len(polys), len(polys[0]))
	}
	checkRing(t, "outer", polys[0][0], true)
	checkRing(t, "hole", polys[0][1], false)
	k, err := KML(g, seg, "hole")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(k), "<innerBoundaryIs>"); n != 1 {
		t.Errorf("KML innerBoundaryIs elements = %d, want 1", n)
	}
}
