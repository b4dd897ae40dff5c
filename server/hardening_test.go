package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/timestamppb"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
)

// rawCodec sends and receives bytes as they are: a client that sends what
// no protobuf encoder would.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }
func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}
func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

// TestUndecodableRequestIsInvalidArgument sends bytes that are not a
// protobuf message, unary and on a device stream: each is refused with
// INVALID_ARGUMENT (not INTERNAL), and nothing is stored.
func TestUndecodableRequestIsInvalidArgument(t *testing.T) {
	e := startEnv(t)
	op, _, inc := e.officerOnIncident()
	str := func(num protowire.Number, s string) []byte {
		return protowire.AppendString(protowire.AppendTag(nil, num, protowire.BytesType), s)
	}
	bad := map[string][]byte{
		"truncated length":  append(protowire.AppendTag(nil, 1, protowire.BytesType), 50, 'a'),
		"wire type 7":       {1<<3 | 7, 0},
		"field number 0":    {0<<3 | 0, 1},
		"invalid UTF-8":     str(1, "\xff\xfe"),
		"truncated varint":  {2<<3 | 0, 0x80},
		"end group, no one": {1<<3 | 4},
	}
	for name, b := range bad {
		var out []byte
		err := e.conn.Invoke(e.as(op), "/sar.v1.IncidentService/CreateIncident", &b, &out, grpc.ForceCodecV2(rawCodec{}))
		if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument {
			t.Errorf("CreateIncident with %s: %v, want INVALID_ARGUMENT", name, err)
		}
	}
	// A device stream: the undecodable message ends it with INVALID_ARGUMENT.
	ctx, cancel := context.WithCancel(e.as(op))
	defer cancel()
	s, err := e.conn.NewStream(ctx, &sarv1.LocationService_ServiceDesc.Streams[0], "/sar.v1.LocationService/StreamFixes", grpc.ForceCodecV2(rawCodec{}))
	if err != nil {
		t.Fatalf("NewStream: %v", err)
	}
	b := str(1, "\xff")
	if err := s.SendMsg(&b); err != nil {
		t.Fatalf("SendMsg: %v", err)
	}
	var out []byte
	if err := s.RecvMsg(&out); status.Code(err) != codes.InvalidArgument {
		t.Errorf("StreamFixes with invalid UTF-8: %v, want INVALID_ARGUMENT", err)
	}
	list := must[*sarv1.ListIncidentsResponse](t, "ListIncidents")(e.inc.ListIncidents(e.as(op), &sarv1.ListIncidentsRequest{}))
	if n := len(list.GetIncidents()); n != 1 || list.GetIncidents()[0].GetId() != inc.GetId() {
		t.Errorf("incidents after undecodable requests = %d, want the one made before", n)
	}
}

// TestGatewayWrongMethodIs405 calls gateway paths with a method they do not
// take: 405 with an Allow header naming the ones they do; an unknown path
// stays 404.
func TestGatewayWrongMethodIs405(t *testing.T) {
	e := startEnv(t)
	op := e.operator("north")
	inc := e.createIncident(op)
	base := "http://" + e.app.HTTPAddr()
	for _, c := range []struct{ method, path, allow string }{
		{"DELETE", "/v1/incidents", "GET, POST"},
		{"PUT", "/v1/incidents/" + inc.GetId(), "GET"},
		{"GET", "/v1/incidents/" + inc.GetId() + "/fixes", "POST"},
	} {
		req, _ := http.NewRequest(c.method, base+c.path, strings.NewReader("{}"))
		req.Header.Set("Authorization", "Bearer "+op)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", c.method, c.path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != c.allow {
			t.Errorf("%s %s = %d Allow %q, want 405 Allow %q", c.method, c.path, resp.StatusCode, resp.Header.Get("Allow"), c.allow)
		}
	}
	req, _ := http.NewRequest("GET", base+"/v1/no-such-thing", nil)
	req.Header.Set("Authorization", "Bearer "+op)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET unknown path = %d, want 404", resp.StatusCode)
	}
}

