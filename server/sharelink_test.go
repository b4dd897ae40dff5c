package server_test

import (
	"encoding/xml"
	"image"
	"image/color"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/app"
)

// TestShareLinkForTheOfficer: CreateShareLink gives the full link (at the
// public URL), texts to send in Chinese and English, and a QR code that
// scans back to the link; the console hears "link created", and only the
// page's first join from a device is "link opened".
func TestShareLinkForTheOfficer(t *testing.T) {
	e := startEnv(t, func(c *app.Config) { c.PublicURL = "https://sar.example.org/" })
	rec := e.recordNATS()
	op := e.operator("north")
	inc := e.createIncident(op)
	link := must[*sarv1.CreateShareLinkResponse](t, "CreateShareLink")(e.auth.CreateShareLink(e.as(op),
		&sarv1.CreateShareLinkRequest{IncidentId: inc.GetId(), Ttl: durationpb.New(36 * time.Hour)}))
	want := "https://sar.example.org/share#" + link.GetToken()
	if link.GetUrl() != want || link.GetUrlPath() != "/share#"+link.GetToken() {
		t.Fatalf("url %q, path %q; want %q", link.GetUrl(), link.GetUrlPath(), want)
	}
	texts := map[string]string{}
	for _, x := range link.GetTexts() {
		texts[x.GetLanguage()] = x.GetText()
	}
	if zh := texts["zh"]; !strings.HasSuffix(zh, want) || !strings.Contains(zh, "36小时") {
		t.Errorf("Chinese text %q: want the link last and the validity (36 hours)", zh)
	}
	if en := texts["en"]; !strings.HasSuffix(en, want) || !strings.Contains(en, "36 hours") {
		t.Errorf("English text %q: want the link last and the validity", en)
	}
	if got := scanQR(t, link.GetQrSvg()); got != want {
		t.Errorf("the QR code scans as %q, want %q", got, want)
	}
	pt := e.participant(op, inc.GetId(), link.GetParticipant().GetId())
	if pt.GetLinkState() != sarv1.CallerLinkState_CALLER_LINK_STATE_CREATED {
		t.Errorf("link state %v before any join, want CREATED", pt.GetLinkState())
	}

	caller := link.GetToken()
	j := e.join(caller, inc.GetId(), "phone-1")
	if d := time.Since(j.GetServerTime().AsTime()); j.GetServerTime() == nil || d < 0 || d > 5*time.Second {
		t.Errorf("JoinIncident server_time = %v, want the server's clock now", j.GetServerTime())
	}
	e.join(caller, inc.GetId(), "phone-1")                                                        // a reload: not opened again
	e.join(caller, inc.GetId(), "phone-2")                                                        // the link forwarded to another phone
	rec.waitLinkChanges(t, pt.GetId(), sarv1.ParticipantChange_PARTICIPANT_CHANGE_LINK_OPENED, 2) // two phones, one reloaded
	rec.waitLinkChanges(t, pt.GetId(), sarv1.ParticipantChange_PARTICIPANT_CHANGE_LINK_CREATED, 1)
	pt = e.participant(op, inc.GetId(), pt.GetId())
	if pt.GetLinkState() != sarv1.CallerLinkState_CALLER_LINK_STATE_OPENED || pt.GetDeviceKind() != "other" || pt.GetLinkOpenTime() == nil {
		t.Errorf("after joins: state %v, device kind %q (gRPC client: other), open time %v", pt.GetLinkState(), pt.GetDeviceKind(), pt.GetLinkOpenTime())
	}
}

