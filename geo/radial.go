package geo

import (
	"fmt"
	"math"
)

// radial is a distribution of distance r (metres) from a centre, uniform in
// bearing: cdf is the probability of being within r, monotone, 0 at 0.
type radial interface {
	cdf(r float64) float64
	// inv returns the smallest r with cdf(r) >= p, for p below the
	// distribution's total.
	inv(p float64) float64
}

// piecewise is a radial CDF interpolated linearly in distance between knots
// (0, 0), (r₁, p₁) … (rₙ, pₙ) and held at pₙ beyond rₙ: the mass beyond the
// last knot is not part of the area.
type piecewise struct {
	r, p []float64 // r[0] = 0, p[0] = 0, both strictly increasing
}

// profileCDF returns the radial CDF of a profile, cut at the cumulative
// fraction cut (at most the last quartile's 95 %).
func profileCDF(pr Profile, cut float64) (piecewise, error) {
	if err := pr.Validate(); err != nil {
		return piecewise{}, err
	}
	last := ProfileFractions[len(ProfileFractions)-1]
	if !finite(cut) || cut <= 0 || cut > last+1e-12 {
		return piecewise{}, fmt.Errorf("%w: cut %v outside (0, %v]", ErrInvalidArgument, cut, last)
	}
	pw := piecewise{r: []float64{0}, p: []float64{0}}
	for i, km := range pr.DistanceKm {
		f := ProfileFractions[i]
		if f >= cut-1e-12 {
			// The cut falls in this ring: end the distribution there.
			prevR, prevP := pw.r[len(pw.r)-1], pw.p[len(pw.p)-1]
			rc := prevR + (km*1000-prevR)*(cut-prevP)/(f-prevP)
			pw.r = append(pw.r, rc)
			pw.p = append(pw.p, cut)
			break
		}
		pw.r = append(pw.r, km*1000)
		pw.p = append(pw.p, f)
	}
	return pw, nil
}

func (pw piecewise) cdf(r float64) float64 {
	if r <= 0 {
		return 0
	}
	n := len(pw.r)
	if r >= pw.r[n-1] {
		return pw.p[n-1]
	}
	i := 1
	for r > pw.r[i] {
		i++
	}
	r0, r1, p0, p1 := pw.r[i-1], pw.r[i], pw.p[i-1], pw.p[i]
	return p0 + (p1-p0)*(r-r0)/(r1-r0)
}

func (pw piecewise) inv(p float64) float64 {
	if p <= 0 {
		return 0
	}
	n := len(pw.p)
	if p >= pw.p[n-1] {
		return pw.r[n-1]
	}
	i := 1
	for p > pw.p[i] {
		i++
	}
	r0, r1, p0, p1 := pw.r[i-1], pw.r[i], pw.p[i-1], pw.p[i]
	return r0 + (r1-r0)*(p-p0)/(p1-p0)
}

// knots returns the radii where the density changes abruptly.
func (pw piecewise) knots() []float64 { return pw.r[1:] }

// gaussian is a circular 2-D normal distribution truncated at radius rc and
// scaled so its total is mass: cdf(r) = mass·(1−e^(−r²/2σ²))/(1−e^(−rc²/2σ²)).
type gaussian struct {
	sigma, rc, mass, norm float64
}

// sigmaFrom68 converts a horizontal accuracy given as the radius of 68 %
// confidence (the Android and W3C convention) to the per-axis σ of a
// circular normal: P(r ≤ a) = 1 − e^(−a²/2σ²) = 0.68.
func sigmaFrom68(a float64) float64 { return a / math.Sqrt(-2*math.Log(1-0.68)) }

func newGaussian(sigma, truncate, mass float64) gaussian {
	rc := sigma * math.Sqrt(-2*math.Log(1-truncate))
	return gaussian{sigma: sigma, rc: rc, mass: mass, norm: mass / truncate}
}

func (g gaussian) cdf(r float64) float64 {
	if r <= 0 {
		return 0
	}
	if r >= g.rc {
		return g.mass
	}
	return -math.Expm1(-r*r/(2*g.sigma*g.sigma)) * g.norm
}

func (g gaussian) inv(p float64) float64 {
	if p <= 0 {
		return 0
	}
	if p >= g.mass {
		return g.rc
	}
	return g.sigma * math.Sqrt(-2*math.Log1p(-p/g.norm))
}

// meanDensity returns the mean areal density (probability per m²) of a
// radial distribution over the annulus r±h, or over the disk of radius r+h
// when r ≤ h. Averaging over a small annulus instead of sampling the density
// at r keeps the mass right where the density is singular (at the centre of
// a distribution linear in distance) or steep (a tight Gaussian).
func meanDensity(d radial, r, h float64) float64 {
	if r <= h {
		o := r + h
		return d.cdf(o) / (math.Pi * o * o)
	}
	return (d.cdf(r+h) - d.cdf(r-h)) / (4 * math.Pi * r * h)
}
