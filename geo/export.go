package geo

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/uber/h3-go/v4"
)

// Exports for map tools. Rings are closed, coordinates are longitude then
// latitude rounded to 1e-7° (about 1 cm), outer rings run counter-clockwise
// and holes clockwise (RFC 7946 §3.1.6). A cell crossing the antimeridian is
// kept whole with its longitudes shifted past ±180° rather than cut in two.

// ring converts a loop to closed [lng, lat] positions, oriented
// counter-clockwise when ccw is true and clockwise otherwise.
func ring(loop []h3.LatLng, ccw bool) [][2]float64 {
	out := make([][2]float64, 0, len(loop)+1)
	lng0 := 0.0
	for i, p := range loop {
		lng := p.Lng
		if i == 0 {
			lng0 = lng
		} else if lng-lng0 > 180 {
			lng -= 360
		} else if lng-lng0 < -180 {
			lng += 360
		}
		out = append(out, [2]float64{round7(lng), round7(p.Lat)})
	}
	if len(out) == 0 {
		return out
	}
	var a2 float64
	for i := range out {
		j := (i + 1) % len(out)
		a2 += out[i][0]*out[j][1] - out[j][0]*out[i][1]
	}
	if (a2 > 0) != ccw {
		slices.Reverse(out)
	}
	return append(out, out[0])
}

func round7(v float64) float64 { return math.Round(v*1e7) / 1e7 }

type gjCollection struct {
	Type          string      `json:"type"`
	Resolution    int         `json:"h3_resolution"`
	RestOfWorld   float64     `json:"rest_of_world"`
	CumulativePOS float64     `json:"cumulative_pos"`
	Features      []gjFeature `json:"features"`
}

type gjFeature struct {
	Type       string     `json:"type"`
	ID         string     `json:"id"`
	Geometry   gjGeometry `json:"geometry"`
	Properties gjProps    `json:"properties"`
}

type gjGeometry struct {
	Type        string `json:"type"`
	Coordinates any    `json:"coordinates"`
}

type gjProps struct {
	Kind          string  `json:"kind"`
	Cell          string  `json:"cell,omitempty"`
	Segment       int     `json:"segment,omitempty"`
	POA           float64 `json:"poa"`
	POD           float64 `json:"pod"`
	Coverage      float64 `json:"coverage"`
	DensityPerKm2 float64 `json:"density_per_km2"`
	AreaKm2       float64 `json:"area_km2"`
	Cells         int     `json:"cells,omitempty"`
}

// cellPolygon returns the closed counter-clockwise ring of a cell.
func cellPolygon(id uint64) ([][2]float64, error) {
	b, err := h3.CellToBoundary(h3.Cell(id))
	if err != nil {
		return nil, fmt.Errorf("%w: boundary of %x: %v", ErrInvalidCell, id, err)
	}
	return ring(b, true), nil
}

// segmentPolygons returns the outline of a segment's cells as polygons
// (outer ring then holes).
func segmentPolygons(cells []uint64) ([][][][2]float64, error) {
	hc := make([]h3.Cell, len(cells))
	for i, c := range cells {
		hc[i] = h3.Cell(c)
	}
	polys, err := h3.CellsToMultiPolygon(hc)
	if err != nil {
		return nil, fmt.Errorf("%w: outline of a segment: %v", ErrInvalidCell, err)
	}
	out := make([][][][2]float64, 0, len(polys))
	for _, p := range polys {
		rings := [][][2]float64{ring(p.GeoLoop, true)}
		for _, h := range p.Holes {
			rings = append(rings, ring(h, false))
		}
		out = append(out, rings)
	}
	return out, nil
}

// segmentStats returns the area-weighted mean POD and coverage of a
// segment's cells.
func segmentStats(g *Grid, s Segment) (pod, coverage float64) {
	var a float64
	for _, id := range s.Cells {
		if i, ok := g.Index(id); ok {
			c := g.Cells[i]
			pod += c.POD() * c.AreaM2
			coverage += c.Coverage * c.AreaM2
			a += c.AreaM2
		}
	}
	if a > 0 {
		pod, coverage = pod/a, coverage/a
	}
	return pod, coverage
}