// TestUnknownSegmentWritesNothing asks for a segment that does not exist,
// before any segmentation was cut and after: NOT_FOUND, and no
// segmentation stored, no event queued.
func TestUnknownSegmentWritesNothing(t *testing.T) {
	e := startEnv(t)
	op, _, inc := e.officerOnIncident()
	id, sc := inc.GetId(), e.search()
	must[*sarv1.SetSearchPlanResponse](t, "SetSearchPlan")(sc.SetSearchPlan(e.as(op), &sarv1.SetSearchPlanRequest{IncidentId: id, Cut: 0.3}))
	ctx := context.Background()
	segs, outbox := "sar:{"+id+"}:segs", "sar:{"+id+"}:outbox"
	state := func() (int64, string) {
		n, _ := e.rdb.HLen(ctx, outbox).Result()
		v, _ := e.rdb.HGet(ctx, segs, "ver").Result()
		return n, v
	}
	refused := func(when string) {
		t.Helper()
		n0, v0 := state()
		_, err := sc.GetSearchGrid(e.as(op), &sarv1.GetSearchGridRequest{IncidentId: id, SegmentId: 99999})
		wantCode(t, when+": GetSearchGrid of segment 99999", err, codes.NotFound)
		_, err = sc.AssignSegment(e.as(op), &sarv1.AssignSegmentRequest{IncidentId: id, SegmentId: 99999})
		wantCode(t, when+": AssignSegment of segment 99999", err, codes.NotFound)
		if n, v := state(); n != n0 || v != v0 {
			t.Errorf("%s: refused requests wrote: outbox %d -> %d events, segmentation version %q -> %q", when, n0, n, v0, v)
		}
	}
	refused("before any cut")
	if n, _ := e.rdb.Exists(ctx, segs).Result(); n != 0 {
		t.Errorf("a segmentation was stored by refused requests")
	}
	must[*sarv1.ListSegmentsResponse](t, "ListSegments")(sc.ListSegments(e.as(op), &sarv1.ListSegmentsRequest{IncidentId: id}))
	refused("after the cut")
}

