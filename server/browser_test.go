package server_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// The share page is tested in real headless Chromium (Debian's chromium,
// installed by `make deps`), driven over the DevTools protocol.

// phoneUA is a cheap Android phone's Chrome.
const phoneUA = "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36"

// chromiumPath finds the browser: $SAR_CHROMIUM, else chromium on the PATH.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("SAR_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless_shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no chromium on the PATH: `make deps` installs Debian's chromium (or set SAR_CHROMIUM)")
	return ""
}

// startBrowser starts one headless Chromium for a test. Names in
// hostMap resolve to 127.0.0.1 (an origin that is not "localhost" is not a
// secure context: that is how the insecure page is tested).
func startBrowser(t *testing.T, hostMap ...string) context.Context {
	t.Helper()
	return startBrowserWith(t, nil, hostMap...)
}

// startBrowserWith is startBrowser with more command-line options.
func startBrowserWith(t *testing.T, extra []chromedp.ExecAllocatorOption, hostMap ...string) context.Context {
	t.Helper()
	opts := append(append([]chromedp.ExecAllocatorOption{}, extra...),
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-features", "Translate,MediaRouter,OptimizationHints"),
		chromedp.WindowSize(412, 915),
	)
	if len(hostMap) > 0 {
		var rules []string
		for _, h := range hostMap {
			rules = append(rules, "MAP "+h+" 127.0.0.1")
		}
		opts = append(opts, chromedp.Flag("host-resolver-rules", strings.Join(rules, ",")))
	}
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	bctx, bcancel := chromedp.NewContext(actx)
	t.Cleanup(bcancel)
	if err := chromedp.Do(bctx); err != nil { // start it now: a failure is the test's, not the first tab's
		t.Fatalf("starting chromium: %v", err)
	}
	return bctx
}

// phone is one tab in a fresh browser context (its own storage, like a
// new phone), emulating a 412×915 Android phone with a browser language.
type phone struct {
	t   *testing.T
	ctx context.Context
}

func newPhone(t *testing.T, b context.Context, lang string) *phone {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	ctx, cancel2 := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(cancel2)
	p := &phone{t: t, ctx: ctx}
	p.do(
		chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.Call(ctx, emulation.SetUserAgentOverride, emulation.SetUserAgentOverrideParams{UserAgent: phoneUA, AcceptLanguage: lang})
			return err
		}),
		chromedp.EmulateViewport(412, 915, chromedp.EmulateScale(1), chromedp.EmulateMobile, chromedp.EmulateTouch),
	)
	return p
}

func (p *phone) do(steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	if err := chromedp.Do(p.ctx, steps...); err != nil {
		p.t.Fatalf("browser: %v", err)
	}
}

// permission grants or denies geolocation to origin in this phone's
// browser context.
func (p *phone) permission(origin string, setting browser.PermissionSetting) {
	p.t.Helper()
	c := chromedp.FromContext(p.ctx)
	if _, err := chromedp.CallBrowser(p.ctx, browser.SetPermission, browser.SetPermissionParams{
		Permission: &browser.PermissionDescriptor{Name: "geolocation"}, Setting: setting, Origin: origin,
		BrowserContextID: c.BrowserContextID}); err != nil {
		p.t.Fatalf("Browser.setPermission: %v", err)
	}
}

// at puts the phone at a position (what the GPS would say).
func (p *phone) at(lat, lng, acc float64) {
	p.t.Helper()
	if _, err := chromedp.Call(p.ctx, emulation.SetGeolocationOverride, emulation.SetGeolocationOverrideParams{
		Latitude: &lat, Longitude: &lng, Accuracy: &acc}); err != nil {
		p.t.Fatalf("Emulation.setGeolocationOverride: %v", err)
	}
}

// eval returns the value of a JavaScript expression in the page.
func eval[T any](p *phone, expr string) T {
	p.t.Helper()
	v, err := chromedp.Run(p.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		p.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitFor waits until a JavaScript expression is truthy.
func (p *phone) waitFor(what, expr string) {
	p.t.Helper()
	if _, err := chromedp.Run(p.ctx, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(45*time.Second))); err != nil {
		p.t.Fatalf("waiting for %s (%s): %v; page says: %s", what, expr, err, eval[string](p, "document.body.innerText"))
	}
}

// text returns the visible text of the element with an id.
func (p *phone) text(id string) string {
	p.t.Helper()
	return eval[string](p, "(function(){var e=document.getElementById('"+id+"');return e&&!e.closest('[hidden]')?e.innerText:''})()")
}

// shot keeps a screenshot of the viewport as an artifact:
// $SAR_ARTIFACTS (default artifacts/ at the repository's root)/share/name.png.
func (p *phone) shot(name string) {
	p.t.Helper()
	png, err := chromedp.Run(p.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		p.t.Fatalf("screenshot %s: %v", name, err)
	}
	dir := os.Getenv("SAR_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "artifacts")
	}
	dir = filepath.Join(dir, "share")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		p.t.Fatalf("artifacts: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		p.t.Fatalf("artifacts: %v", err)
	}
}
