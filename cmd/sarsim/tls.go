package main

import (
	"net/http"

	"github.com/mountain-sar/sar/internal/tlsutil"
)

// httpTransport is the base URL and transport of the JSON gateway at
// addr, secured as c says (TLS unless addr is loopback or --insecure).
func httpTransport(c tlsutil.Client, addr string) (string, *http.Transport, error) {
	scheme, err := c.Scheme(addr)
	if err != nil {
		return "", nil, err
	}
	cfg, err := c.Config(addr)
	if err != nil {
		return "", nil, err
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = cfg
	return scheme + "://" + addr, t, nil
}
