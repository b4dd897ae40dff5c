package testenv

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestRedisCluster(t *testing.T) {
	ctx := t.Context()
	c := StartRedisCluster(t, 3)

	addrs := c.Addrs()
	if len(addrs) != 3 {
		t.Fatalf("Addrs() = %v, want 3 addresses", addrs)
	}
	opts, err := redis.ParseClusterURL(c.URL())
	if err != nil {
		t.Fatalf("redis.ParseClusterURL(%q) = %v", c.URL(), err)
	}
	if got, want := strings.Join(opts.Addrs, " "), strings.Join(addrs, " "); got != want {
		t.Fatalf("redis.ParseClusterURL(%q).Addrs = %s, want %s", c.URL(), got, want)
	}
	client := redis.NewClusterClient(opts)
	t.Cleanup(func() { client.Close() })

	// Keys without hash tags spread over the slots, so over every master.
	const keys = 30
	for i := range keys {
		key := fmt.Sprintf("incident:%d", i)
		if err := client.Set(ctx, key, i, 0).Err(); err != nil {
			t.Fatalf("SET %s = %v", key, err)
		}
	}
	for i := range keys {
		key := fmt.Sprintf("incident:%d", i)
		if got, err := client.Get(ctx, key).Int(); err != nil || got != i {
			t.Errorf("GET %s = %d, %v; want %d, nil", key, got, err, i)
		}
	}
	var (
		mu    sync.Mutex
		sizes = map[string]int64{}
	)
	err = client.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		n, err := m.DBSize(ctx).Result()
		mu.Lock()
		defer mu.Unlock()
		sizes[m.Options().Addr] = n
		return err
	})
	if err != nil {
		t.Fatalf("DBSIZE on each master = %v", err)
	}
	var total int64
	for _, n := range sizes {
		total += n
	}
	if len(sizes) != 3 || total != keys {
		t.Errorf("keys per master = %v, want %d keys over 3 masters", sizes, keys)
	}
	for addr, n := range sizes {
		if n == 0 {
			t.Errorf("master %s holds no key of %d, want some", addr, keys)
		}
	}

	// A multi-key script works on keys that share a hash tag...
	script := redis.NewScript(`
		redis.call('INCRBY', KEYS[1], ARGV[1])
		redis.call('RPUSH', KEYS[2], ARGV[2])
		return redis.call('GET', KEYS[1])`)
	tagged := []string{"{incident:7}:found", "{incident:7}:log"}
	got, err := script.Run(ctx, client, tagged, 2, "team A found them").Text()
	if err != nil || got != "2" {
		t.Errorf("EVAL on %v = %q, %v; want \"2\", nil", tagged, got, err)
	}
	if n, err := client.LLen(ctx, tagged[1]).Result(); err != nil || n != 1 {
		t.Errorf("LLEN %s = %d, %v; want 1, nil", tagged[1], n, err)
	}
	// ...and is refused on keys in different slots: a real cluster.
	apart := []string{"incident:1", "incident:2"}
	if client.ClusterKeySlot(ctx, apart[0]).Val() == client.ClusterKeySlot(ctx, apart[1]).Val() {
		t.Fatalf("keys %v share a slot, want different slots", apart)
	}
	if _, err := script.Run(ctx, client, apart, 1, "x").Result(); err == nil || !strings.Contains(err.Error(), "CROSSSLOT") {
		t.Errorf("EVAL on %v = %v, want a CROSSSLOT error", apart, err)
	}

	c.Stop()
	for _, addr := range addrs {
		if _, err := respDo(addr, time.Second, "PING"); err == nil {
			t.Errorf("PING %s after Stop = nil, want an error", addr)
		}
	}
}