// scanQR rasterises the QR code's SVG (one path of unit squares) and
// decodes it as a phone's camera would.
func scanQR(t *testing.T, svg string) string {
	t.Helper()
	var doc struct {
		ViewBox string `xml:"viewBox,attr"`
		Path    struct {
			D string `xml:"d,attr"`
		} `xml:"path"`
	}
	if err := xml.Unmarshal([]byte(svg), &doc); err != nil {
		t.Fatalf("QR SVG is not XML: %v", err)
	}
	var n int
	if f := strings.Fields(doc.ViewBox); len(f) == 4 {
		n, _ = strconv.Atoi(f[2])
	}
	if n < 21 {
		t.Fatalf("QR SVG viewBox %q", doc.ViewBox)
	}
	const scale = 4
	img := image.NewGray(image.Rect(0, 0, n*scale, n*scale))
	for i := range img.Pix {
		img.Pix[i] = 255
	}
	runs := regexp.MustCompile(`M(\d+) (\d+)h(\d+)v1h-\d+z`).FindAllStringSubmatch(doc.Path.D, -1)
	if len(runs) == 0 {
		t.Fatalf("QR SVG path has no modules: %.80s", doc.Path.D)
	}
	for _, r := range runs {
		x, _ := strconv.Atoi(r[1])
		y, _ := strconv.Atoi(r[2])
		w, _ := strconv.Atoi(r[3])
		for px := x * scale; px < (x+w)*scale; px++ {
			for py := y * scale; py < (y+1)*scale; py++ {
				img.SetGray(px, py, color.Gray{})
			}
		}
	}
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		t.Fatal(err)
	}
	res, err := qrcode.NewQRCodeReader().Decode(bmp, nil)
	if err != nil {
		t.Fatalf("QR code does not scan: %v", err)
	}
	return res.GetText()
}

// TestCredentialRefusals: an expired and a revoked link say so (to the
// holder of the real secret only); a forged, unknown or malformed token
// gets one answer, whichever door it knocks on.
func TestCredentialRefusals(t *testing.T) {
	e := startEnv(t)
	op := e.operator("north")
	inc := e.createIncident(op)
	mk := func() *sarv1.CreateShareLinkResponse {
		return must[*sarv1.CreateShareLinkResponse](t, "CreateShareLink")(e.auth.CreateShareLink(e.as(op),
			&sarv1.CreateShareLinkRequest{IncidentId: inc.GetId()}))
	}
	expired, revoked := mk(), mk()
	e.expireCredential(expired.GetPrincipal())
	must[*sarv1.RevokeCredentialResponse](t, "RevokeCredential")(e.auth.RevokeCredential(e.as(op),
		&sarv1.RevokeCredentialRequest{CredentialId: revoked.GetPrincipal().GetCredentialId()}))
	forged := []byte(revoked.GetToken())
	forged[20] = map[bool]byte{true: 'B', false: 'A'}[forged[20] == 'A']

	reason := func(token string) (codes.Code, string) {
		_, err := e.auth.WhoAmI(e.as(token), &sarv1.WhoAmIRequest{})
		st := status.Convert(err)
		for _, d := range st.Details() {
			if info, ok := d.(*errdetails.ErrorInfo); ok {
				return st.Code(), info.GetReason()
			}
		}
		return st.Code(), ""
	}
	for _, tc := range []struct{ name, token, want string }{
		{"expired", expired.GetToken(), "CREDENTIAL_EXPIRED"},
		{"revoked", revoked.GetToken(), "CREDENTIAL_REVOKED"},
		{"forged secret of a revoked link", string(forged), "CREDENTIAL_INVALID"},
		{"unknown", "sar_" + strings.Repeat("A", 43), "CREDENTIAL_INVALID"},
		{"malformed", "sar_short", "CREDENTIAL_INVALID"},
	} {
		if code, r := reason(tc.token); code != codes.Unauthenticated || r != tc.want {
			t.Errorf("%s token: %v %q, want Unauthenticated %q", tc.name, code, r, tc.want)
		}
	}

	// Over HTTP, a malformed token (refused before the gateway decodes
	// anything) and a well-formed unknown one get the same answer.
	get := func(auth string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+e.app.HTTPAddr()+"/v1/whoami", nil)
		req.Header.Set("Authorization", auth)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	c1, b1 := get("Bearer sar_short")
	c2, b2 := get("Bearer sar_" + strings.Repeat("A", 43))
	if c1 != http.StatusUnauthorized || c1 != c2 || b1 != b2 {
		t.Errorf("malformed token: %d %s\nunknown token: %d %s\nwant the same 401", c1, b1, c2, b2)
	}
	if c, b := get("Bearer " + expired.GetToken()); c != http.StatusUnauthorized || !strings.Contains(b, "CREDENTIAL_EXPIRED") {
		t.Errorf("expired link over HTTP: %d %s", c, b)
	}
}

