package server

import (
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/mountain-sar/sar/internal/sar"
)

// A write that lost a compare-and-set to a concurrent writer is ABORTED
// everywhere (retry the read-modify-write), never UNAVAILABLE (a backend is
// down) nor FAILED_PRECONDITION (the object's state forbids it).
func TestWriteConflictsAreAborted(t *testing.T) {
	for name, err := range map[string]error{
		"grid":     sar.ErrGridConflict,
		"segments": sar.ErrSegmentsConflict,
	} {
		if got := Code(err); got != codes.Aborted {
			t.Errorf("Code(%s conflict) = %v, want %v", name, got, codes.Aborted)
		}
	}
	for k := range sar.KindOutOfRange + 1 {
		if _, ok := codeOf[k]; !ok {
			t.Errorf("kind %v has no gRPC code in the table", k)
		}
	}
}
