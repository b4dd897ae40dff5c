package testenv

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	// clusterSlots is the number of hash slots of a Redis Cluster.
	clusterSlots = 16384
	// clusterTimeout bounds how long the nodes may take to agree. A master
	// waits 2 s after start before it reports cluster_state:ok.
	clusterTimeout = 30 * time.Second
)

// RedisCluster is a Redis Cluster of masters, each with the replicas
// WithClusterReplicas asks for (none by default), every node a
// redis-server child process on 127.0.0.1, started by StartRedisCluster.
type RedisCluster struct {
	tb       testing.TB
	nodes    []*Redis // the masters, then the replicas of master 0, of master 1, ...
	masters  int
	replicas int // per master
	tls      bool
}

// RedisTLS names the PEM files of a TLS-only Redis: its certificate and
// key, and the CA bundle that signed them. Since cluster nodes present
// their certificates to each other as client certificates on the bus, a
// certificate must allow both server and client authentication (extended
// key usages serverAuth and clientAuth). testenv's own commands check that
// it chains to the CA, not the names in it: tests may give nodes
// certificates for other names than 127.0.0.1.
type RedisTLS struct {
	CertFile, KeyFile, CAFile string
}

// ClusterOption configures StartRedisCluster.
type ClusterOption func(*clusterConfig)

type clusterConfig struct {
	tls            []RedisTLS
	user, password string
	replicas       int
	args           []string
}

// WithClusterReplicas gives every master n replicas (0 to 2), started and
// attached with CLUSTER REPLICATE, each in sync with its master before
// StartRedisCluster returns. A master killed for good then fails over to
// one of them after --cluster-node-timeout (see WithClusterArgs).
func WithClusterReplicas(n int) ClusterOption {
	return func(c *clusterConfig) { c.replicas = n }
}

// WithClusterArgs appends redis-server arguments for every node, such as
// WithClusterArgs("--cluster-node-timeout", "1000") for a failover in
// about two seconds instead of the default's 15 or more. Ports, the bus,
// the directory and TLS are testenv's: do not set them.
func WithClusterArgs(args ...string) ClusterOption {
	return func(c *clusterConfig) { c.args = append(c.args, args...) }
}

// WithClusterTLS runs every node TLS only (--port 0 --tls-port N
// --tls-cluster yes --tls-replication yes): clients, the cluster bus and
// replication all speak TLS, and the nodes announce their TLS ports. URL
// then starts with rediss://. Give one RedisTLS for every node, or one per
// master (replicas then use the last master's; the CA file of the first is
// testenv's).
func WithClusterTLS(files ...RedisTLS) ClusterOption {
	return func(c *clusterConfig) { c.tls = files }
}

// WithClusterACL makes user, with password, the nodes' only user, allowed
// every command and key; the default user is off, so a client that does
// not log in as user is refused. The password is not part of URL.
func WithClusterACL(user, password string) ClusterOption {
	return func(c *clusterConfig) { c.user, c.password = user, password }
}

// StartRedisCluster starts a Redis Cluster of masters nodes (3 if masters
// is 0 or less), gives each an even share of the 16384 slots, joins them and
// waits until every node reports cluster_state:ok and sees the same slot
// map. The nodes are stopped when the test ends.
func StartRedisCluster(tb testing.TB, masters int, opts ...ClusterOption) *RedisCluster {
	tb.Helper()
	if masters <= 0 {
		masters = 3
	}
	var cfg clusterConfig
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.replicas < 0 || cfg.replicas > 2 {
		tb.Fatalf("testenv: WithClusterReplicas(%d): give 0 to 2", cfg.replicas)
	}
	var (
		args []string
		resp respClient
	)
	switch len(cfg.tls) {
	case 0:
	case 1, masters:
		roots, err := readCAs(cfg.tls[0].CAFile)
		if err != nil {
			tb.Fatalf("testenv: redis cluster CA file: %v", err)
		}
		resp.tls = chainOnly(roots)
	default:
		tb.Fatalf("testenv: WithClusterTLS with %d files for %d nodes: give one, or one per master", len(cfg.tls), masters)
	}
	if cfg.user != "" {
		args = append(args, "--user", "default", "off", "--user", cfg.user, "on", ">"+cfg.password, "~*", "&*", "+@all")
		// A replica logs in to its master as this user.
		args = append(args, "--masteruser", cfg.user, "--masterauth", cfg.password)
		resp.user, resp.password = cfg.user, cfg.password
	}
	if cfg.replicas > 0 {
		// A replica's full sync starts at once, not after Redis's default
		// 5 s wait for other replicas to share it.
		args = append(args, "--repl-diskless-sync-delay", "0")
	}
	args = append(args, cfg.args...)
	c := &RedisCluster{tb: tb, tls: len(cfg.tls) > 0, masters: masters, replicas: cfg.replicas}
	for i := range masters * (1 + cfg.replicas) {
		var files *RedisTLS
		if len(cfg.tls) > 0 {
			files = &cfg.tls[min(i, len(cfg.tls)-1)]
		}
		c.nodes = append(c.nodes, newRedis(tb, args, true, files, resp))
	}
	if err := c.form(); err != nil {
		for _, n := range c.nodes {
			n.logShown = true
			tb.Log(n.logTail())
		}
		tb.Fatalf("testenv: form a redis cluster of %d masters with %d replicas each: %v", masters, cfg.replicas, err)
	}
	return c
}