// GeoJSON returns the grid, and the segments if any, as a GeoJSON
// FeatureCollection (RFC 7946): one Polygon feature per cell with
// properties kind "cell", cell (H3 index), poa, pod, coverage,
// density_per_km2, area_km2 and segment (its segment's ID, when segments
// are given), then one MultiPolygon feature per segment with kind
// "segment", segment, poa (from the grid as it is now), area-weighted pod
// and coverage, density_per_km2, area_km2 and cells. The collection
// carries h3_resolution, rest_of_world and cumulative_pos as foreign
// members.
func GeoJSON(g *Grid, segs []Segment) ([]byte, error) {
	if len(g.Cells) == 0 {
		return nil, ErrEmptyGrid
	}
	segOf := make(map[uint64]int)
	for _, s := range segs {
		for _, id := range s.Cells {
			segOf[id] = s.ID
		}
	}
	fc := gjCollection{Type: "FeatureCollection", Resolution: g.Resolution, RestOfWorld: g.RestOfWorld, CumulativePOS: g.CumulativePOS,
		Features: make([]gjFeature, 0, len(g.Cells)+len(segs))}
	for _, c := range g.Cells {
		r, err := cellPolygon(c.ID)
		if err != nil {
			return nil, err
		}
		fc.Features = append(fc.Features, gjFeature{
			Type: "Feature", ID: CellString(c.ID),
			Geometry: gjGeometry{Type: "Polygon", Coordinates: [][][2]float64{r}},
			Properties: gjProps{Kind: "cell", Cell: CellString(c.ID), Segment: segOf[c.ID], POA: c.POA, POD: c.POD(),
				Coverage: c.Coverage, DensityPerKm2: c.DensityPerKm2(), AreaKm2: c.AreaM2 / 1e6},
		})
	}
	for _, s := range segs {
		polys, err := segmentPolygons(s.Cells)
		if err != nil {
			return nil, err
		}
		poa := segmentPOA(g, s)
		pod, cov := segmentStats(g, s)
		fc.Features = append(fc.Features, gjFeature{
			Type: "Feature", ID: "segment-" + strconv.Itoa(s.ID),
			Geometry: gjGeometry{Type: "MultiPolygon", Coordinates: polys},
			Properties: gjProps{Kind: "segment", Segment: s.ID, POA: poa, POD: pod, Coverage: cov,
				DensityPerKm2: poa / (s.AreaM2 / 1e6), AreaKm2: s.AreaM2 / 1e6, Cells: len(s.Cells)},
		})
	}
	return json.Marshal(fc)
}

// KML 2.2 document structure.
type kmlDoc struct {
	XMLName  xml.Name  `xml:"http://www.opengis.net/kml/2.2 kml"`
	Document kmlInside `xml:"Document"`
}

type kmlInside struct {
	Name    string      `xml:"name"`
	Styles  []kmlStyle  `xml:"Style"`
	Folders []kmlFolder `xml:"Folder"`
}

type kmlStyle struct {
	ID       string `xml:"id,attr"`
	LineCol  string `xml:"LineStyle>color"`
	LineW    int    `xml:"LineStyle>width"`
	PolyCol  string `xml:"PolyStyle>color"`
	PolyFill int    `xml:"PolyStyle>fill"`
}

type kmlFolder struct {
	Name       string         `xml:"name"`
	Placemarks []kmlPlacemark `xml:"Placemark"`
}

type kmlPlacemark struct {
	Name     string       `xml:"name"`
	StyleURL string       `xml:"styleUrl"`
	Data     []kmlData    `xml:"ExtendedData>Data"`
	Polygon  *kmlPolygon  `xml:"Polygon,omitempty"`
	Multi    *kmlMultiGeo `xml:"MultiGeometry,omitempty"`
}

type kmlData struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value"`
}

type kmlMultiGeo struct {
	Polygons []kmlPolygon `xml:"Polygon"`
}

type kmlPolygon struct {
	Outer string        `xml:"outerBoundaryIs>LinearRing>coordinates"`
	Inner []kmlBoundary `xml:"innerBoundaryIs"`
}

// kmlBoundary is one inner boundary; each hole needs its own element.
type kmlBoundary struct {
	Coords string `xml:"LinearRing>coordinates"`
}

func kmlCoords(r [][2]float64) string {
	var b strings.Builder
	for i, p := range r {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.FormatFloat(p[0], 'f', -1, 64))
		b.WriteByte(',')
		b.WriteString(strconv.FormatFloat(p[1], 'f', -1, 64))
	}
	return b.String()
}

