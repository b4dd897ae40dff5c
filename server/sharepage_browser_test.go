package server_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
)

// TestSharePageInBrowser opens a share link in headless Chromium as a lost
// person's phone would: permission, positions, a move, no network, a
// reload with fixes queued, the network back. Every fix must arrive once
// and in order, in Redis and as NATS events.
func TestSharePageInBrowser(t *testing.T) {
	var logs lockedBuffer
	e := startEnvLogging(t, &logs)
	rec := e.recordNATS()
	op := e.operator("north")
	inc := e.createIncident(op)
	link := must[*sarv1.CreateShareLinkResponse](t, "CreateShareLink")(e.auth.CreateShareLink(e.as(op),
		&sarv1.CreateShareLinkRequest{IncidentId: inc.GetId(), DisplayName: "Caller (mother)"}))
	origin := "http://" + e.app.HTTPAddr()
	if want := origin + "/share#" + link.GetToken(); link.GetUrl() != want {
		t.Fatalf("link url = %q, want %q", link.GetUrl(), want)
	}
	callerID := link.GetParticipant().GetId()

	b := startBrowser(t)
	p := newPhone(t, b, "zh-CN,zh;q=0.9")
	p.permission(origin, browser.PermissionSettingGranted)
	p.at(30.2458, 119.7156, 12)
	p.do(chromedp.Navigate(link.GetUrl()))
	p.waitFor("the button", "!document.getElementById('start').disabled")
	if h := p.text("headline"); h != "救援人员正在找您" {
		t.Errorf("headline = %q, want the Chinese one (browser language zh-CN)", h)
	}
	p.shot("zh-1-open")

	// Opening the page is the "link opened" event, before any position.
	part := e.waitParticipant(op, inc.GetId(), callerID, func(pt *sarv1.Participant) bool {
		return pt.GetLinkState() == sarv1.CallerLinkState_CALLER_LINK_STATE_OPENED
	})
	if part.GetDeviceKind() != "android" || part.GetLinkOpenTime() == nil {
		t.Errorf("opened participant: device kind %q, open time %v; want android and a time", part.GetDeviceKind(), part.GetLinkOpenTime())
	}
	rec.waitLinkChanges(t, callerID, sarv1.ParticipantChange_PARTICIPANT_CHANGE_LINK_CREATED, 1)
	rec.waitLinkChanges(t, callerID, sarv1.ParticipantChange_PARTICIPANT_CHANGE_LINK_OPENED, 1)

	p.do(chromedp.Click(chromedp.ID("start")))
	p.waitFor("the first fix acknowledged", "document.getElementById('state').className==='state ok'")
	e.waitTrack(op, inc.GetId(), callerID, 1)
	if got := p.text("state"); got != "救援人员能看到您的位置" {
		t.Errorf("state = %q", got)
	}
	p.waitFor("the cell of the stored fix", "document.getElementById('cell').textContent.length>10")
	p.shot("zh-2-sharing")

	// Moving 300 m: a new fix (after FIX_SOON_MS).
	p.at(30.2485, 119.7156, 10)
	e.waitTrack(op, inc.GetId(), callerID, 2)

	// No network: fixes queue on the phone.
	p.network(true, "")
	p.at(30.2500, 119.7170, 9)
	p.waitFor("one fix queued", "document.getElementById('queued').textContent==='1'")
	time.Sleep(3500 * time.Millisecond)
	p.at(30.2520, 119.7190, 9)
	p.waitFor("two fixes queued", "document.getElementById('queued').textContent==='2'")
	p.waitFor("the offline message", "document.getElementById('state').className==='state bad'")
	p.shot("zh-3-offline")
	if n := len(e.track(op, inc.GetId(), callerID)); n != 2 {
		t.Fatalf("offline: %d fixes stored, want still 2", n)
	}

	// A reload while the API is still unreachable (the page itself loads):
	// the queue survives and sharing goes on without the button.
	p.network(false, "*://*:*/v1/*")
	p.do(chromedp.Reload())
	p.waitFor("the queue after the reload", "document.getElementById('queued').textContent==='2'")
	p.waitFor("sharing resumed after the reload", "document.getElementById('start').hidden")
	time.Sleep(time.Second)
	if q := p.text("queued"); q != "2" {
		t.Errorf("after the reload, %s fixes queued, want 2 (the same reading is not queued again)", q)
	}
	p.at(30.2540, 119.7210, 9) // sharing goes on without the button
	p.waitFor("a third fix queued", "document.getElementById('queued').textContent==='3'")
	p.shot("zh-4-reloaded-offline")
	if n := len(e.track(op, inc.GetId(), callerID)); n != 2 {
		t.Fatalf("API blocked: %d fixes stored, want still 2", n)
	}

	// The network returns: everything queued arrives, once, in order.
	p.network(false, "")
	p.waitFor("the queue drained", "document.getElementById('queued').hidden && document.getElementById('state').className==='state ok'")
	e.waitTrack(op, inc.GetId(), callerID, 5)
	time.Sleep(time.Second) // a late or repeated send, if any, would land now
	fixes := e.track(op, inc.GetId(), callerID)
	// The server drops a fix sent twice; its counter says whether the page
	// sent one twice.
	if d := e.metric("sar_fixes_duplicate_total"); d != 0 {
		t.Errorf("the page sent %v fixes again after they were stored, want 0", d)
	}
	var seqs []uint64
	for _, f := range fixes {
		seqs = append(seqs, f.GetSequence())
	}
	if fmt.Sprint(seqs) != "[1 2 3 4 5]" {
		t.Errorf("stored sequences = %v, want [1 2 3 4 5] (every fix once, in order)", seqs)
	}
	for i := 1; i < len(fixes); i++ {
		if !fixes[i].GetTime().AsTime().After(fixes[i-1].GetTime().AsTime()) {
			t.Errorf("fix %d at %v is not after fix %d at %v", fixes[i].GetSequence(), fixes[i].GetTime().AsTime(),
				fixes[i-1].GetSequence(), fixes[i-1].GetTime().AsTime())
		}
	}
	if f := fixes[2]; f.GetSource() != sarv1.FixSource_FIX_SOURCE_BROWSER || f.GetHorizontalAccuracyM() != 9 {
		t.Errorf("queued fix stored as %v ±%v m, want a browser fix ±9 m", f.GetSource(), f.GetHorizontalAccuracyM())
	}
	seen := rec.sequences(callerID)
	if fmt.Sprint(seen) != "[1 2 3 4 5]" {
		t.Errorf("NATS positions events carried sequences %v, want [1 2 3 4 5]", seen)
	}
	p.shot("zh-5-delivered")

	// English, by the switch.
	p.do(chromedp.Click(chromedp.ID("lang")))
	if h := p.text("headline"); h != "Rescuers are looking for you" {
		t.Errorf("after the switch, headline = %q", h)
	}
	p.shot("en-5-delivered")

	// A second link (the officer sent a new one) opened on the same phone
	// is a participant of its own, with a device of its own.
	link2 := must[*sarv1.CreateShareLinkResponse](t, "CreateShareLink")(e.auth.CreateShareLink(e.as(op),
		&sarv1.CreateShareLinkRequest{IncidentId: inc.GetId(), DisplayName: "Caller (daughter)"}))
	p.do(chromedp.Navigate(link2.GetUrl()), chromedp.Sleep(time.Second)) // only the fragment changes: the page reloads itself
	p.waitFor("the second link's button", "!document.getElementById('start').disabled")
	p.do(chromedp.Click(chromedp.ID("start")))
	if f := e.waitTrack(op, inc.GetId(), link2.GetParticipant().GetId(), 1); f[0].GetSequence() != 1 {
		t.Errorf("the second link's first fix has sequence %d, want 1 (its own device)", f[0].GetSequence())
	}
	p.do(chromedp.Navigate(link.GetUrl()), chromedp.Sleep(time.Second))
	p.waitFor("the first link sharing again", "document.getElementById('state').className==='state ok'")

	// The subject is reported found: the page hears it with its next send.
	must[*sarv1.ReportSubjectFoundResponse](t, "ReportSubjectFound")(e.inc.ReportSubjectFound(e.as(op),
		&sarv1.ReportSubjectFoundRequest{IncidentId: inc.GetId(), Position: &sarv1.LatLng{Lat: 30.2541, Lng: 119.7211},
			Condition: sarv1.SubjectCondition_SUBJECT_CONDITION_UNINJURED}))
	time.Sleep(5 * time.Second) // the page refreshes its status with a send at most every 5 s
	p.at(30.2560, 119.7230, 9)
	p.waitFor("the found message", "document.getElementById('phase').textContent.indexOf('found you')>=0")
	p.shot("en-6-found")

	// The incident closes: the page says so and stops.
	must[*sarv1.CloseIncidentResponse](t, "CloseIncident")(e.inc.CloseIncident(e.as(op), &sarv1.CloseIncidentRequest{IncidentId: inc.GetId(), Outcome: sarv1.IncidentOutcome_INCIDENT_OUTCOME_FOUND_ALIVE}))
	p.do(chromedp.Reload())
	p.waitFor("the closed message", "document.getElementById('phase').textContent.indexOf('ended')>=0")
	p.shot("en-7-closed")

	// The token never reaches a log: the page sends it only in a header.
	if l := logs.String(); strings.Contains(l, link.GetToken()) || !strings.Contains(l, "share link opened") {
		t.Errorf("the server's debug log holds the link's token, or misses the link's opening:\n%.2000s", l)
	}
}

