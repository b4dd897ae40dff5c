package core

import (
	"fmt"
	"strings"
	"time"

	qrcode "github.com/skip2/go-qrcode"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
)

// shareTexts are the messages that carry a share link, ready to send by
// SMS: short, calm, saying what to tap and to keep the page open. The
// link is last so that phones make all of it tappable.
func shareTexts(url string, ttl time.Duration) []*sarv1.ShareLinkText {
	zhFor, enFor := validFor(ttl)
	return []*sarv1.ShareLinkText{
		{Language: "zh", Text: "【山地搜救】救援人员需要您的位置。请打开链接，点“发送我的位置”，允许获取位置，并保持页面打开（" + zhFor + "内有效）：" + url},
		{Language: "en", Text: "Mountain rescue: rescuers need your location. Open the link, tap \"Send my location\", allow location access and keep the page open (valid for " + enFor + "): " + url},
	}
}

// validFor says how long a link works, in whole hours below two days and
// whole days from then on (rounded down: never promise more).
func validFor(ttl time.Duration) (zh, en string) {
	if h := int(ttl / time.Hour); h < 48 {
		if h < 1 {
			m := max(int(ttl/time.Minute), 1)
			return fmt.Sprintf("%d分钟", m), plural(m, "minute")
		}
		return fmt.Sprintf("%d小时", h), plural(h, "hour")
	}
	d := int(ttl / (24 * time.Hour))
	return fmt.Sprintf("%d天", d), plural(d, "day")
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

// qrSVG draws url as a QR code (error correction level M, quiet zone
// included) in a standalone SVG document: one path of dark modules, each
// row's runs merged, crisp at any size.
func qrSVG(url string) (string, error) {
	q, err := qrcode.New(url, qrcode.Medium)
	if err != nil {
		return "", err
	}
	bm := q.Bitmap()
	n := len(bm)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" shape-rendering="crispEdges">`, n, n)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#fff"/><path fill="#000" d="`, n, n)
	for y, row := range bm {
		for x := 0; x < len(row); {
			if !row[x] {
				x++
				continue
			}
			start := x
			for x < len(row) && row[x] {
				x++
			}
			fmt.Fprintf(&b, "M%d %dh%dv1h-%dz", start, y, x-start, x-start)
		}
	}
	b.WriteString(`"/></svg>`)
	return b.String(), nil
}
