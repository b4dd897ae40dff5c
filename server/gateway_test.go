package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
)

// TestGatewayShareLinkFlow is what the share page does over HTTP/JSON: join
// with the link's token, post fixes, post them again after a lost answer,
// and get field errors back as JSON.
func TestGatewayShareLinkFlow(t *testing.T) {
	e := startEnv(t)
	op := e.operator("north")
	inc := e.createIncident(op)
	link := must[*sarv1.CreateShareLinkResponse](t, "CreateShareLink")(e.auth.CreateShareLink(e.as(op), &sarv1.CreateShareLinkRequest{IncidentId: inc.GetId()}))
	if !strings.HasPrefix(link.GetUrlPath(), "/share#sar_") {
		t.Errorf("share link path = %q, want the token in the fragment", link.GetUrlPath())
	}
	base := "http://" + e.app.HTTPAddr()
	call := func(method, path, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+link.GetToken())
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	code, out := call("POST", "/v1/incidents/"+inc.GetId()+":join", `{"deviceId":"browser-7f3a"}`)
	if code != 200 || out["participant"] == nil {
		t.Fatalf("join = %d %v, want 200 with the participant", code, out)
	}
	now := time.Now().UTC()
	fixes := `{"deviceId":"browser-7f3a","fixes":[` +
		`{"sequence":"1","lat":30.2461,"lng":119.7160,"horizontalAccuracyM":35,"time":"` + now.Add(-20*time.Second).Format(time.RFC3339Nano) + `","source":"FIX_SOURCE_BROWSER"},` +
		`{"sequence":"2","lat":30.2462,"lng":119.7161,"horizontalAccuracyM":30,"time":"` + now.Format(time.RFC3339Nano) + `","source":"FIX_SOURCE_BROWSER","batteryPercent":12}]}`
	code, out = call("POST", "/v1/incidents/"+inc.GetId()+"/fixes", fixes)
	ack, _ := out["ack"].(map[string]any)
	if code != 200 || ack["ackedThrough"] != "2" || len(ack["stored"].([]any)) != 2 {
		t.Fatalf("post fixes = %d %v, want 2 stored through 2", code, out)
	}
	code, out = call("POST", "/v1/incidents/"+inc.GetId()+"/fixes", fixes)
	ack, _ = out["ack"].(map[string]any)
	if code != 200 || len(ack["duplicates"].([]any)) != 2 {
		t.Fatalf("repost = %d %v, want 2 duplicates", code, out)
	}
	code, out = call("POST", "/v1/incidents/not-an-id/fixes", `{"deviceId":"browser-7f3a"}`)
	if code != 400 || !bytes.Contains(mustJSON(out), []byte("batch.incident_id")) {
		t.Errorf("bad id = %d %v, want 400 naming batch.incident_id", code, out)
	}
	code, _ = call("GET", "/v1/incidents", "")
	if code != 403 {
		t.Errorf("caller lists incidents: HTTP %d, want 403", code)
	}
	// No credential, or a huge body: refused before anything is decoded.
	resp, err := http.Post(base+"/v1/incidents", "application/json", strings.NewReader(`{"title":"x"}`))
	if err != nil || resp.StatusCode != 401 {
		t.Errorf("POST without credential = %v, %v; want 401", resp, err)
	}
	if resp != nil {
		resp.Body.Close()
	}
	code, _ = call("POST", "/v1/incidents/"+inc.GetId()+"/fixes", `{"deviceId":"`+strings.Repeat("x", 2<<20)+`"}`)
	if code != 400 && code != 413 {
		t.Errorf("2 MiB body: HTTP %d, want it refused (400 or 413)", code)
	}

	// The operator's console can follow the incident as newline-delimited
	// JSON through the same gateway.
	wctx, cancel := context.WithTimeout(t.Context(), 15*time.Second) // bounds the reads below
	defer cancel()
	req, _ := http.NewRequestWithContext(wctx, "GET", base+"/v1/incidents/"+inc.GetId()+"/watch", nil)
	req.Header.Set("Authorization", "Bearer "+op)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	defer resp.Body.Close()
	lines := bufio.NewReader(resp.Body)
	line, err := lines.ReadBytes('\n')
	if err != nil || !bytes.Contains(line, []byte(`"snapshot"`)) || !bytes.Contains(line, []byte("browser-7f3a")) {
		t.Errorf("watch first line = %s, %v; want the snapshot with the caller's device", line, err)
	}
	// Then live events, as messages (the gateway's in-process door; the
	// gRPC door sends the bus's bytes as they came).
	more := `{"deviceId":"browser-7f3a","fixes":[{"sequence":"3","lat":30.2463,"lng":119.7162,"horizontalAccuracyM":25,"time":"` +
		time.Now().UTC().Format(time.RFC3339Nano) + `","source":"FIX_SOURCE_BROWSER"}]}`
	if code, out := call("POST", "/v1/incidents/"+inc.GetId()+"/fixes", more); code != 200 {
		t.Fatalf("post fix 3 = %d %v", code, out)
	}
	for {
		line, err = lines.ReadBytes('\n')
		if err != nil {
			t.Fatalf("watch: no positions event for fix 3: %v", err)
		}
		if bytes.Contains(line, []byte(`"positions"`)) && bytes.Contains(line, []byte(`"sequence":"3"`)) {
			break
		}
	}
}

func mustJSON(v any) []byte { b, _ := json.Marshal(v); return b }
