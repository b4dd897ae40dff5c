package sar

// Segmentation is an incident's segments as cut from its grid.
type Segmentation struct {
	Version      int64           `json:"-"`
	SeedVersion  int64           `json:"seed_version"` // grid seed the unassigned segments were cut from
	TargetAreaM2 float64         `json:"target_area_m2"`
	NextID       int             `json:"next_id"` // ids are never reused within an incident
	Segments     []StoredSegment `json:"segments"`
}

// StoredSegment is one segment and its assignment.
type StoredSegment struct {
	ID       int      `json:"id"`
	Cells    []uint64 `json:"cells"`
	AreaM2   float64  `json:"area_m2"`
	Lat      float64  `json:"lat"`
	Lng      float64  `json:"lng"`
	Agency   string   `json:"agency,omitempty"` // assigned team's agency ("" when free)
	Team     string   `json:"team,omitempty"`
	AssignMs int64    `json:"assign_ms,omitempty"`
}

// Assigned reports whether the segment is assigned to a team.
func (s StoredSegment) Assigned() bool { return s.Agency != "" }

// ErrSegmentsConflict says the segmentation changed since it was read.
var ErrSegmentsConflict = Errorf(KindAborted, "segments changed concurrently; retry")
