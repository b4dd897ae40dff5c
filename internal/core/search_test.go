package core

import (
	"testing"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/geo"
)

func TestProfileForMapsAndFallsBack(t *testing.T) {
	cat := func(c sarv1.SubjectCategory) *sarv1.SubjectProfile { return &sarv1.SubjectProfile{Category: c} }
	for _, tc := range []struct {
		subject  *sarv1.SubjectProfile
		want     string
		fallback bool
	}{
		{nil, "hiker/temperate/mountainous", true},
		{cat(sarv1.SubjectCategory_SUBJECT_CATEGORY_HIKER), "hiker/temperate/mountainous", false},
		{&sarv1.SubjectProfile{Category: sarv1.SubjectCategory_SUBJECT_CATEGORY_HIKER, Terrain: sarv1.Terrain_TERRAIN_FLAT}, "hiker/temperate/flat", false},
		{&sarv1.SubjectProfile{Category: sarv1.SubjectCategory_SUBJECT_CATEGORY_HIKER, Ecoregion: sarv1.Ecoregion_ECOREGION_DRY}, "hiker/dry/mountainous", false},
		{&sarv1.SubjectProfile{Category: sarv1.SubjectCategory_SUBJECT_CATEGORY_HIKER, Ecoregion: sarv1.Ecoregion_ECOREGION_POLAR}, "hiker/temperate/mountainous", true},
		{cat(sarv1.SubjectCategory_SUBJECT_CATEGORY_DEMENTIA), "dementia/temperate/mountainous", false},
		{&sarv1.SubjectProfile{Category: sarv1.SubjectCategory_SUBJECT_CATEGORY_DEMENTIA, Terrain: sarv1.Terrain_TERRAIN_FLAT}, "dementia/temperate/flat", false},
		{&sarv1.SubjectProfile{Category: sarv1.SubjectCategory_SUBJECT_CATEGORY_DEMENTIA, Ecoregion: sarv1.Ecoregion_ECOREGION_DRY, Terrain: sarv1.Terrain_TERRAIN_FLAT}, "dementia/dry/flat", false},
		{&sarv1.SubjectProfile{Category: sarv1.SubjectCategory_SUBJECT_CATEGORY_CHILD, AgeYears: ptr[int32](5)}, "child-4-6/temperate/mountainous", false},
		{&sarv1.SubjectProfile{Category: sarv1.SubjectCategory_SUBJECT_CATEGORY_CHILD, AgeYears: ptr[int32](2), Ecoregion: sarv1.Ecoregion_ECOREGION_DRY}, "child-1-3/dry/all", false},
		{&sarv1.SubjectProfile{Category: sarv1.SubjectCategory_SUBJECT_CATEGORY_CHILD, AgeYears: ptr[int32](0)}, "child-1-3/temperate/mountainous", true},
		{&sarv1.SubjectProfile{Category: sarv1.SubjectCategory_SUBJECT_CATEGORY_CHILD, AgeYears: ptr[int32](16)}, "child-13-15/temperate/mountainous", true},
		{cat(sarv1.SubjectCategory_SUBJECT_CATEGORY_CHILD), "child-7-9/temperate/mountainous", true},
		{cat(sarv1.SubjectCategory_SUBJECT_CATEGORY_CLIMBER), "climber/temperate/all", false},
		{&sarv1.SubjectProfile{Category: sarv1.SubjectCategory_SUBJECT_CATEGORY_CLIMBER, Ecoregion: sarv1.Ecoregion_ECOREGION_DRY}, "climber/temperate/all", true},
		{cat(sarv1.SubjectCategory_SUBJECT_CATEGORY_RUNNER), "runner/temperate/all", false},
		{cat(sarv1.SubjectCategory_SUBJECT_CATEGORY_SKIER), "skier-nordic/temperate/mountainous", true},
		{cat(sarv1.SubjectCategory_SUBJECT_CATEGORY_SKIER_ALPINE), "skier-alpine/temperate/mountainous", false},
		{&sarv1.SubjectProfile{Category: sarv1.SubjectCategory_SUBJECT_CATEGORY_MOUNTAIN_BIKER, Ecoregion: sarv1.Ecoregion_ECOREGION_DRY}, "mountain-biker/dry/all", false},
		{&sarv1.SubjectProfile{Category: sarv1.SubjectCategory_SUBJECT_CATEGORY_MOUNTAIN_BIKER, Terrain: sarv1.Terrain_TERRAIN_FLAT}, "mountain-biker/temperate/mountainous", true},
		{cat(sarv1.SubjectCategory_SUBJECT_CATEGORY_GATHERER), "gatherer/temperate/mountainous", false},
		{cat(sarv1.SubjectCategory_SUBJECT_CATEGORY_HORSEBACK_RIDER), "horseback-rider/all/all", false},
		{&sarv1.SubjectProfile{Category: sarv1.SubjectCategory_SUBJECT_CATEGORY_OTHER, Ecoregion: sarv1.Ecoregion_ECOREGION_DRY, Terrain: sarv1.Terrain_TERRAIN_FLAT}, "hiker/dry/flat", true},
		{cat(sarv1.SubjectCategory(999)), "hiker/temperate/mountainous", true},
	} {
		ch := profileFor(tc.subject)
		if got := ch.Profile.Name(); got != tc.want || ch.Fallback != tc.fallback {
			t.Errorf("profileFor(%v) = %s (fallback %v), want %s (fallback %v)", tc.subject, got, ch.Fallback, tc.want, tc.fallback)
		}
		if ch.Fallback && ch.Reason == "" {
			t.Errorf("profileFor(%v): fallback without a reason", tc.subject)
		}
	}
}