// lockedBuffer is a bytes.Buffer that a logger and a test share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestSharePageFastClock: a phone whose clock runs 20 minutes fast still
// gets its first fix stored, at the right time (JoinIncident's server_time
// corrects it; the server refuses fixes more than 5 minutes ahead).
func TestSharePageFastClock(t *testing.T) {
	e := startEnv(t)
	op := e.operator("north")
	inc := e.createIncident(op)
	link := must[*sarv1.CreateShareLinkResponse](t, "CreateShareLink")(e.auth.CreateShareLink(e.as(op),
		&sarv1.CreateShareLinkRequest{IncidentId: inc.GetId()}))
	origin := "http://" + e.app.HTTPAddr()
	b := startBrowser(t)
	p := newPhone(t, b, "en-GB,en;q=0.9")
	p.permission(origin, browser.PermissionSettingGranted)
	p.skewClock(20 * time.Minute)
	p.at(30.2458, 119.7156, 15)
	p.do(chromedp.Navigate(link.GetUrl()))
	if skew := eval[float64](p, "Date.now()") - float64(time.Now().UnixMilli()); skew < 19*60e3 {
		t.Fatalf("the page's clock is %v ahead, want 20 min (the skew did not apply)", time.Duration(skew)*time.Millisecond)
	}
	p.waitFor("the button", "!document.getElementById('start').disabled")
	if h := p.text("headline"); h != "Rescuers are looking for you" {
		t.Errorf("headline = %q, want the English one (browser language en-GB)", h)
	}
	p.shot("en-1-open")
	p.do(chromedp.Click(chromedp.ID("start")))
	fixes := e.waitTrack(op, inc.GetId(), link.GetParticipant().GetId(), 1)
	if d := time.Since(fixes[0].GetTime().AsTime()); d < -30*time.Second || d > 30*time.Second {
		t.Errorf("first fix stored at %v, %v from now; want the corrected time", fixes[0].GetTime().AsTime(), d)
	}
	p.waitFor("sharing", "document.getElementById('state').className==='state ok'")
	p.shot("en-2-sharing")
}

