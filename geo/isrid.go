package geo

import (
	"fmt"
	"slices"
	"strings"
)

// Category is a lost-person category of the International Search & Rescue
// Incident Database (ISRID), as used by Koester, "Lost Person Behavior"
// (2008).
type Category string

// The categories with published distance tables (see isridTable for which
// rows ship and from which sources).
const (
	Hiker                  Category = "hiker"
	Hunter                 Category = "hunter"
	Child1to3              Category = "child-1-3"
	Child4to6              Category = "child-4-6"
	Child7to9              Category = "child-7-9"
	Child10to12            Category = "child-10-12"
	Child13to15            Category = "child-13-15"
	Climber                Category = "climber"
	Dementia               Category = "dementia"
	Despondent             Category = "despondent"
	Gatherer               Category = "gatherer"
	MountainBiker          Category = "mountain-biker"
	Runner                 Category = "runner"
	SkierAlpine            Category = "skier-alpine"
	SkierNordic            Category = "skier-nordic"
	Snowboarder            Category = "snowboarder"
	Snowmobiler            Category = "snowmobiler"
	Angler                 Category = "angler"
	ATV                    Category = "atv"
	Autistic               Category = "autistic"
	Camper                 Category = "camper"
	HorsebackRider         Category = "horseback-rider"
	MentalIllness          Category = "mental-illness"
	IntellectualDisability Category = "intellectual-disability"
	SubstanceAbuse         Category = "substance-abuse"
)

// Categories without a table of their own: ChooseProfile answers them with
// the most similar category (similarCategory).
const (
	// Child is a child of unknown age.
	Child Category = "child"
	// Skier is a skier of unknown kind (alpine or nordic).
	Skier Category = "skier"
	// Other is a subject none of the categories describes.
	Other Category = "other"
)

// Ecoregion is the ISRID ecoregion domain of an incident.
type Ecoregion string

// Ecoregion domains. ISRID publishes temperate and dry rows (and urban
// ones, which this package does not ship); polar and tropical have none.
const (
	Temperate Ecoregion = "temperate"
	Dry       Ecoregion = "dry"
	Polar     Ecoregion = "polar"
	Tropical  Ecoregion = "tropical"
	// AllEcoregions labels a row the sources give once for every
	// ecoregion.
	AllEcoregions Ecoregion = "all"
)

// Terrain is the ISRID terrain type of an incident.
type Terrain string

// Terrain types.
const (
	Mountainous Terrain = "mountainous"
	Flat        Terrain = "flat"
	// AllTerrains labels a row the sources give once for every terrain of
	// its ecoregion.
	AllTerrains Terrain = "all"
)

// ProfileFractions are the cumulative shares of subjects found within
// Profile.DistanceKm[i] of the IPP.
var ProfileFractions = [4]float64{0.25, 0.50, 0.75, 0.95}

// Profile is a lost-person profile: the straight-line distances from the
// initial planning point (IPP) within which 25, 50, 75 and 95 % of the
// subjects of one category were found. Use ChooseProfile or LookupProfile
// for the published ISRID figures, or fill DistanceKm with local statistics.
type Profile struct {
	Category  Category
	Ecoregion Ecoregion
	Terrain   Terrain
	// DistanceKm are the 25, 50, 75 and 95 % distance quartiles in km; they
	// must be positive and strictly increasing.
	DistanceKm [4]float64
}

// Name is the profile as "category/ecoregion/terrain".
func (p Profile) Name() string {
	return string(p.Category) + "/" + string(p.Ecoregion) + "/" + string(p.Terrain)
}

// Validate checks that the distances are finite, positive and strictly
// increasing.
func (p Profile) Validate() error {
	prev := 0.0
	for i, d := range p.DistanceKm {
		if !finite(d) || d <= prev {
			return fmt.Errorf("%w: distance %d = %v km after %v km", ErrInvalidProfile, i, d, prev)
		}
		prev = d
	}
	return nil
}

// covers reports whether a table row applies to an ecoregion and terrain.
func (p Profile) covers(e Ecoregion, t Terrain) bool {
	return (p.Ecoregion == e || p.Ecoregion == AllEcoregions) && (p.Terrain == t || p.Terrain == AllTerrains)
}