// TestSharePageHeaders: the page is served at the link's path with
// strict headers, and nothing of it is stored.
func TestSharePageHeaders(t *testing.T) {
	e := startEnv(t)
	for _, path := range []string{"/share", "/share/", "/share/share.js", "/share/share.css"} {
		resp, err := http.Get("http://" + e.app.HTTPAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("GET %s: %d, Cache-Control %q; want 200, no-store", path, resp.StatusCode, resp.Header.Get("Cache-Control"))
		}
		checkPageHeaders(t, "GET "+path, resp.Header)
	}
}

// TestAddressRateLimit: from one address, refused credentials spend one
// budget and share-link calls another, so guessing never locks out a real
// lost person's page; an operator's calls spend neither.
func TestAddressRateLimit(t *testing.T) {
	e := startEnv(t, func(c *app.Config) {
		c.AddrRateLimit, c.AddrRateBurst = 0.01, 4
		c.LinkRateLimit, c.LinkRateBurst = 1000, 1000
	})
	op := e.operator("north")
	inc := e.createIncident(op)
	link := must[*sarv1.CreateShareLinkResponse](t, "CreateShareLink")(e.auth.CreateShareLink(e.as(op),
		&sarv1.CreateShareLinkRequest{IncidentId: inc.GetId()}))
	codesOf := func(token string, n int) (out []codes.Code) {
		for range n {
			_, err := e.auth.WhoAmI(e.as(token), &sarv1.WhoAmIRequest{})
			out = append(out, status.Code(err))
		}
		return out
	}
	if s := codesString(codesOf("sar_"+strings.Repeat("B", 43), 6)); s != "[Unauthenticated Unauthenticated Unauthenticated Unauthenticated ResourceExhausted ResourceExhausted]" {
		t.Errorf("6 guesses from one address: %s, want 4 answered then refused", s)
	}
	if s := codesString(codesOf(link.GetToken(), 6)); s != "[OK OK OK OK ResourceExhausted ResourceExhausted]" {
		t.Errorf("6 link calls from the guessing address: %s, want 4 (a budget of their own) then refused", s)
	}
	if c := codesOf(op, 20); codesString(c[19:]) != "[OK]" {
		t.Errorf("operator calls after the address's budgets are spent: %v, want OK", c)
	}
	// Through the JSON door the same: the gateway names the connection's
	// address, whatever X-Forwarded-For the client sends.
	req, _ := http.NewRequest(http.MethodGet, "http://"+e.app.HTTPAddr()+"/v1/whoami", nil)
	req.Header.Set("Authorization", "Bearer sar_"+strings.Repeat("C", 43))
	req.Header.Set("X-Forwarded-For", "203.0.113.7")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("a guess over HTTP with a forged X-Forwarded-For: %d, want 429 (the address's budget is spent)", resp.StatusCode)
	}
}

// TestLinkRateLimit: one share link gets a small budget of its own.
func TestLinkRateLimit(t *testing.T) {
	e := startEnv(t, func(c *app.Config) {
		c.LinkRateLimit, c.LinkRateBurst = 0.01, 3
		c.AddrRateLimit, c.AddrRateBurst = 1000, 1000
	})
	op := e.operator("north")
	inc := e.createIncident(op)
	link := must[*sarv1.CreateShareLinkResponse](t, "CreateShareLink")(e.auth.CreateShareLink(e.as(op),
		&sarv1.CreateShareLinkRequest{IncidentId: inc.GetId()}))
	var got []codes.Code
	for range 5 {
		_, err := e.auth.WhoAmI(e.as(link.GetToken()), &sarv1.WhoAmIRequest{})
		got = append(got, status.Code(err))
	}
	if s := codesString(got); s != "[OK OK OK ResourceExhausted ResourceExhausted]" {
		t.Errorf("a link's calls: %s, want 3 then refused", s)
	}
}

func codesString(cs []codes.Code) string {
	s := make([]string, len(cs))
	for i, c := range cs {
		s[i] = c.String()
	}
	return "[" + strings.Join(s, " ") + "]"
}