func readCAs(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate", file)
	}
	return roots, nil
}

// chainOnly is a TLS client configuration that accepts a server whose
// certificate chains to roots, whatever names it holds.
func chainOnly(roots *x509.CertPool) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // the chain is checked below; the names are the test's business
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("no server certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
			return err
		},
	}
}

// Node returns the node listening on addr (host:port), nil if none: a
// test finds a key's master with go-redis (MasterForKey) and stops or
// restarts it here. A node keeps its port and its nodes.conf across Stop
// and Start, so a former master started again rejoins the cluster, as a
// replica of the node that took its slots over.
func (c *RedisCluster) Node(addr string) *Redis {
	for _, n := range c.nodes {
		if n.Addr() == addr {
			return n
		}
	}
	return nil
}

// Addrs returns the nodes' host:port addresses, masters first.
func (c *RedisCluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = n.Addr()
	}
	return addrs
}

// URL returns the cluster's URL as go-redis's redis.ParseClusterURL reads
// it: the first node as host and the others as addr parameters, such as
// "redis://127.0.0.1:40123?addr=127.0.0.1:40125&addr=127.0.0.1:40127"
// (rediss:// with WithClusterTLS).
func (c *RedisCluster) URL() string {
	addrs := c.Addrs()
	var b strings.Builder
	if c.tls {
		b.WriteString("rediss://" + addrs[0])
	} else {
		b.WriteString("redis://" + addrs[0])
	}
	for i, a := range addrs[1:] {
		if i == 0 {
			b.WriteString("?addr=" + a)
		} else {
			b.WriteString("&addr=" + a)
		}
	}
	return b.String()
}

// Stop stops every node, as Redis.Stop does.
func (c *RedisCluster) Stop(opts ...StopOption) {
	c.tb.Helper()
	for _, n := range c.nodes {
		n.Stop(opts...)
	}
}

// slotRange returns the first and last slot of node i of n.
func slotRange(i, n int) (first, last int) {
	return i * clusterSlots / n, (i+1)*clusterSlots/n - 1
}