// TestUnknownEnumValuesRefused: a subject category, terrain or ecoregion
// its enum does not declare is INVALID_ARGUMENT naming the field, at
// CreateIncident and SetSearchPlan (no fallback profile seeded).
func TestUnknownEnumValuesRefused(t *testing.T) {
	e := startEnv(t)
	op, _, inc := e.officerOnIncident()
	for _, c := range []struct {
		field string
		subj  *sarv1.SubjectProfile
	}{
		{"subject.category", &sarv1.SubjectProfile{Category: 999}},
		{"subject.terrain", &sarv1.SubjectProfile{Terrain: 77}},
		{"subject.ecoregion", &sarv1.SubjectProfile{Ecoregion: 77}},
	} {
		_, err := e.inc.CreateIncident(e.as(op), &sarv1.CreateIncidentRequest{Title: "unknown enum", Subject: c.subj,
			InitialPlanningPoint: &sarv1.PlanningPoint{Position: &sarv1.LatLng{Lat: 30.2458, Lng: 119.7156}}})
		if st := wantCode(t, "CreateIncident with "+c.field, err, codes.InvalidArgument); !slices.Contains(fieldViolations(st), c.field) {
			t.Errorf("CreateIncident with %s: fields %v, want it named", c.field, fieldViolations(st))
		}
		_, err = e.search().SetSearchPlan(e.as(op), &sarv1.SetSearchPlanRequest{IncidentId: inc.GetId(), Cut: 0.3, Subject: c.subj})
		if st := wantCode(t, "SetSearchPlan with "+c.field, err, codes.InvalidArgument); !slices.Contains(fieldViolations(st), c.field) {
			t.Errorf("SetSearchPlan with %s: fields %v, want it named", c.field, fieldViolations(st))
		}
	}
	if _, err := e.search().GetSearchGrid(e.as(op), &sarv1.GetSearchGridRequest{IncidentId: inc.GetId()}); status.Code(err) == codes.OK {
		t.Errorf("a search plan was seeded by refused requests")
	}
	list := must[*sarv1.ListIncidentsResponse](t, "ListIncidents")(e.inc.ListIncidents(e.as(op), &sarv1.ListIncidentsRequest{}))
	if len(list.GetIncidents()) != 1 {
		t.Errorf("incidents = %d, want only the valid one", len(list.GetIncidents()))
	}
	// Any request: an undeclared enum number is refused before the handler.
	_, err := e.agency.CreateAgency(e.as(e.admin), &sarv1.CreateAgencyRequest{Agency: &sarv1.Agency{Id: "odd", Name: "odd", Kind: 99, Jurisdiction: "north"}})
	if st := wantCode(t, "CreateAgency with kind 99", err, codes.InvalidArgument); !slices.Contains(fieldViolations(st), "agency.kind") {
		t.Errorf("CreateAgency with kind 99: fields %v, want agency.kind", fieldViolations(st))
	}
	_, err = e.inc.CloseIncident(e.as(op), &sarv1.CloseIncidentRequest{IncidentId: inc.GetId(), Outcome: 77})
	if st := wantCode(t, "CloseIncident with outcome 77", err, codes.InvalidArgument); !slices.Contains(fieldViolations(st), "outcome") {
		t.Errorf("CloseIncident with outcome 77: fields %v, want outcome", fieldViolations(st))
	}
	_, err = e.inc.ListIncidents(e.as(op), &sarv1.ListIncidentsRequest{State: 77})
	if st := wantCode(t, "ListIncidents with state 77", err, codes.InvalidArgument); !slices.Contains(fieldViolations(st), "state") {
		t.Errorf("ListIncidents with state 77: fields %v, want state", fieldViolations(st))
	}
	_, err = e.agency.FindTeams(e.as(op), &sarv1.FindTeamsRequest{Near: &sarv1.LatLng{Lat: 30.2, Lng: 119.7}, Statuses: []sarv1.TeamStatus{1, 77}})
	if st := wantCode(t, "FindTeams with status 77", err, codes.InvalidArgument); !slices.Contains(fieldViolations(st), "statuses[1]") {
		t.Errorf("FindTeams with status 77: fields %v, want statuses[1]", fieldViolations(st))
	}
	if got := must[*sarv1.GetIncidentResponse](t, "GetIncident")(e.inc.GetIncident(e.as(op), &sarv1.GetIncidentRequest{IncidentId: inc.GetId()})); got.GetIncident().GetState() != sarv1.IncidentState_INCIDENT_STATE_OPEN {
		t.Errorf("incident state after a refused close = %v, want open", got.GetIncident().GetState())
	}
}