// isridRow is one shipped row with the transcriptions that support it.
type isridRow struct {
	Profile
	// sources: P = a Python search-planning package's table (km), J = a
	// JavaScript lost-person-behaviour profile table (km), N = a Norwegian
	// SAR database seed (km, temperate), I = IGT4SAR's
	// IPP_EuclideanDistance2.py (miles; MapSAR_Ex ships the same file, so
	// it is the same source). docs/geo.md explains each row.
	sources string
}

func row(c Category, e Ecoregion, t Terrain, km [4]float64, sources string) isridRow {
	return isridRow{Profile{c, e, t, km}, sources}
}

// isridTable holds ISRID distance-from-IPP quartiles (km) from Robert J.
// Koester, "Lost Person Behavior: A Search and Rescue Guide on Where to Look
// for Land, Air and Water", dbS Productions, 2008 (International Search &
// Rescue Incident Database). The book itself was not at hand: every row is
// supported by at least two independent transcriptions of its tables
// (mile figures converted at 1.609344 km/mi agree with the km figures
// within the rounding of both prints, or 1 % on the 95 % ring), except the
// two rows marked "choice", where the sources conflict and docs/geo.md
// gives the reason for the figures used. A row labelled AllTerrains or
// AllEcoregions is one the sources give without that split.
var isridTable = []isridRow{
	row(Hiker, Temperate, Mountainous, [4]float64{1.1, 3.1, 5.8, 18.3}, "PJNI"),
	row(Hiker, Temperate, Flat, [4]float64{0.6, 1.8, 3.2, 9.9}, "PJI"),
	row(Hiker, Dry, Mountainous, [4]float64{1.6, 3.2, 6.5, 19.3}, "JI"),
	row(Hiker, Dry, Flat, [4]float64{1.3, 2.1, 6.6, 13.1}, "JI"),
	row(Hunter, Temperate, Mountainous, [4]float64{1.0, 2.1, 4.8, 17.2}, "PJNI"),
	row(Hunter, Temperate, Flat, [4]float64{0.6, 1.6, 3.1, 13.7}, "PJI"),
	row(Hunter, Dry, Mountainous, [4]float64{2.1, 4.8, 8.1, 22.2}, "JI"),
	row(Hunter, Dry, Flat, [4]float64{1.6, 3.1, 6.4, 11.3}, "JI"),
	row(Child1to3, Temperate, Mountainous, [4]float64{0.2, 0.3, 0.6, 4.5}, "PJN"),
	row(Child1to3, Temperate, Flat, [4]float64{0.2, 0.3, 1.0, 3.2}, "PJI"),
	row(Child1to3, Dry, AllTerrains, [4]float64{0.6, 1.3, 3.9, 9.0}, "JI"),
	row(Child4to6, Temperate, Mountainous, [4]float64{0.2, 0.8, 1.5, 3.7}, "PJNI"),
	row(Child4to6, Temperate, Flat, [4]float64{0.2, 0.6, 1.5, 6.6}, "PJI"),
	row(Child4to6, Dry, AllTerrains, [4]float64{0.6, 1.9, 3.2, 8.2}, "JI"),
	row(Child7to9, Temperate, Mountainous, [4]float64{0.8, 1.6, 3.2, 11.3}, "PJNI"),
	row(Child7to9, Temperate, Flat, [4]float64{0.2, 0.8, 2.0, 8.0}, "PJI"),
	row(Child7to9, Dry, Mountainous, [4]float64{0.4, 1.2, 3.2, 7.2}, "JI"),
	row(Child10to12, Temperate, Mountainous, [4]float64{0.8, 1.6, 3.2, 9.0}, "PJNI"),
	row(Child10to12, Temperate, Flat, [4]float64{0.4, 1.6, 4.8, 10.0}, "PJI"),
	row(Child10to12, Dry, Mountainous, [4]float64{0.8, 2.0, 7.2, 16.1}, "JI"),
	row(Child13to15, Temperate, Mountainous, [4]float64{0.8, 2.1, 4.8, 21.4}, "PJNI"),
	row(Child13to15, Temperate, Flat, [4]float64{0.6, 1.3, 3.2, 10.0}, "PJI"),
	row(Child13to15, Dry, Mountainous, [4]float64{2.4, 3.2, 4.8, 11.9}, "JI"),
	row(Climber, Temperate, AllTerrains, [4]float64{0.2, 1.6, 3.2, 14.7}, "JI"),
	row(Dementia, Temperate, Mountainous, [4]float64{0.3, 0.8, 1.9, 8.3}, "PJNI"),
	row(Dementia, Temperate, Flat, [4]float64{0.3, 1.0, 2.4, 12.8}, "PI"), // J: 0.8 at 50 %
	row(Dementia, Dry, Mountainous, [4]float64{1.0, 1.9, 3.1, 6.1}, "JI"),
	row(Dementia, Dry, Flat, [4]float64{0.5, 1.6, 3.6, 11.8}, "JI"),
	row(Despondent, Temperate, Mountainous, [4]float64{0.3, 1.1, 3.2, 21.6}, "PJNI"),
	row(Despondent, Temperate, Flat, [4]float64{0.3, 0.8, 2.3, 17.3}, "PJI"),
	row(Despondent, Dry, Mountainous, [4]float64{0.8, 1.6, 3.4, 18.0}, "JI"),
	row(Despondent, Dry, Flat, [4]float64{0.5, 1.9, 3.7, 20.7}, "JI"),
	row(Gatherer, Temperate, Mountainous, [4]float64{1.5, 3.2, 6.4, 12.9}, "PJI"),
	row(Gatherer, Dry, AllTerrains, [4]float64{1.6, 2.6, 5.8, 11.1}, "JI"),
	row(MountainBiker, Temperate, Mountainous, [4]float64{3.1, 4.0, 11.3, 25.0}, "PJI"),
	row(MountainBiker, Dry, AllTerrains, [4]float64{2.7, 6.4, 13.2, 29.1}, "I, choice"),
	row(Runner, Temperate, AllTerrains, [4]float64{1.4, 2.6, 3.4, 5.8}, "JI"),        // P prints the mile figures as km
	row(SkierAlpine, Temperate, Mountainous, [4]float64{1.1, 2.7, 4.8, 15.2}, "JNI"), // P prints the mile figures as km
	row(SkierNordic, Temperate, Mountainous, [4]float64{1.6, 3.5, 6.4, 19.6}, "PJNI"),
	row(SkierNordic, Dry, Mountainous, [4]float64{1.9, 4.3, 6.4, 19.5}, "JI"),
	row(Snowboarder, Temperate, Mountainous, [4]float64{1.6, 3.2, 6.2, 15.4}, "PJI"),
	row(Snowmobiler, Temperate, Mountainous, [4]float64{3.2, 6.4, 11.1, 16.1}, "PJI"),
	row(Snowmobiler, Temperate, Flat, [4]float64{1.3, 4.7, 41.1, 96.1}, "PI"), // J prints the mile figures as km
	row(Snowmobiler, Dry, Mountainous, [4]float64{1.6, 4.8, 14.0, 30.4}, "JI, choice"),
	row(Angler, Temperate, Mountainous, [4]float64{0.3, 1.5, 5.5, 9.9}, "PJI"),
	row(Angler, Temperate, Flat, [4]float64{0.8, 1.6, 3.9, 14.9}, "PJ"),
	row(Angler, Dry, AllTerrains, [4]float64{3.2, 9.7, 10.5, 13.0}, "JI"),
	row(ATV, Temperate, Mountainous, [4]float64{1.6, 3.2, 5.6, 8.0}, "PJI"),
	row(Autistic, Temperate, AllTerrains, [4]float64{0.6, 1.6, 3.7, 15.2}, "PJNI"),
	row(Camper, Temperate, Mountainous, [4]float64{0.2, 2.2, 3.0, 39.5}, "PJI"),
	row(Camper, Temperate, Flat, [4]float64{0.2, 1.1, 3.2, 12.8}, "PJI"),
	row(Camper, Dry, Mountainous, [4]float64{0.6, 1.6, 4.2, 32.5}, "JI"),
	row(HorsebackRider, AllEcoregions, AllTerrains, [4]float64{0.3, 3.2, 8.1, 19.8}, "PJI"),
	row(MentalIllness, Temperate, Mountainous, [4]float64{0.6, 2.3, 8.3, 14.6}, "PJI"),
	row(MentalIllness, Temperate, Flat, [4]float64{0.8, 1.0, 2.3, 8.1}, "PJI"),
	row(IntellectualDisability, Temperate, Mountainous, [4]float64{0.6, 1.6, 3.2, 11.3}, "PJNI"),
	row(IntellectualDisability, Temperate, Flat, [4]float64{0.3, 1.0, 2.1, 11.8}, "PJI"),
	row(IntellectualDisability, Dry, AllTerrains, [4]float64{1.1, 4.0, 8.7, 62.6}, "JI"),
	row(SubstanceAbuse, Temperate, AllTerrains, [4]float64{0.5, 1.1, 4.2, 9.7}, "NI"), // J and P print the mile figures as km
}

