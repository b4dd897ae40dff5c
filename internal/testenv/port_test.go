package testenv

import (
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

func TestFreePort(t *testing.T) {
	ports := freePorts(t, 3)
	seen := map[int]bool{}
	for _, p := range ports {
		if p <= 0 || p > 65535 || seen[p] {
			t.Errorf("freePorts(3) = %v, want 3 distinct valid ports", ports)
		}
		seen[p] = true
	}
	if p := FreePort(t); p <= 0 {
		t.Errorf("FreePort() = %d, want > 0", p)
	}
}

// holdPort listens on addr, as another process might between a Stop and a
// Start, and lets go after d.
func holdPort(t *testing.T, addr string, d time.Duration) {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("net.Listen(%s) = %v", addr, err)
	}
	time.AfterFunc(d, func() { l.Close() })
}

// holdPortUntil listens on addr and lets go once the file at path holds
// mark (or after a minute): a release that waits for the event, not for a
// time that a loaded machine may overrun.
func holdPortUntil(t *testing.T, addr, path, mark string) {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("net.Listen(%s) = %v", addr, err)
	}
	go func() {
		defer l.Close()
		for end := time.Now().Add(time.Minute); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
			if b, _ := os.ReadFile(path); strings.Contains(string(b), mark) {
				return
			}
		}
	}()
}

func TestStartWaitsForBusyPort(t *testing.T) {
	r := StartRedis(t)
	r.Stop()
	// Released once a restart attempt has been refused.
	holdPortUntil(t, r.Addr(), r.logPath, "Address already in use")
	r.Start()
	if r.starts < 3 { // the first start, one refused at least, the last
		t.Errorf("redis-server started %d times, want a retry while the port was held", r.starts)
	}
	if _, err := respDo(r.Addr(), time.Second, "PING"); err != nil {
		t.Errorf("PING %s after Start on a port held for a while = %v, want nil", r.Addr(), err)
	}

	n := StartNATS(t)
	n.Shutdown()
	holdPort(t, n.addr(), 300*time.Millisecond)
	n.Start()
	if n.Server() == nil || !n.Server().ReadyForConnections(time.Second) {
		t.Errorf("nats-server after Start on a port held for a while is not ready")
	}
}