// TestRedisClusterFailover: with WithClusterReplicas every master has a
// replica in sync; a master killed for good is replaced by its replica,
// which holds the master's keys, and the old master started again comes
// back as a replica of the new one.
func TestRedisClusterFailover(t *testing.T) {
	ctx := t.Context()
	c := StartRedisCluster(t, 3, WithClusterReplicas(1), WithClusterArgs("--cluster-node-timeout", "1000"))
	if n := len(c.Addrs()); n != 6 {
		t.Fatalf("Addrs() = %d addresses, want 6 (3 masters, 3 replicas)", n)
	}
	client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	t.Cleanup(func() { client.Close() })
	const key = "{incident:9}:track"
	if err := client.Set(ctx, key, "acknowledged", 0).Err(); err != nil {
		t.Fatalf("SET = %v", err)
	}
	master, err := client.MasterForKey(ctx, key)
	if err != nil {
		t.Fatalf("MasterForKey = %v", err)
	}
	// WAIT: the write is on the replica before the master dies.
	if n, err := master.Do(ctx, "WAIT", 1, 2000).Int(); err != nil || n != 1 {
		t.Fatalf("WAIT 1 = %d, %v; want 1 replica", n, err)
	}
	old := c.Node(master.Options().Addr)
	if old == nil || c.Node("127.0.0.1:1") != nil {
		t.Fatalf("Node(%s) = %v; want the master's node, and nil for an unknown address", master.Options().Addr, old)
	}
	old.Stop(WithSIGKILL())

	deadline := time.Now().Add(30 * time.Second)
	var got string
	for {
		client.ReloadState(ctx)
		if got, err = client.Get(ctx, key).Result(); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET after the master's death = %v, still failing after 30 s", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got != "acknowledged" {
		t.Fatalf("GET on the promoted replica = %q, want the value written before the failover", got)
	}
	promoted, err := client.MasterForKey(ctx, key)
	if err != nil || promoted.Options().Addr == old.Addr() {
		t.Fatalf("the key's master after the failover = %v, %v; want the old master's replica", promoted, err)
	}

	old.Start()
	for {
		info, err := respDo(old.Addr(), time.Second, "INFO", "replication")
		s, _ := info.(string)
		if err == nil && strings.Contains(s, "role:slave\r\n") && strings.Contains(s, "master_link_status:up\r\n") &&
			strings.Contains(s, "master_port:"+strings.Split(promoted.Options().Addr, ":")[1]+"\r\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the old master started again is not a replica of the new one in sync: %v\n%s", err, s)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestRedisClusterTLS: with WithClusterTLS and WithClusterACL every node
// speaks TLS only, announces its TLS port, and serves only the ACL user.
func TestRedisClusterTLS(t *testing.T) {
	ctx := t.Context()
	files, roots := writeTestCerts(t)
	c := StartRedisCluster(t, 3, WithClusterTLS(files), WithClusterACL("sard", "cluster-Secret-1"))
	if !strings.HasPrefix(c.URL(), "rediss://") {
		t.Fatalf("URL() = %s, want rediss://", c.URL())
	}
	opts, err := redis.ParseClusterURL(c.URL())
	if err != nil {
		t.Fatal(err)
	}
	opts.TLSConfig.RootCAs, opts.Username, opts.Password = roots, "sard", "cluster-Secret-1"
	client := redis.NewClusterClient(opts)
	t.Cleanup(func() { client.Close() })

	// CLUSTER SLOTS names the TLS ports, the only ones the nodes have.
	slots, err := client.ClusterSlots(ctx).Result()
	if err != nil {
		t.Fatalf("CLUSTER SLOTS = %v", err)
	}
	var announced []string
	for _, s := range slots {
		for _, n := range s.Nodes {
			announced = append(announced, n.Addr)
		}
	}
	slices.Sort(announced)
	want := slices.Sorted(slices.Values(c.Addrs()))
	if !slices.Equal(announced, want) {
		t.Errorf("CLUSTER SLOTS addresses = %v, want the TLS ports %v", announced, want)
	}
	for i := range 30 {
		if err := client.Set(ctx, fmt.Sprintf("incident:%d", i), i, 0).Err(); err != nil {
			t.Fatalf("SET over TLS = %v", err)
		}
	}
	err = client.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		if n, err := m.DBSize(ctx).Result(); err != nil || n == 0 {
			return fmt.Errorf("DBSIZE on %s = %d, %v; want keys", m.Options().Addr, n, err)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	for _, addr := range c.Addrs() {
		if _, err := respDo(addr, time.Second, "PING"); err == nil {
			t.Errorf("plaintext PING %s = nil, want an error (TLS only)", addr)
		}
		anon := respClient{tls: &tls.Config{RootCAs: roots}}
		if _, err := anon.do(addr, time.Second, "PING"); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
			t.Errorf("PING %s over TLS without AUTH = %v, want NOAUTH", addr, err)
		}
	}
}

// writeTestCerts writes a CA and a certificate it signed for 127.0.0.1,
// for servers and clients, and returns the files and the CA as a pool.
func writeTestCerts(t *testing.T) (RedisTLS, *x509.CertPool) {
	t.Helper()
	dir := t.TempDir()
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "testenv CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	f := RedisTLS{CertFile: filepath.Join(dir, "node.crt"), KeyFile: filepath.Join(dir, "node.key"), CAFile: filepath.Join(dir, "ca.pem")}
	for name, b := range map[string][]byte{
		f.CertFile: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		f.KeyFile:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}),
		f.CAFile:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
	} {
		if err := os.WriteFile(name, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	return f, roots
}