// LookupProfile returns the shipped ISRID row labelled exactly with a
// category, ecoregion and terrain (AllEcoregions and AllTerrains included),
// or ErrUnknownProfile. ChooseProfile finds the row that applies to an
// incident, with the fallbacks.
func LookupProfile(c Category, e Ecoregion, t Terrain) (Profile, error) {
	for _, r := range isridTable {
		if r.Category == c && r.Ecoregion == e && r.Terrain == t {
			return r.Profile, nil
		}
	}
	return Profile{}, fmt.Errorf("%w: %q in %s %s terrain", ErrUnknownProfile, c, e, t)
}

// ParseProfileName looks up a row by its Name ("category/ecoregion/terrain").
func ParseProfileName(name string) (Profile, error) {
	parts := strings.Split(name, "/")
	if len(parts) != 3 {
		return Profile{}, fmt.Errorf("%w: %q", ErrUnknownProfile, name)
	}
	return LookupProfile(Category(parts[0]), Ecoregion(parts[1]), Terrain(parts[2]))
}

// Profiles returns a copy of every shipped ISRID profile.
func Profiles() []Profile {
	out := make([]Profile, len(isridTable))
	for i, r := range isridTable {
		out[i] = r.Profile
	}
	return out
}

// ProfileSources returns the transcriptions supporting a shipped row (see
// isridRow.sources), or "" for a profile not in the table.
func ProfileSources(p Profile) string {
	for _, r := range isridTable {
		if r.Category == p.Category && r.Ecoregion == p.Ecoregion && r.Terrain == p.Terrain {
			return r.sources
		}
	}
	return ""
}

