package geo

import "math"

// EarthRadiusM is the mean Earth radius in metres that H3 itself uses, so
// that distances here and cell areas from H3 agree.
const EarthRadiusM = 6371007.180918475

const degToRad = math.Pi / 180

// DistanceM returns the great-circle (haversine) distance in metres between
// two points given in degrees.
func DistanceM(lat1, lng1, lat2, lng2 float64) float64 {
	p1, p2 := lat1*degToRad, lat2*degToRad
	dp := p2 - p1
	dl := (lng2 - lng1) * degToRad
	s1, s2 := math.Sin(dp/2), math.Sin(dl/2)
	h := s1*s1 + math.Cos(p1)*math.Cos(p2)*s2*s2
	return 2 * EarthRadiusM * math.Asin(math.Sqrt(min(1, h)))
}

// wrapRad brings a longitude difference in radians into [-π, π].
func wrapRad(d float64) float64 {
	if d > math.Pi {
		d -= 2 * math.Pi
	} else if d < -math.Pi {
		d += 2 * math.Pi
	}
	return d
}

// wrapDeg brings a longitude in degrees into [-180, 180].
func wrapDeg(d float64) float64 {
	for d > 180 {
		d -= 360
	}
	for d < -180 {
		d += 360
	}
	return d
}

// azimuthal is an azimuthal equidistant projection centred on a point:
// distances and bearings from the centre are exact, which is what a radial
// distribution of distance from the IPP needs. x points east, y north,
// both in metres.
type azimuthal struct {
	lat0, lng0       float64 // radians
	sinLat0, cosLat0 float64
}

func newAzimuthal(latDeg, lngDeg float64) azimuthal {
	la, lo := latDeg*degToRad, lngDeg*degToRad
	return azimuthal{lat0: la, lng0: lo, sinLat0: math.Sin(la), cosLat0: math.Cos(la)}
}

// forward projects a point in degrees.
func (a azimuthal) forward(latDeg, lngDeg float64) (x, y float64) {
	la := latDeg * degToRad
	dl := wrapRad(lngDeg*degToRad - a.lng0)
	sinLa, cosLa := math.Sincos(la)
	sinDl, cosDl := math.Sincos(dl)
	cosC := a.sinLat0*sinLa + a.cosLat0*cosLa*cosDl
	cosC = max(-1, min(1, cosC))
	c := math.Acos(cosC)
	if c < 1e-12 {
		// Near the centre acos loses precision; the tangent plane is exact
		// to far below a millimetre there.
		return EarthRadiusM * cosLa * dl, EarthRadiusM * (la - a.lat0)
	}
	k := EarthRadiusM * c / math.Sin(c)
	return k * cosLa * sinDl, k * (a.cosLat0*sinLa - a.sinLat0*cosLa*cosDl)
}

// inverse returns the point in degrees at projected coordinates x, y.
func (a azimuthal) inverse(x, y float64) (latDeg, lngDeg float64) {
	rho := math.Hypot(x, y)
	if rho == 0 {
		return a.lat0 / degToRad, a.lng0 / degToRad
	}
	c := rho / EarthRadiusM
	sinC, cosC := math.Sincos(c)
	la := math.Asin(max(-1, min(1, cosC*a.sinLat0+y*sinC*a.cosLat0/rho)))
	lo := a.lng0 + math.Atan2(x*sinC, rho*a.cosLat0*cosC-y*a.sinLat0*sinC)
	return la / degToRad, wrapDeg(lo / degToRad)
}

// gnomonic is a gnomonic projection centred on a point: every great circle,
// so every track segment and every H3 cell edge, is a straight line in it,
// and the distance ρ from the centre maps back to the arc R·atan(ρ/R).
type gnomonic struct {
	lng0             float64 // radians
	sinLat0, cosLat0 float64
}

func newGnomonic(latDeg, lngDeg float64) gnomonic {
	la := latDeg * degToRad
	return gnomonic{lng0: lngDeg * degToRad, sinLat0: math.Sin(la), cosLat0: math.Cos(la)}
}

// forward projects a point in degrees; ok is false for a point 90° or more
// from the centre, which has no image.
func (g gnomonic) forward(latDeg, lngDeg float64) (x, y float64, ok bool) {
	sinLa, cosLa := math.Sincos(latDeg * degToRad)
	sinDl, cosDl := math.Sincos(wrapRad(lngDeg*degToRad - g.lng0))
	cosC := g.sinLat0*sinLa + g.cosLat0*cosLa*cosDl
	if cosC <= 1e-9 {
		return 0, 0, false
	}
	k := EarthRadiusM / cosC
	return k * cosLa * sinDl, k * (g.cosLat0*sinLa - g.sinLat0*cosLa*cosDl), true
}

// arc returns the great-circle distance from the centre of a projected
// point at planar distance rho.
func (gnomonic) arc(rho float64) float64 { return EarthRadiusM * math.Atan(rho/EarthRadiusM) }

// finite reports whether every value is neither NaN nor ±Inf.
func finite(vs ...float64) bool {
	for _, v := range vs {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return false
		}
	}
	return true
}

// neumaier is a compensated running sum, so that the totals checked against
// 1 do not drift over tens of thousands of cells and thousands of updates.
type neumaier struct{ sum, c float64 }

func (n *neumaier) add(v float64) {
	t := n.sum + v
	if math.Abs(n.sum) >= math.Abs(v) {
		n.c += (n.sum - t) + v
	} else {
		n.c += (v - t) + n.sum
	}
	n.sum = t
}

func (n *neumaier) value() float64 { return n.sum + n.c }

// inverse returns the point in degrees at projected coordinates x, y.
func (g gnomonic) inverse(x, y float64) (latDeg, lngDeg float64) {
	rho := math.Hypot(x, y)
	if rho == 0 {
		return math.Asin(g.sinLat0) / degToRad, g.lng0 / degToRad
	}
	c := math.Atan(rho / EarthRadiusM)
	sinC, cosC := math.Sincos(c)
	la := math.Asin(max(-1, min(1, cosC*g.sinLat0+y*sinC*g.cosLat0/rho)))
	lo := g.lng0 + math.Atan2(x*sinC, rho*g.cosLat0*cosC-y*g.sinLat0*sinC)
	return la / degToRad, wrapDeg(lo / degToRad)
}
