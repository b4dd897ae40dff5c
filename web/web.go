// Package web holds the pages sard serves to browsers (the root page now;
// the share page and the console to come), as plain files embedded in the
// binary. Nothing here needs a build step: HTML, CSS and plain JavaScript
// modules, no inline scripts or styles (the Content-Security-Policy is
// default-src 'self'), no external resources. The server package serves
// them (server/pages.go).
package web

import (
	"embed"
	"io/fs"
)

//go:embed pages
var pages embed.FS

// FS returns the files at their URL paths: pages/index.html is "/".
func FS() fs.FS {
	sub, err := fs.Sub(pages, "pages")
	if err != nil {
		panic(err) // "pages" is a valid path: cannot happen
	}
	return sub
}