// Choice is the ISRID row chosen for an incident, with what was asked and,
// when they differ, why this row.
type Choice struct {
	// Requested is the category, ecoregion and terrain asked for (with
	// the defaults filled in; no distances).
	Requested Profile
	// Profile is the row used.
	Profile Profile
	// Fallback: no row covers the request, so another row of the same
	// category (or, for a category without rows, of the most similar one)
	// is used.
	Fallback bool
	// Reason says in a sentence which row is used and why, when it is not
	// the requested one exactly (a row given for all terrains, a fallback,
	// an assumed ecoregion or terrain); empty otherwise.
	Reason string
}

// similarCategory answers categories that have no rows of their own.
var similarCategory = map[Category]struct {
	c   Category
	why string
}{
	Child: {Child7to9, "child of unknown age: the child 7–9 row (the middle age band; give the age for its own band)"},
	Skier: {SkierNordic, "skier of unknown kind: the nordic skier row (wider rings than alpine; say alpine for a downhill skier)"},
	Other: {Hiker, "no ISRID category describes the subject: the hiker row (the largest ISRID category)"},
	"":    {Hiker, "category not given: the hiker row (the largest ISRID category)"},
}

// ecoregionOrder is the order in which a category's rows are tried for an
// ecoregion: the ecoregion itself, then the nearest with rows. Polar
// (boreal, tundra) and tropical incidents are too few in ISRID for rows of
// their own; the temperate rows, the book's largest domain, stand in.
func ecoregionOrder(e Ecoregion) []Ecoregion {
	switch e {
	case Dry:
		return []Ecoregion{Dry, Temperate}
	case Temperate:
		return []Ecoregion{Temperate, Dry}
	default:
		return []Ecoregion{e, Temperate, Dry}
	}
}