// TestSharePageRefusals: a denied permission, an expired, a revoked and a
// forged link, and a page served over plain HTTP to another host, each
// show their message; the dead links write nothing.
func TestSharePageRefusals(t *testing.T) {
	e := startEnv(t)
	op := e.operator("north")
	inc := e.createIncident(op)
	newLink := func() *sarv1.CreateShareLinkResponse {
		return must[*sarv1.CreateShareLinkResponse](t, "CreateShareLink")(e.auth.CreateShareLink(e.as(op),
			&sarv1.CreateShareLinkRequest{IncidentId: inc.GetId(), Ttl: durationpb.New(time.Hour)}))
	}
	origin := "http://" + e.app.HTTPAddr()
	b := startBrowser(t, "insecure.test")

	notice := func(p *phone, kind, title string) {
		t.Helper()
		p.waitFor(kind+" notice", "document.getElementById('notice').getAttribute('data-kind')==='"+kind+"'")
		if got := p.text("notice-title"); got != title {
			t.Errorf("%s notice title = %q, want %q", kind, got, title)
		}
	}

	t.Run("denied", func(t *testing.T) {
		link := newLink()
		for _, lang := range []string{"zh", "en"} {
			p := newPhone(t, b, lang)
			p.permission(origin, browser.PermissionSettingDenied)
			p.do(chromedp.Navigate(link.GetUrl()))
			p.waitFor("the button", "!document.getElementById('start').disabled")
			p.do(chromedp.Click(chromedp.ID("start")))
			notice(p, "denied", map[string]string{"zh": "没有位置权限", "en": "Location access is off"}[lang])
			if n := eval[int](p, "document.querySelectorAll('#notice-steps li').length"); n != 3 {
				t.Errorf("denied: %d ways to turn location on, want 3 (Chrome, WeChat, Safari)", n)
			}
			p.shot(lang + "-7-denied")
		}
	})

	dead := func(t *testing.T, link *sarv1.CreateShareLinkResponse, kind, title, shot string) {
		t.Helper()
		p := newPhone(t, b, "zh-CN")
		p.permission(origin, browser.PermissionSettingGranted)
		p.at(30.2458, 119.7156, 12)
		p.do(chromedp.Navigate(link.GetUrl()))
		notice(p, kind, title)
		p.shot(shot)
		time.Sleep(500 * time.Millisecond)
		pt := e.participant(op, inc.GetId(), link.GetParticipant().GetId())
		if pt.GetLinkState() != sarv1.CallerLinkState_CALLER_LINK_STATE_CREATED || len(pt.GetDeviceIds()) != 0 || pt.GetLastFix() != nil {
			t.Errorf("a %s link wrote something: %v", kind, pt)
		}
	}
	t.Run("expired", func(t *testing.T) {
		link := newLink()
		e.expireCredential(link.GetPrincipal())
		dead(t, link, "expired", "链接已过期", "zh-8-expired")
	})
	t.Run("revoked", func(t *testing.T) {
		link := newLink()
		must[*sarv1.RevokeCredentialResponse](t, "RevokeCredential")(e.auth.RevokeCredential(e.as(op),
			&sarv1.RevokeCredentialRequest{CredentialId: link.GetPrincipal().GetCredentialId()}))
		dead(t, link, "revoked", "链接已停用", "zh-9-revoked")
	})
	t.Run("forged", func(t *testing.T) {
		link := newLink()
		forged := proto.Clone(link).(*sarv1.CreateShareLinkResponse)
		tok := []byte(link.GetToken())
		tok[10] = map[bool]byte{true: 'B', false: 'A'}[tok[10] == 'A'] // still well formed; another secret
		forged.Url = strings.Replace(link.GetUrl(), link.GetToken(), string(tok), 1)
		dead(t, forged, "invalid", "链接无效", "zh-10-invalid")
	})
	t.Run("insecure", func(t *testing.T) {
		link := newLink()
		p := newPhone(t, b, "zh-CN")
		p.do(chromedp.Navigate(strings.Replace(link.GetUrl(), "127.0.0.1", "insecure.test", 1)))
		notice(p, "insecure", "此页面无法获取位置")
		if eval[bool](p, "window.isSecureContext") {
			t.Fatal("http://insecure.test is a secure context: the test shows nothing")
		}
		p.shot("zh-11-insecure")
		// The page still joined: the console sees that the link was opened.
		e.waitParticipant(op, inc.GetId(), link.GetParticipant().GetId(), func(pt *sarv1.Participant) bool {
			return pt.GetLinkState() == sarv1.CallerLinkState_CALLER_LINK_STATE_OPENED
		})
	})
}

