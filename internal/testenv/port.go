package testenv

import (
	"errors"
	"net"
	"testing"
)

// loopback is the only address the services listen on.
const loopback = "127.0.0.1"

// errAddrInUse marks a start that failed because its port was taken: the
// caller may wait or pick another port and try again.
var errAddrInUse = errors.New("testenv: address already in use")

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
//
// Nothing holds the port once FreePort returns, so another process may take
// it before the caller binds it; the Start helpers of this package retry with
// a new port when that happens.
func FreePort(tb testing.TB) int {
	tb.Helper()
	return freePorts(tb, 1)[0]
}

// freePorts returns n distinct free ports: it keeps every listener open
// until all n are chosen, so the kernel cannot hand out one port twice.
func freePorts(tb testing.TB, n int) []int {
	tb.Helper()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", net.JoinHostPort(loopback, "0"))
		if err != nil {
			tb.Fatalf("testenv: find a free port: %v", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}