func otherTerrain(t Terrain) Terrain {
	if t == Flat {
		return Mountainous
	}
	return Flat
}

// ChooseProfile returns the shipped row for a subject of category c in
// ecoregion e and terrain t. An empty ecoregion is temperate and an empty
// terrain mountainous (assumed, and said so in Reason). The row is the one
// covering (c, e, t) if there is one; else, within the category, the same
// ecoregion in the other terrain, then the nearest ecoregion (temperate ↔
// dry; temperate first for polar and tropical) in the same terrain, then
// in the other terrain — the book's tables are organised by ecoregion
// first. A category without rows (Child, Skier, Other, "", or one this
// package does not know) is answered by its most similar category, in the
// same order. ChooseProfile never fails: every answer is a shipped row.
func ChooseProfile(c Category, e Ecoregion, t Terrain) Choice {
	var notes []string
	if e == "" {
		e = Temperate
		notes = append(notes, "ecoregion not given: temperate assumed")
	}
	if t == "" {
		t = Mountainous
		notes = append(notes, "terrain not given: mountainous assumed")
	}
	ch := Choice{Requested: Profile{Category: c, Ecoregion: e, Terrain: t}}
	rc := c
	if !hasRows(c) {
		s, ok := similarCategory[c]
		if !ok {
			s = similarCategory[Other]
			s.why = fmt.Sprintf("category %q has no ISRID rows: the hiker row (the largest ISRID category)", string(c))
		}
		rc = s.c
		ch.Fallback = true
		notes = append(notes, s.why)
	}
	for _, ee := range ecoregionOrder(e) {
		for _, tt := range []Terrain{t, otherTerrain(t)} {
			for _, r := range isridTable {
				if r.Category != rc || !r.covers(ee, tt) {
					continue
				}
				ch.Profile = r.Profile
				switch {
				case ee != e || tt != t:
					ch.Fallback = true
					notes = append(notes, fmt.Sprintf("no %s row for %s, %s: the %s row for %s is used (same category; %s)",
						rc, e, t, rc, describe(r.Profile), nearestWhy(e, t, ee, tt)))
				case r.Ecoregion != e || r.Terrain != t:
					notes = append(notes, fmt.Sprintf("the sources give one %s row for %s", rc, describe(r.Profile)))
				}
				ch.Reason = strings.Join(notes, "; ")
				return ch
			}
		}
	}
	// Unreachable while hiker has rows in every ecoregion and terrain.
	ch.Profile, _ = LookupProfile(Hiker, Temperate, Mountainous)
	ch.Fallback = true
	ch.Reason = strings.Join(append(notes, "no row found: the hiker row for temperate mountains"), "; ")
	return ch
}

func hasRows(c Category) bool {
	return slices.ContainsFunc(isridTable, func(r isridRow) bool { return r.Category == c })
}

// describe names a row's scope in words: "temperate, mountainous",
// "dry, all terrains", "all ecoregions and terrains".
func describe(p Profile) string {
	switch {
	case p.Ecoregion == AllEcoregions && p.Terrain == AllTerrains:
		return "all ecoregions and terrains"
	case p.Terrain == AllTerrains:
		return string(p.Ecoregion) + ", all terrains"
	default:
		return string(p.Ecoregion) + ", " + string(p.Terrain)
	}
}

func nearestWhy(e Ecoregion, t Terrain, ee Ecoregion, tt Terrain) string {
	switch {
	case ee == e:
		return "same ecoregion, other terrain"
	case e == Polar || e == Tropical:
		if tt == t {
			return string(e) + " has no ISRID rows; temperate stands in"
		}
		return string(e) + " has no ISRID rows; temperate stands in, other terrain"
	case tt == t:
		return "nearest ecoregion, same terrain"
	default:
		return "nearest ecoregion, other terrain"
	}
}