func kmlFloat(v float64) string { return strconv.FormatFloat(v, 'g', 6, 64) }

// kmlShades are the fill styles p0 (lowest density) … p4 (highest), from
// pale yellow to red, half transparent (KML colours are aabbggrr).
var kmlShades = []string{"7f9fffff", "7f66ccff", "7f3399ff", "7f0066ff", "7f0000cc"}

// KML returns the grid, and the segments if any, as a KML 2.2 document:
// a folder "Cells" with one Placemark per cell (Polygon; ExtendedData poa,
// pod, coverage, density_per_km2, segment) shaded by density quintile, and
// a folder "Segments" with one Placemark per segment (MultiGeometry of its
// outline polygons; ExtendedData poa, pod, coverage, density_per_km2,
// area_km2). name titles the document.
func KML(g *Grid, segs []Segment, name string) ([]byte, error) {
	if len(g.Cells) == 0 {
		return nil, ErrEmptyGrid
	}
	doc := kmlDoc{Document: kmlInside{Name: name}}
	for i, c := range kmlShades {
		doc.Document.Styles = append(doc.Document.Styles, kmlStyle{ID: "p" + strconv.Itoa(i), LineCol: "7f000000", LineW: 1, PolyCol: c, PolyFill: 1})
	}
	doc.Document.Styles = append(doc.Document.Styles, kmlStyle{ID: "segment", LineCol: "ffff0000", LineW: 3, PolyCol: "00000000", PolyFill: 0})
	// Density quintile thresholds.
	dens := make([]float64, len(g.Cells))
	for i, c := range g.Cells {
		dens[i] = c.DensityPerKm2()
	}
	sorted := slices.Clone(dens)
	slices.Sort(sorted)
	shade := func(d float64) int {
		k, _ := slices.BinarySearch(sorted, d)
		return min(len(kmlShades)-1, k*len(kmlShades)/len(sorted))
	}
	segOf := make(map[uint64]int)
	for _, s := range segs {
		for _, id := range s.Cells {
			segOf[id] = s.ID
		}
	}
	cells := kmlFolder{Name: "Cells", Placemarks: make([]kmlPlacemark, 0, len(g.Cells))}
	for i, c := range g.Cells {
		r, err := cellPolygon(c.ID)
		if err != nil {
			return nil, err
		}
		cells.Placemarks = append(cells.Placemarks, kmlPlacemark{
			Name: CellString(c.ID), StyleURL: "#p" + strconv.Itoa(shade(dens[i])),
			Data: []kmlData{{"poa", kmlFloat(c.POA)}, {"pod", kmlFloat(c.POD())}, {"coverage", kmlFloat(c.Coverage)},
				{"density_per_km2", kmlFloat(dens[i])}, {"segment", strconv.Itoa(segOf[c.ID])}},
			Polygon: &kmlPolygon{Outer: kmlCoords(r)},
		})
	}
	doc.Document.Folders = append(doc.Document.Folders, cells)
	if len(segs) > 0 {
		sf := kmlFolder{Name: "Segments"}
		for _, s := range segs {
			polys, err := segmentPolygons(s.Cells)
			if err != nil {
				return nil, err
			}
			mg := &kmlMultiGeo{}
			for _, p := range polys {
				kp := kmlPolygon{Outer: kmlCoords(p[0])}
				for _, h := range p[1:] {
					kp.Inner = append(kp.Inner, kmlBoundary{Coords: kmlCoords(h)})
				}
				mg.Polygons = append(mg.Polygons, kp)
			}
			poa := segmentPOA(g, s)
			pod, cov := segmentStats(g, s)
			sf.Placemarks = append(sf.Placemarks, kmlPlacemark{
				Name: "Segment " + strconv.Itoa(s.ID), StyleURL: "#segment",
				Data: []kmlData{{"poa", kmlFloat(poa)}, {"pod", kmlFloat(pod)}, {"coverage", kmlFloat(cov)},
					{"density_per_km2", kmlFloat(poa / (s.AreaM2 / 1e6))}, {"area_km2", kmlFloat(s.AreaM2 / 1e6)}},
				Multi: mg,
			})
		}
		doc.Document.Folders = append(doc.Document.Folders, sf)
	}
	out, err := xml.MarshalIndent(doc, "", " ")
	if err != nil {
		return nil, fmt.Errorf("geo: kml: %w", err)
	}
	return append([]byte(xml.Header), out...), nil
}
