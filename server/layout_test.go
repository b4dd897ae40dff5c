package server_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestMessagesDoNotImportTheGateway: the generated messages and gRPC stubs
// (gen/sar/v1), which a client such as mobileclient imports, do not import
// net/http and link nothing of grpc-gateway; the gateway is its own package
// (gen/gateway/sar/v1). (grpc-go itself still links net/http, for
// grpc.Server.ServeHTTP and x/net/trace: that is gRPC's, not the gateway's.)
func TestMessagesDoNotImportTheGateway(t *testing.T) {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	list := func(pkg string, args ...string) map[string]bool {
		t.Helper()
		out, err := exec.Command(goCmd, append(append([]string{"list"}, args...), pkg)...).Output()
		if err != nil {
			t.Fatalf("go list %v %s: %v", args, pkg, err)
		}
		m := map[string]bool{}
		for _, p := range strings.Fields(string(out)) {
			m[p] = true
		}
		return m
	}
	const msgs = "github.com/mountain-sar/sar/gen/sar/v1"
	if list(msgs, "-f", `{{join .Imports "\n"}}`)["net/http"] {
		t.Errorf("%s imports net/http", msgs)
	}
	for p := range list(msgs, "-deps", "-f", "{{.ImportPath}}") {
		if strings.HasPrefix(p, "github.com/grpc-ecosystem/grpc-gateway/") {
			t.Errorf("%s links %s", msgs, p)
		}
	}
	gw := list("github.com/mountain-sar/sar/gen/gateway/sar/v1", "-f", `{{join .Imports "\n"}}`)
	if !gw[msgs] || !gw["net/http"] || !gw["github.com/grpc-ecosystem/grpc-gateway/v2/runtime"] {
		t.Errorf("the gateway package does not import the messages, net/http and the gateway runtime: the checks above prove nothing")
	}
}
