package server_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

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