// network cuts the phone off (offline) or, with a URL pattern, fails only
// the requests that match it; network(false, "") restores it. navigator's
// online state follows offline, so the page hears "offline" and "online".
func (p *phone) network(offline bool, failPattern string) {
	p.t.Helper()
	conds := []*network.Conditions{}
	if offline {
		conds = append(conds, &network.Conditions{Offline: true, DownloadThroughput: -1, UploadThroughput: -1})
	} else if failPattern != "" {
		conds = append(conds, &network.Conditions{URLPattern: failPattern, Offline: true, DownloadThroughput: -1, UploadThroughput: -1})
	}
	if _, err := chromedp.Call(p.ctx, network.EmulateNetworkConditionsByRule, network.EmulateNetworkConditionsByRuleParams{
		MatchedNetworkConditions: conds}); err != nil {
		p.t.Fatalf("Network.emulateNetworkConditionsByRule: %v", err)
	}
	if _, err := chromedp.Call(p.ctx, network.OverrideNetworkState, network.OverrideNetworkStateParams{
		Offline: offline, DownloadThroughput: -1, UploadThroughput: -1}); err != nil {
		p.t.Fatalf("Network.overrideNetworkState: %v", err)
	}
}

// skewClock makes the phone's clock run ahead by d, for Date and for the
// positions' timestamps (which a phone takes from the same clock).
func (p *phone) skewClock(d time.Duration) {
	p.t.Helper()
	src := fmt.Sprintf(`(function(){
  var skew = %d, RealDate = Date;
  function SkewedDate(a, b, c, d, e, f, g) {
    if (!(this instanceof SkewedDate)) { return new RealDate(RealDate.now() + skew).toString(); }
    if (arguments.length === 0) { return new RealDate(RealDate.now() + skew); }
    if (arguments.length === 1) { return new RealDate(a); }
    return new RealDate(a, b, c === undefined ? 1 : c, d || 0, e || 0, f || 0, g || 0);
  }
  SkewedDate.prototype = RealDate.prototype;
  SkewedDate.now = function () { return RealDate.now() + skew; };
  SkewedDate.parse = RealDate.parse;
  SkewedDate.UTC = RealDate.UTC;
  Date = SkewedDate;
  var geo = navigator.geolocation, watch = geo.watchPosition.bind(geo), get = geo.getCurrentPosition.bind(geo);
  function shift(ok) { return function (pos) { ok({ coords: pos.coords, timestamp: pos.timestamp + skew }); }; }
  geo.watchPosition = function (ok, bad, o) { return watch(shift(ok), bad, o); };
  geo.getCurrentPosition = function (ok, bad, o) { return get(shift(ok), bad, o); };
})();`, d.Milliseconds())
	if _, err := chromedp.Call(p.ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: src}); err != nil {
		p.t.Fatalf("Page.addScriptToEvaluateOnNewDocument: %v", err)
	}
}

