package web

import (
	"bytes"
	"compress/gzip"
	"io/fs"
	"regexp"
	"strings"
	"testing"

	"github.com/robertkrimen/otto/parser"
)

// TestShareScriptIsES5 parses the share page's script with an ES5 parser:
// old in-app browsers (WeChat's X5 kernel, Android 7 WebViews) lack newer
// syntax, and one arrow function would leave a lost person with a dead
// page.
func TestShareScriptIsES5(t *testing.T) {
	src, err := fs.ReadFile(FS(), "share/share.js")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parser.ParseFile(nil, "share.js", src, 0); err != nil {
		t.Fatalf("share.js is not ES5: %v", err)
	}
	// The parser must refuse what the script must not use, or this test
	// proves nothing.
	for _, modern := range []string{
		"var f = (a) => a;", "let x = 1;", "const y = 2;", "class A {}", "var s = `t`;",
		"async function f() {}", "var z = a?.b;", "var w = a ?? b;", "var {a} = o;", "function g(a = 1) {}",
	} {
		if _, err := parser.ParseFile(nil, "modern.js", modern, 0); err == nil {
			t.Errorf("the ES5 parser accepts %q: it cannot tell ES5 from newer syntax", modern)
		}
	}
}

// TestSharePageWeight: the whole share page, compressed, under 40 KB, and
// nothing fetched from elsewhere.
func TestSharePageWeight(t *testing.T) {
	var total int
	external := regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?(https?:)?//|url\(\s*["']?(https?:)?//|@import`)
	err := fs.WalkDir(FS(), "share", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(FS(), name)
		if err != nil {
			return err
		}
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		_, _ = zw.Write(b)
		_ = zw.Close()
		total += buf.Len()
		if m := external.Find(b); m != nil {
			t.Errorf("%s loads something from elsewhere: %q", name, m)
		}
		if strings.HasSuffix(name, ".html") && (bytes.Contains(b, []byte("<script>")) || bytes.Contains(b, []byte(" style="))) {
			t.Errorf("%s has inline script or style (the Content-Security-Policy refuses them)", name)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if total > 40*1024 {
		t.Errorf("share page is %d bytes compressed, want under 40 KB", total)
	}
	t.Logf("share page: %d bytes gzip-compressed", total)
}
