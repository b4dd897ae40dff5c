package server_test

import (
	"crypto/x509"
	"encoding/pem"
	"net"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/tlsutil"
)

// TestSharePageOverHTTPS: a phone opens a share link on a host name (not
// loopback, which browsers count as secure anyway) over HTTPS, with the
// test certificate trusted by its public key, and gets a position to the
// server: HTTPS is what makes the page a secure context.
func TestSharePageOverHTTPS(t *testing.T) {
	ca := newTestCA(t, "test CA")
	e, files := startTLSEnv(t, ca)
	c, k := ca.issue(101, "sar.test", "127.0.0.1", "localhost")
	writeCert(t, files, c, k)
	if err := e.app.ReloadTLS(); err != nil {
		t.Fatalf("ReloadTLS: %v", err)
	}
	blk, _ := pem.Decode(c)
	leaf := must[*x509.Certificate](t, "parse")(x509.ParseCertificate(blk.Bytes))

	op := e.operator("north")
	inc := e.createIncident(op)
	link := must[*sarv1.CreateShareLinkResponse](t, "CreateShareLink")(e.auth.CreateShareLink(e.as(op),
		&sarv1.CreateShareLinkRequest{IncidentId: inc.GetId()}))
	if !strings.HasPrefix(link.GetUrl(), "https://"+e.app.HTTPAddr()+"/share#") {
		t.Fatalf("link %q: want https on the listener's address", link.GetUrl())
	}
	_, port, _ := net.SplitHostPort(e.app.HTTPAddr())
	origin := "https://sar.test:" + port
	url := origin + strings.TrimPrefix(link.GetUrl(), "https://"+e.app.HTTPAddr())

	b := startBrowserWith(t, []chromedp.ExecAllocatorOption{
		chromedp.Flag("ignore-certificate-errors-spki-list", tlsutil.SPKIHash(leaf)),
	}, "sar.test")
	p := newPhone(t, b, "en-GB,en;q=0.9")
	p.permission(origin, browser.PermissionSettingGranted)
	p.at(30.2458, 119.7156, 12)
	p.do(chromedp.Navigate(url))
	if proto := eval[string](p, "location.protocol"); proto != "https:" {
		t.Fatalf("page protocol %q, want https:", proto)
	}
	if !eval[bool](p, "window.isSecureContext") {
		t.Fatal("the page over HTTPS is not a secure context")
	}
	p.waitFor("the button", "!document.getElementById('start').disabled")
	p.do(chromedp.Click(chromedp.ID("start")))
	p.waitFor("the first fix acknowledged", "document.getElementById('state').className==='state ok'")
	fixes := e.waitTrack(op, inc.GetId(), link.GetParticipant().GetId(), 1)
	if f := fixes[0]; f.GetSource() != sarv1.FixSource_FIX_SOURCE_BROWSER || f.GetHorizontalAccuracyM() != 12 {
		t.Errorf("stored fix %v, want the browser's ±12 m", f)
	}
	p.shot("en-https-sharing")
}
