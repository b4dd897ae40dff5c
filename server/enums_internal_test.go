package server

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
)

// TestUndeclaredEnumPaths: the path of the first undeclared enum number,
// at the top, in nested messages, in lists of enums and of messages;
// none for declared values, and none inside a fix (the domain rejects
// that fix alone).
func TestUndeclaredEnumPaths(t *testing.T) {
	ok := sarv1.TaskState_TASK_STATE_ACCEPTED
	for _, c := range []struct {
		name string
		msg  proto.Message
		want string // "": accepted
	}{
		{"declared values", &sarv1.ListTasksResponse{Tasks: []*sarv1.Task{{Transitions: []*sarv1.TaskTransition{{From: ok, To: ok}}}}}, ""},
		{"top level", &sarv1.CloseIncidentRequest{Outcome: 77}, "outcome"},
		{"nested", &sarv1.CreateAgencyRequest{Agency: &sarv1.Agency{Kind: 99}}, "agency.kind"},
		{"list of enums", &sarv1.FindTeamsRequest{Statuses: []sarv1.TeamStatus{1, 77}}, "statuses[1]"},
		{"lists of messages", &sarv1.ListTasksResponse{Tasks: []*sarv1.Task{{}, {Transitions: []*sarv1.TaskTransition{{From: ok, To: ok}, {From: ok, To: 55}}}}},
			"tasks[1].transitions[1].to"},
		{"inside a fix", &sarv1.StreamFixesRequest{Batch: &sarv1.FixBatch{Fixes: []*sarv1.LocationFix{{}, {Source: 99}}}}, ""},
	} {
		err := checkEnums(c.msg)
		if c.want == "" {
			if err != nil {
				t.Errorf("%s: checkEnums = %v, want nil", c.name, err)
			}
			continue
		}
		st := status.Convert(err)
		if st.Code() != codes.InvalidArgument || st.Message() != "unknown enum value in "+c.want {
			t.Errorf("%s: checkEnums = %v, want INVALID_ARGUMENT naming %s", c.name, err, c.want)
		}
	}
}

// BenchmarkCheckEnumsBatch: the check every StreamFixes message pays.
func BenchmarkCheckEnumsBatch(b *testing.B) {
	req := &sarv1.StreamFixesRequest{Batch: &sarv1.FixBatch{IncidentId: "i", DeviceId: "d", BatchId: 1, Fixes: make([]*sarv1.LocationFix, 10)}}
	for i := range req.Batch.Fixes {
		req.Batch.Fixes[i] = &sarv1.LocationFix{Sequence: uint64(i + 1), Source: sarv1.FixSource_FIX_SOURCE_GNSS}
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := checkEnums(req); err != nil {
			b.Fatal(err)
		}
	}
}
