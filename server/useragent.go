package server

import (
	"context"
	"strings"

	"google.golang.org/grpc/metadata"
)

// deviceKind reads the kind of device from a request's user agent (the
// browser's, forwarded by the JSON gateway as grpcgateway-user-agent, or a
// gRPC client's): "android", "ios", "harmonyos", "desktop" or "other",
// with "-wechat" appended inside WeChat's in-app browser. Only this is
// kept: a full user-agent string identifies a phone more than the console
// needs to.
func deviceKind(ctx context.Context) string {
	ua := first(metadata.ValueFromIncomingContext(ctx, "grpcgateway-user-agent"))
	if ua == "" {
		ua = first(metadata.ValueFromIncomingContext(ctx, "user-agent"))
	}
	return deviceKindOf(ua)
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

func deviceKindOf(ua string) string {
	kind := "other"
	switch {
	case strings.Contains(ua, "HarmonyOS") || strings.Contains(ua, "OpenHarmony"):
		kind = "harmonyos"
	case strings.Contains(ua, "Android"):
		kind = "android"
	case strings.Contains(ua, "iPhone") || strings.Contains(ua, "iPad") || strings.Contains(ua, "iPod"):
		kind = "ios"
	case strings.Contains(ua, "Windows") || strings.Contains(ua, "Macintosh") || strings.Contains(ua, "X11") ||
		strings.Contains(ua, "CrOS"):
		kind = "desktop"
	}
	if strings.Contains(ua, "MicroMessenger") {
		kind += "-wechat"
	}
	return kind
}
