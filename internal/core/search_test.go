package core

import (
	"testing"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
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
		{&sarv1.SubjectProfile{Category: sarv1.SubjectCategory_SUBJECT_CATEGORY_DEMENTIA, Terrain: sarv1.Terrain_TERRAIN_FLAT}, "hiker/temperate/mountainous", true},
		{&sarv1.SubjectProfile{Category: sarv1.SubjectCategory_SUBJECT_CATEGORY_CHILD, AgeYears: ptr[int32](5)}, "child-4-6/temperate/mountainous", false},
		{cat(sarv1.SubjectCategory_SUBJECT_CATEGORY_CHILD), "hiker/temperate/mountainous", true},
		{cat(sarv1.SubjectCategory_SUBJECT_CATEGORY_CLIMBER), "hiker/temperate/mountainous", true},
		{cat(sarv1.SubjectCategory_SUBJECT_CATEGORY_RUNNER), "hiker/temperate/mountainous", true},
		{cat(sarv1.SubjectCategory_SUBJECT_CATEGORY_GATHERER), "gatherer/temperate/mountainous", false},
	} {
		p, fb := profileFor(tc.subject)
		if got := profileName(p); got != tc.want || fb != tc.fallback {
			t.Errorf("profileFor(%v) = %s (fallback %v), want %s (fallback %v)", tc.subject, got, fb, tc.want, tc.fallback)
		}
	}
}
