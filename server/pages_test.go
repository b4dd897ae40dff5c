package server_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/mountain-sar/sar/server"
)

func checkPageHeaders(t *testing.T, what string, h http.Header) {
	t.Helper()
	csp := h.Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("%s: Content-Security-Policy = %q", what, csp)
	}
	if got := h.Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("%s: X-Content-Type-Options = %q", what, got)
	}
	if got := h.Get("Referrer-Policy"); got != "no-referrer" {
		t.Errorf("%s: Referrer-Policy = %q", what, got)
	}
}

// TestPagesHandler: files at their paths with strict headers and an ETag
// of their content (a match answers 304), index.html at its directory,
// 404 for anything else, also with the headers.
func TestPagesHandler(t *testing.T) {
	h, err := server.Pages(fstest.MapFS{
		"index.html":         {Data: []byte("<!doctype html><title>root</title>")},
		"app.js":             {Data: []byte("export const x = 1;\n")},
		"console/index.html": {Data: []byte("<!doctype html><title>console</title>")},
	})
	if err != nil {
		t.Fatalf("Pages: %v", err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	get := func(method, path string, hdr ...string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	for path, want := range map[string]string{"/": "<title>root</title>", "/index.html": "<title>root</title>",
		"/console/": "<title>console</title>", "/app.js": "export const x"} {
		resp, body := get("GET", path)
		if resp.StatusCode != 200 || !strings.Contains(body, want) {
			t.Errorf("GET %s = %d %q, want 200 with %q", path, resp.StatusCode, body, want)
		}
		checkPageHeaders(t, "GET "+path, resp.Header)
	}
	resp, _ := get("GET", "/app.js")
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/javascript") {
		t.Errorf("app.js Content-Type = %q, want text/javascript", ct)
	}
	etag := resp.Header.Get("ETag")
	if len(etag) < 10 || resp.Header.Get("Cache-Control") != "no-cache" {
		t.Errorf("app.js ETag %q, Cache-Control %q: want a content hash and no-cache", etag, resp.Header.Get("Cache-Control"))
	}
	if resp, body := get("GET", "/app.js", "If-None-Match", etag); resp.StatusCode != http.StatusNotModified || body != "" {
		t.Errorf("GET with the ETag = %d %q, want 304 and no body", resp.StatusCode, body)
	}
	if resp, _ := get("GET", "/app.js", "If-None-Match", `"stale"`); resp.StatusCode != 200 {
		t.Errorf("GET with another ETag = %d, want 200", resp.StatusCode)
	}
	if other, _ := get("GET", "/"); other.Header.Get("ETag") == etag {
		t.Errorf("two files share the ETag %s", etag)
	}
	// A directory's index answers at its path with and without the slash
	// (a share link is "/share#token").
	for _, path := range []string{"/console", "/console/"} {
		if resp, body := get("GET", path); resp.StatusCode != 200 || body == "" {
			t.Errorf("GET %s = %d, want the directory's index", path, resp.StatusCode)
		}
	}
	for _, path := range []string{"/nothing", "/consol", "/console/missing.js", "/index.html/", "/../web.go"} {
		resp, _ := get("GET", path)
		if resp.StatusCode != 404 {
			t.Errorf("GET %s = %d, want 404", path, resp.StatusCode)
		}
		checkPageHeaders(t, "GET "+path, resp.Header)
	}
	if resp, _ := get("POST", "/"); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST / = %d, want 405", resp.StatusCode)
	}
	if resp, body := get("HEAD", "/"); resp.StatusCode != 200 || body != "" {
		t.Errorf("HEAD / = %d %q, want 200 without a body", resp.StatusCode, body)
	}
}

// TestRootPage: sard's HTTP listener answers "/" with the embedded page,
// which links the service endpoints and loads nothing from elsewhere, while
// the other routes keep theirs.
func TestRootPage(t *testing.T) {
	e := startEnv(t)
	base := "http://" + e.app.HTTPAddr()
	resp, err := http.Get(base + "/")
	if err != nil {
		t.Fatalf("GET /: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	body := string(b)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET / = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	checkPageHeaders(t, "GET /", resp.Header)
	for _, want := range []string{`href="/healthz"`, `href="/readyz"`, `href="/metrics"`, "README", "search-and-rescue"} {
		if !strings.Contains(body, want) {
			t.Errorf("root page lacks %s", want)
		}
	}
	for _, bad := range []string{"<script", "style=", "<style", `src="http`, `href="//`} {
		if strings.Contains(body, bad) {
			t.Errorf("root page has %s: an inline or external resource", bad)
		}
	}
	for path, want := range map[string]int{"/style.css": 200, "/healthz": 200, "/no-such-page": 404, "/v1/whoami": 401} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s = %d, want %d", path, resp.StatusCode, want)
		}
	}
}
