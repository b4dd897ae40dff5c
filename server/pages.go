package server

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"
)

// pageHeaders are set on every page response, 404s included.
var pageHeaders = map[string]string{
	"Content-Security-Policy": "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
	"X-Content-Type-Options":  "nosniff",
	"Referrer-Policy":         "no-referrer",
}

type page struct {
	body  []byte
	etag  string // strong: a hash of the content
	ctype string
}

// Pages serves the files of fsys (embedded, read once here) at their
// paths, index.html at "/" and at its directory's path (with and without
// the trailing slash), with strict headers. Responses carry an ETag of
// their content and "Cache-Control: no-cache": a browser revalidates and
// gets 304 until the binary's files change; the share page's files are
// "no-store". Anything else is 404 (405 for a method other than GET and
// HEAD); there are no directory listings.
func Pages(fsys fs.FS) (http.Handler, error) {
	files := map[string]page{}
	err := fs.WalkDir(fsys, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		ctype := mime.TypeByExtension(path.Ext(name))
		if ctype == "" {
			ctype = http.DetectContentType(b)
		}
		p := page{body: b, etag: `"` + base64.RawURLEncoding.EncodeToString(sum[:16]) + `"`, ctype: ctype}
		files["/"+name] = p
		if path.Base(name) == "index.html" {
			dir := strings.TrimSuffix("/"+name, "index.html")
			files[dir] = p
			if dir != "/" {
				files[strings.TrimSuffix(dir, "/")] = p // "/share": the link has no slash before its "#"
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("server: pages: %w", err)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, v := range pageHeaders {
			w.Header().Set(k, v)
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		p, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", p.ctype)
		w.Header().Set("ETag", p.etag)
		if strings.HasPrefix(r.URL.Path, "/share") {
			// The lost person's page: no cache keeps it (a shared phone's
			// browser cache, a proxy in between); the page itself keeps its
			// queue of positions until they are acknowledged.
			w.Header().Set("Cache-Control", "no-store")
		} else {
			w.Header().Set("Cache-Control", "no-cache")
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(p.body))
	}), nil
}