// TestGatewayAgreesWithGRPC: over JSON, an unknown enum name is refused
// (gRPC refuses the unknown number) rather than stored as UNSPECIFIED, and
// a fix whose lat is null or missing is rejected as missing coordinates
// rather than stored at latitude 0.
func TestGatewayAgreesWithGRPC(t *testing.T) {
	e := startEnv(t)
	op, officer, inc := e.officerOnIncident()
	base := "http://" + e.app.HTTPAddr()
	post := func(token, path, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest("POST", base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	now := time.Now().UTC()
	fix := func(seq int, extra string) string {
		return fmt.Sprintf(`{"sequence":"%d","horizontalAccuracyM":5,"time":"%s"%s}`, seq, now.Add(time.Duration(seq-10)*time.Second).Format(time.RFC3339Nano), extra)
	}
	path := "/v1/incidents/" + inc.GetId() + "/fixes"
	code, out := post(officer, path, `{"deviceId":"phone","fixes":[`+fix(1, `,"lat":30.1,"lng":119.7,"source":"FIX_SOURCE_TELEPATHY"`)+`]}`)
	if code != http.StatusBadRequest || !strings.Contains(fmt.Sprint(out), "FIX_SOURCE_TELEPATHY") {
		t.Errorf("fix with an unknown source name = %d %v, want 400 naming it", code, out)
	}
	// gRPC: the unknown number is a final rejection of that fix.
	ack, err := e.loc.ReportFixes(e.as(officer), &sarv1.ReportFixesRequest{Batch: &sarv1.FixBatch{IncidentId: inc.GetId(), DeviceId: "phone",
		Fixes: []*sarv1.LocationFix{{Sequence: 1, Lat: 30.1, Lng: 119.7, HorizontalAccuracyM: 5, Time: timestamppb.New(now), Source: 99}}}})
	if err != nil || len(ack.GetAck().GetStored()) != 0 || len(ack.GetAck().GetRejected()) != 1 {
		t.Errorf("gRPC fix with source 99 = %v, %v; want it rejected", ack, err)
	}
	code, out = post(officer, path, `{"deviceId":"phone","fixes":[`+fix(2, `,"lat":null,"lng":119.7`)+`,`+fix(3, `,"lng":119.7`)+`,`+fix(4, `,"lat":30.1`)+`,`+fix(5, `,"lat":0,"lng":119.7`)+`]}`)
	ack2, _ := out["ack"].(map[string]any)
	rejected, _ := ack2["rejected"].([]any)
	stored, _ := ack2["stored"].([]any)
	if code != 200 || len(rejected) != 3 || len(stored) != 1 || stored[0] != "5" {
		t.Fatalf("fixes with lat null, lat missing, lng missing, lat 0 = %d %v; want 2-4 rejected, 5 (the equator) stored", code, out)
	}
	for _, r := range rejected {
		if r.(map[string]any)["reason"] != "REJECT_REASON_INVALID_COORDINATES" {
			t.Errorf("rejection %v, want INVALID_COORDINATES", r)
		}
	}
	// An incident's subject with an unknown terrain name: refused, not made.
	code, out = post(op, "/v1/incidents", `{"title":"x","subject":{"terrain":"TERRAIN_SWAMP"},"initialPlanningPoint":{"position":{"lat":30.2,"lng":119.7}}}`)
	if code != http.StatusBadRequest {
		t.Errorf("incident with an unknown terrain name = %d %v, want 400", code, out)
	}
	code, out = post(op, "/v1/incidents", `{"title":"x","initialPlanningPoint":{"position":{"lng":119.7}}}`)
	if code != http.StatusBadRequest {
		t.Errorf("incident whose planning point has no lat = %d %v, want 400", code, out)
	}
	list := must[*sarv1.ListIncidentsResponse](t, "ListIncidents")(e.inc.ListIncidents(e.as(op), &sarv1.ListIncidentsRequest{}))
	if len(list.GetIncidents()) != 1 {
		t.Errorf("incidents = %d, want only the first", len(list.GetIncidents()))
	}
}

// TestSkippedThroughBounded: an empty batch that skips to 2^64-1, past
// 2^53-1, or more than 1,000,000 past acked_through is refused and the
// device goes on storing from where it was.
func TestSkippedThroughBounded(t *testing.T) {
	e := startEnv(t)
	_, officer, inc := e.officerOnIncident()
	report := func(skip uint64, fixes ...*sarv1.LocationFix) (*sarv1.ReportFixesResponse, error) {
		return e.loc.ReportFixes(e.as(officer), &sarv1.ReportFixesRequest{Batch: &sarv1.FixBatch{IncidentId: inc.GetId(), DeviceId: "phone",
			SkippedThrough: skip, Fixes: fixes}})
	}
	for _, skip := range []uint64{math.MaxUint64, 1 << 53, 1_000_001} {
		_, err := report(skip)
		if st := wantCode(t, fmt.Sprintf("skipped_through %d", skip), err, codes.InvalidArgument); !slices.Contains(fieldViolations(st), "batch.skipped_through") {
			t.Errorf("skipped_through %d: fields %v, want batch.skipped_through", skip, fieldViolations(st))
		}
	}
	r, err := report(0, walk(1, 2, time.Now())...)
	if err != nil || r.GetAck().GetAckedThrough() != 2 || len(r.GetAck().GetStored()) != 2 {
		t.Fatalf("after refused skips = %v, %v; want 1-2 stored", r, err)
	}
	if r, err = report(1_000_002); err != nil || r.GetAck().GetAckedThrough() != 1_000_002 {
		t.Errorf("skip of exactly 1,000,000 = %v, %v; want acked through 1000002", r, err)
	}
}