// participant returns one participant of an incident as an operator sees it.
func (e *env) participant(op, incident, id string) *sarv1.Participant {
	e.t.Helper()
	ps := must[*sarv1.ListParticipantsResponse](e.t, "ListParticipants")(e.inc.ListParticipants(e.as(op),
		&sarv1.ListParticipantsRequest{IncidentId: incident}))
	for _, pt := range ps.GetParticipants() {
		if pt.GetId() == id {
			return pt
		}
	}
	e.t.Fatalf("participant %s not listed", id)
	return nil
}

func (e *env) waitParticipant(op, incident, id string, ok func(*sarv1.Participant) bool) *sarv1.Participant {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		pt := e.participant(op, incident, id)
		if ok(pt) {
			return pt
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("participant %s never got there: %v", id, pt)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// track returns a participant's stored fixes, oldest first.
func (e *env) track(op, incident, participant string) []*sarv1.LocationFix {
	e.t.Helper()
	return must[*sarv1.GetTrackResponse](e.t, "GetTrack")(e.loc.GetTrack(e.as(op), &sarv1.GetTrackRequest{
		IncidentId: incident, ParticipantId: participant})).GetFixes()
}

func (e *env) waitTrack(op, incident, participant string, n int) []*sarv1.LocationFix {
	e.t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for {
		fx := e.track(op, incident, participant)
		if len(fx) >= n {
			return fx
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%d fixes stored after 45 s, want %d", len(fx), n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// expireCredential moves a credential's expiry into the past, in Redis,
// as the passing of its time would.
func (e *env) expireCredential(p *sarv1.Principal) {
	e.t.Helper()
	c := proto.Clone(p).(*sarv1.Principal)
	c.ExpireTime = timestamppb.New(time.Now().Add(-time.Minute))
	b, err := proto.Marshal(c)
	if err != nil {
		e.t.Fatal(err)
	}
	key := "sar:cred:{" + p.GetCredentialId() + "}"
	if n, err := e.rdb.Exists(context.Background(), key).Result(); err != nil || n != 1 {
		e.t.Fatalf("credential record %s: exists %d, %v", key, n, err)
	}
	if err := e.rdb.HSet(context.Background(), key, "pb", b).Err(); err != nil {
		e.t.Fatal(err)
	}
}

// waitLinkChanges waits until n events of a change came for a caller, and
// fails if more come.
func (r *natsRecorder) waitLinkChanges(t *testing.T, participant string, change sarv1.ParticipantChange, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for r.linkChanges(participant, change) < n && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	if got := r.linkChanges(participant, change); got != n {
		t.Errorf("%d %v events for %s, want %d", got, change, participant, n)
	}
}

// metric reads a counter or gauge without labels from the server's
// /metrics.
func (e *env) metric(name string) float64 {
	e.t.Helper()
	resp, err := http.Get("http://" + e.app.HTTPAddr() + "/metrics")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				e.t.Fatalf("metric %s: %q", name, line)
			}
			return f
		}
	}
	e.t.Fatalf("no metric %s on /metrics", name)
	return 0
}

// linkChanges counts a caller's participant events of one change.
func (r *natsRecorder) linkChanges(participant string, change sarv1.ParticipantChange) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n, seen := 0, map[string]bool{}
	for _, ev := range r.events {
		pj := ev.GetParticipantJoined()
		if pj.GetParticipant().GetId() == participant && pj.GetChange() == change && !seen[ev.GetId()] {
			seen[ev.GetId()] = true
			n++
		}
	}
	return n
}

// sequences lists the fix sequences of a participant's positions events,
// in the order they came.
func (r *natsRecorder) sequences(participant string) []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []uint64
	for _, ev := range r.events {
		if pe := ev.GetPositions(); pe.GetParticipantId() == participant {
			for _, f := range pe.GetFixes() {
				out = append(out, f.GetSequence())
			}
		}
	}
	return out
}

