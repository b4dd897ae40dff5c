package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// Behind a reverse proxy or load balancer every connection comes from the
// proxy, and the client's address is in X-Forwarded-For, which the client
// can also write. The header is believed only as far as trusted proxies
// vouch for it: the list is read from the right (the entry the nearest
// proxy appended), skipping the addresses of trusted proxies, and the
// first address that is not one is the client. A client that writes the
// header itself only adds entries to the left of that address, which are
// never reached. With no trusted proxies the connection's address is the
// client, whatever the header says.

// ParseTrustedProxies reads a list of CIDRs (10.0.0.0/8, fd00::/8) and
// single addresses.
func ParseTrustedProxies(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if strings.Contains(s, "/") {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, fmt.Errorf("trusted proxies: %q is not a CIDR: %w", s, err)
			}
			if p.Bits() == 0 {
				return nil, fmt.Errorf("trusted proxies: %q trusts every address: anyone could choose the address the rate limits see", s)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, errors.New("trusted proxies: " + fmt.Sprintf("%q", s) + " is neither a CIDR nor an address")
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// trusted reports whether addr (an address without a port) is a trusted
// proxy.
func (s *Server) trusted(addr string) bool {
	if len(s.opt.TrustedProxies) == 0 {
		return false
	}
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range s.opt.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// realClient is the client's address for a connection from remote that
// carries the X-Forwarded-For entries xff (in order, all header lines).
func (s *Server) realClient(remote string, xff []string) string {
	if !s.trusted(remote) {
		return remote
	}
	entries := splitXFF(xff)
	for i := len(entries) - 1; i >= 0; i-- {
		if !s.trusted(entries[i]) {
			return entries[i]
		}
	}
	if len(entries) > 0 { // proxies all the way: the first one it names
		return entries[0]
	}
	return remote
}

// splitXFF splits X-Forwarded-For values into addresses without ports.
func splitXFF(values []string) []string {
	var out []string
	for _, v := range values {
		for e := range strings.SplitSeq(v, ",") {
			if e = strings.TrimSpace(e); e != "" {
				out = append(out, normalAddr(e))
			}
		}
	}
	return out
}

// normalAddr is an address without its port, brackets or IPv4-in-IPv6
// mapping; a string that is no address is kept (capped), as a key.
func normalAddr(s string) string {
	h := hostOf(s)
	if a, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
		return a.Unmap().String()
	}
	if len(h) > 64 {
		h = h[:64]
	}
	return h
}

// clientAddr is the address a call came from, without its port: the TCP
// peer of a gRPC call (or the client it forwards for, if it is a trusted
// proxy), or the HTTP client of a JSON call, which gatewayPeer found.
func (s *Server) clientAddr(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return ""
	}
	if a, ok := p.Addr.(httpAddr); ok {
		return string(a)
	}
	return s.realClient(normalAddr(p.Addr.String()), metadata.ValueFromIncomingContext(ctx, "x-forwarded-for"))
}

// httpClientAddr is the address of an HTTP request's client, as
// gatewayPeer will name it.
func (s *Server) httpClientAddr(r *http.Request) string {
	return s.realClient(normalAddr(r.RemoteAddr), r.Header.Values("X-Forwarded-For"))
}

// gatewayPeer names the HTTP client of a JSON call as the call's peer.
// The gateway appends the connection's address to the request's
// X-Forwarded-For (httpHandler joins the header's lines first, since the
// gateway reads only the first), so the last entry is the connection.
func (s *Server) gatewayPeer(ctx context.Context) context.Context {
	entries := splitXFF(metadata.ValueFromIncomingContext(ctx, "x-forwarded-for"))
	if len(entries) == 0 {
		return ctx
	}
	last := len(entries) - 1
	return peer.NewContext(ctx, &peer.Peer{Addr: httpAddr(s.realClient(entries[last], entries[:last]))})
}

// forwardedHTTPS reports whether a trusted proxy says the client's request
// came over HTTPS.
func (s *Server) forwardedHTTPS(r *http.Request) bool {
	if !s.trusted(normalAddr(r.RemoteAddr)) {
		return false
	}
	v := r.Header.Values("X-Forwarded-Proto")
	if len(v) == 0 {
		return false
	}
	last := v[len(v)-1]
	if i := strings.LastIndexByte(last, ','); i >= 0 {
		last = last[i+1:]
	}
	return strings.EqualFold(strings.TrimSpace(last), "https")
}