// form assigns the slots, joins the nodes, attaches the replicas and waits
// for them all to agree.
func (c *RedisCluster) form() error {
	const timeout = 5 * time.Second
	n := c.masters
	want := make(map[string]clusterNode, len(c.nodes)) // by node id
	ids := make([]string, len(c.nodes))
	for i, node := range c.nodes {
		id, err := node.resp.str(node.Addr(), timeout, "CLUSTER", "MYID")
		if err != nil {
			return fmt.Errorf("CLUSTER MYID on %s: %w", node.Addr(), err)
		}
		ids[i] = id
		if i >= n {
			continue // a replica: attached below, once it knows its master
		}
		first, last := slotRange(i, n)
		if _, err := node.resp.do(node.Addr(), timeout, "CLUSTER", "ADDSLOTSRANGE", strconv.Itoa(first), strconv.Itoa(last)); err != nil {
			return fmt.Errorf("CLUSTER ADDSLOTSRANGE %d %d on %s: %w", first, last, node.Addr(), err)
		}
		slots := strconv.Itoa(first)
		if last > first {
			slots += "-" + strconv.Itoa(last)
		}
		want[id] = clusterNode{addr: fmt.Sprintf("%s@%d", node.Addr(), node.busPort), slots: slots}
	}

	// Introduce every node to the first; gossip does the rest. The bus port
	// must be given since it is not the default port+10000.
	first := c.nodes[0]
	for _, node := range c.nodes[1:] {
		_, err := first.resp.do(first.Addr(), timeout, "CLUSTER", "MEET", loopback, strconv.Itoa(node.port), strconv.Itoa(node.busPort))
		if err != nil {
			return fmt.Errorf("CLUSTER MEET %s from %s: %w", node.Addr(), first.Addr(), err)
		}
	}

	// Replica r of master m is node n + m*replicas + r. CLUSTER REPLICATE
	// fails until gossip has told the replica of its master: retry.
	deadline := time.Now().Add(clusterTimeout)
	for i := n; i < len(c.nodes); i++ {
		m := (i - n) / c.replicas
		node := c.nodes[i]
		for {
			_, err := node.resp.do(node.Addr(), timeout, "CLUSTER", "REPLICATE", ids[m])
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("CLUSTER REPLICATE %s on %s: %w", ids[m], node.Addr(), err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		want[ids[i]] = clusterNode{addr: fmt.Sprintf("%s@%d", node.Addr(), node.busPort), master: ids[m]}
	}

	for {
		err := c.agree(want)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nodes do not agree after %v: %w", clusterTimeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// clusterNode is what a node should see of another: its address with bus
// port, and its slots (a master) or its master's id (a replica).
type clusterNode struct {
	addr   string // such as 127.0.0.1:40123@40124
	slots  string // such as 0-5460
	master string // a replica's master's id; "" for a master
}

// agree checks that every node reports cluster_state:ok and sees exactly
// the nodes of want, connected and healthy: masters with their slots,
// replicas of their masters; and that every replica is in sync.
func (c *RedisCluster) agree(want map[string]clusterNode) error {
	for i, node := range c.nodes {
		if i >= c.masters {
			info, err := node.resp.str(node.Addr(), time.Second, "INFO", "replication")
			if err != nil {
				return fmt.Errorf("INFO replication on %s: %w", node.Addr(), err)
			}
			if !strings.Contains(info, "master_link_status:up\r\n") {
				return fmt.Errorf("replica %s is not in sync with its master:\n%s", node.Addr(), info)
			}
		}
		info, err := node.resp.str(node.Addr(), time.Second, "CLUSTER", "INFO")
		if err != nil {
			return fmt.Errorf("CLUSTER INFO on %s: %w", node.Addr(), err)
		}
		if !strings.Contains(info, "cluster_state:ok\r\n") {
			return fmt.Errorf("CLUSTER INFO on %s: cluster_state is not ok:\n%s", node.Addr(), info)
		}
		nodes, err := node.resp.str(node.Addr(), time.Second, "CLUSTER", "NODES")
		if err != nil {
			return fmt.Errorf("CLUSTER NODES on %s: %w", node.Addr(), err)
		}
		if err := checkClusterNodes(nodes, want); err != nil {
			return fmt.Errorf("CLUSTER NODES on %s: %w:\n%s", node.Addr(), err, nodes)
		}
	}
	return nil
}

// checkClusterNodes checks a CLUSTER NODES reply against want. Each line
// reads: id addr flags master ping-sent pong-recv config-epoch link-state
// slot...
func checkClusterNodes(reply string, want map[string]clusterNode) error {
	lines := strings.Split(strings.TrimSpace(reply), "\n")
	if len(lines) != len(want) {
		return fmt.Errorf("%d nodes, want %d", len(lines), len(want))
	}
	for _, line := range lines {
		f := strings.Fields(line)
		if len(f) < 8 {
			return fmt.Errorf("short line %q", line)
		}
		id, addr, flags, master, link, slots := f[0], f[1], f[2], f[3], f[7], strings.Join(f[8:], " ")
		w, ok := want[id]
		role := "master"
		if w.master != "" {
			role = "slave" // Redis's word in CLUSTER NODES
		}
		switch {
		case !ok:
			return fmt.Errorf("unknown node %s", id)
		case addr != w.addr && !strings.HasPrefix(addr, w.addr+","): // may end with ",hostname"
			return fmt.Errorf("node %s at %s, want %s", id, addr, w.addr)
		case !hasFlag(flags, role) || hasFlag(flags, "fail?") || hasFlag(flags, "fail") ||
			hasFlag(flags, "handshake") || hasFlag(flags, "noaddr"):
			return fmt.Errorf("node %s has flags %s, want a healthy %s", id, flags, role)
		case w.master != "" && master != w.master:
			return fmt.Errorf("node %s replicates %s, want %s", id, master, w.master)
		case link != "connected":
			return fmt.Errorf("node %s is %s, want connected", id, link)
		case slots != w.slots:
			return fmt.Errorf("node %s has slots %q, want %q", id, slots, w.slots)
		}
	}
	return nil
}

// hasFlag reports whether the comma-separated flags hold flag.
func hasFlag(flags, flag string) bool {
	for _, f := range strings.Split(flags, ",") {
		if f == flag {
			return true
		}
	}
	return false
}