// TestSharePageRescuersOnTheWay: the page tells the lost person that a
// team is on the way and how far the nearest rescuers are.
func TestSharePageRescuersOnTheWay(t *testing.T) {
	e := startEnv(t)
	c := e.callout()
	link := must[*sarv1.CreateShareLinkResponse](t, "CreateShareLink")(e.auth.CreateShareLink(e.as(c.op),
		&sarv1.CreateShareLinkRequest{IncidentId: c.inc}))
	k9 := c.rescuers["blue-sky/k9"]
	e.join(k9, c.inc, "k9-phone")
	task := e.offer(c, sarv1.TaskKind_TASK_KIND_GO_TO_POINT, "blue-sky", "k9", func(r *sarv1.CreateTaskRequest) { r.Point = ipp })
	must[*sarv1.AcceptTaskResponse](t, "accept")(e.tasks().AcceptTask(e.as(k9), &sarv1.AcceptTaskRequest{IncidentId: c.inc, TaskId: task.GetId(),
		Eta: durationpb.New(20 * time.Minute)}))
	ack := must[*sarv1.ReportFixesResponse](t, "ReportFixes")(e.loc.ReportFixes(e.as(k9), &sarv1.ReportFixesRequest{Batch: &sarv1.FixBatch{
		IncidentId: c.inc, DeviceId: "k9-phone", Fixes: []*sarv1.LocationFix{fixAt(1, east(1234))}}})).GetAck()
	if len(ack.GetStored()) != 1 {
		t.Fatalf("rescuer fix not stored: %v", ack)
	}

	origin := "http://" + e.app.HTTPAddr()
	b := startBrowser(t)
	p := newPhone(t, b, "zh-CN")
	p.permission(origin, browser.PermissionSettingGranted)
	p.at(ipp.GetLat(), ipp.GetLng(), 10)
	p.do(chromedp.Navigate(link.GetUrl()))
	p.waitFor("the button", "!document.getElementById('start').disabled")
	p.do(chromedp.Click(chromedp.ID("start")))
	e.waitTrack(c.op, c.inc, link.GetParticipant().GetId(), 1)
	// The status read at the join knew no caller position yet; the next
	// send brings a fresh one.
	time.Sleep(5 * time.Second)
	p.at(ipp.GetLat()+0.0003, ipp.GetLng(), 10)
	p.waitFor("the team on the way", "document.getElementById('phase').textContent==='救援队已出发'")
	p.waitFor("the nearest rescuers", "document.getElementById('nearest').textContent==='最近的救援人员离您约 1.2公里'")
	p.shot("zh-12-on-the-way")
}