// Every combination the API accepts (each category, ecoregion, terrain,
// and for a child each age band, no age and ages outside the bands) gets a
// shipped row of its own category, or the documented most similar one for
// the categories without rows (geo.TestChooseProfileFallbacks checks which
// row for each), with a reason whenever it is not exactly the one asked.
// Only hiker, other and unspecified may end with hiker rows.
func TestProfileForEveryCombination(t *testing.T) {
	for v := range sarv1.SubjectCategory_name {
		c := sarv1.SubjectCategory(v)
		_, mapped := subjectCategories[c]
		if !mapped && c != sarv1.SubjectCategory_SUBJECT_CATEGORY_CHILD && c != sarv1.SubjectCategory_SUBJECT_CATEGORY_UNSPECIFIED {
			t.Errorf("category %s is not mapped to an ISRID category", c)
		}
		ages := []*int32{nil}
		if c == sarv1.SubjectCategory_SUBJECT_CATEGORY_CHILD {
			for _, a := range []int32{0, 1, 3, 4, 6, 7, 9, 10, 12, 13, 15, 16, 130} {
				ages = append(ages, ptr(a))
			}
		}
		for e := range sarv1.Ecoregion_name {
			for tr := range sarv1.Terrain_name {
				for _, age := range ages {
					sp := &sarv1.SubjectProfile{Category: c, Ecoregion: sarv1.Ecoregion(e), Terrain: sarv1.Terrain(tr), AgeYears: age}
					ch := profileFor(sp)
					if err := ch.Profile.Validate(); err != nil || geo.ProfileSources(ch.Profile) == "" {
						t.Errorf("profileFor(%v) = %s, not a shipped row", sp, ch.Profile.Name())
					}
					hikerOK := c == sarv1.SubjectCategory_SUBJECT_CATEGORY_HIKER || c == sarv1.SubjectCategory_SUBJECT_CATEGORY_OTHER || c == sarv1.SubjectCategory_SUBJECT_CATEGORY_UNSPECIFIED
					if ch.Profile.Category == geo.Hiker && !hikerOK {
						t.Errorf("profileFor(%v) = %s: silently hiker", sp, ch.Profile.Name())
					}
					exact := ch.Profile.Name() == ch.Requested.Name()
					assumed := e == 0 || tr == 0 // "… not given: … assumed"
					if !exact && ch.Reason == "" || exact && ch.Reason != "" && !assumed {
						t.Errorf("profileFor(%v) = %s for %s with reason %q", sp, ch.Profile.Name(), ch.Requested.Name(), ch.Reason)
					}
					if ch.Fallback && ch.Reason == "" {
						t.Errorf("profileFor(%v): fallback without a reason", sp)
					}
				}
			}
		}
	}
}
