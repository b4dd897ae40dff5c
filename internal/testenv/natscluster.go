package testenv

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// natsClusterTimeout bounds how long the nodes of a NATS cluster may take
// to route to each other and elect a JetStream meta leader.
const natsClusterTimeout = 30 * time.Second

// NATSCluster is a cluster of nats-server nodes with clustered JetStream,
// each inside the test binary on 127.0.0.1, started by StartNATSCluster.
// A node keeps its name, ports and store directory across Kill and
// Restart, so it rejoins as the same JetStream peer.
type NATSCluster struct {
	tb        testing.TB
	name      string
	configure []func(*server.Options)
	nodes     []*natsNode
}

// natsNode is one node of a NATSCluster.
type natsNode struct {
	name        string
	port, route int // client and cluster (route) ports
	storeDir    string
	srv         *server.Server // nil while killed
}

// StartNATSCluster starts a cluster of n nodes (3 if n is 0 or less), each
// with JetStream on its own tb.TempDir(), every node routed to every other,
// and waits until the cluster is ready (see WaitReady). Nodes are shut down
// when the test ends. Options given with WithNATSServerOptions apply to
// every node; names, addresses, routes and store directories are
// testenv's.
func StartNATSCluster(tb testing.TB, n int, opts ...NATSOption) *NATSCluster {
	tb.Helper()
	if n <= 0 {
		n = 3
	}
	var cfg natsConfig
	for _, o := range opts {
		o(&cfg)
	}
	c := &NATSCluster{tb: tb, name: "sar-test", configure: cfg.configure}
	for i := range n {
		c.nodes = append(c.nodes, &natsNode{name: "n" + strconv.Itoa(i+1), storeDir: tb.TempDir()})
	}
	tb.Cleanup(c.shutdownAll) // registered after the TempDirs: runs before they are removed

	// Ports may be taken between freePorts and the listens: try others.
	for attempt := 1; ; attempt++ {
		ports := freePorts(tb, 2*n)
		for i, node := range c.nodes {
			node.port, node.route = ports[2*i], ports[2*i+1]
		}
		err := c.startAll()
		if err == nil {
			break
		}
		c.shutdownAll()
		if !errors.Is(err, errAddrInUse) || attempt == newPortAttempts {
			tb.Fatalf("testenv: start a nats cluster of %d nodes: %v", n, err)
		}
	}
	c.WaitReady()
	return c
}

// Len is the number of nodes, running or not.
func (c *NATSCluster) Len() int { return len(c.nodes) }

// URL returns every node's client URL, comma-separated, as nats.Connect
// and sard's --nats-url take them.
func (c *NATSCluster) URL() string { return strings.Join(c.URLs(), ",") }

// URLs returns each node's client URL, in node order.
func (c *NATSCluster) URLs() []string {
	urls := make([]string, len(c.nodes))
	for i := range c.nodes {
		urls[i] = c.NodeURL(i)
	}
	return urls
}

// NodeURL returns node i's client URL, such as "nats://127.0.0.1:40123".
func (c *NATSCluster) NodeURL(i int) string {
	return "nats://" + net.JoinHostPort(loopback, strconv.Itoa(c.nodes[i].port))
}

// Server returns node i's running server, or nil while it is killed.
func (c *NATSCluster) Server(i int) *server.Server { return c.nodes[i].srv }

// Kill shuts node i down, as a lost machine: its clients' connections
// drop (they reconnect to the other nodes) and its routes go; the others
// elect new leaders for what it led. Killing a killed node does nothing.
func (c *NATSCluster) Kill(i int) {
	node := c.nodes[i]
	if node.srv == nil {
		return
	}
	node.srv.Shutdown()
	node.srv.WaitForShutdown()
	node.srv = nil
}

// Restart starts node i again with its name, ports and store directory,
// and waits until the whole cluster is ready again.
func (c *NATSCluster) Restart(i int) {
	c.tb.Helper()
	node := c.nodes[i]
	if node.srv != nil {
		c.tb.Fatalf("testenv: Restart: nats node %s is running", node.name)
	}
	deadline := time.Now().Add(portRetryTimeout) // the old listeners may hold the ports for a moment
	for {
		err := c.start(node)
		if err == nil {
			break
		}
		if !errors.Is(err, errAddrInUse) || time.Now().After(deadline) {
			c.tb.Fatalf("testenv: restart nats node %s: %v", node.name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.WaitReady()
}

// WaitReady waits until the running nodes have a JetStream meta leader
// that knows every node of the cluster as a peer, and every running node
// is current with it. It fails the test after 30 s.
func (c *NATSCluster) WaitReady() {
	c.tb.Helper()
	deadline := time.Now().Add(natsClusterTimeout)
	for {
		err := c.ready()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.tb.Fatalf("testenv: nats cluster not ready after %v: %v", natsClusterTimeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *NATSCluster) ready() error {
	var leader *server.Server
	for _, node := range c.nodes {
		if node.srv != nil && node.srv.JetStreamIsLeader() {
			leader = node.srv
		}
	}
	if leader == nil {
		return errors.New("no JetStream meta leader")
	}
	if peers := len(leader.JetStreamClusterPeers()); peers != len(c.nodes) {
		return fmt.Errorf("the meta leader %s knows %d peers, want %d", leader.Name(), peers, len(c.nodes))
	}
	for _, node := range c.nodes {
		if node.srv != nil && !node.srv.JetStreamIsCurrent() {
			return fmt.Errorf("node %s is not current with the meta leader", node.name)
		}
	}
	return nil
}

func (c *NATSCluster) startAll() error {
	for _, node := range c.nodes {
		if err := c.start(node); err != nil {
			return fmt.Errorf("node %s: %w", node.name, err)
		}
	}
	return nil
}

func (c *NATSCluster) shutdownAll() {
	for i := range c.nodes {
		c.Kill(i)
	}
}

// options returns fresh options for node: NewServer changes the ones it
// is given.
func (c *NATSCluster) options(node *natsNode) (*server.Options, error) {
	routes := make([]string, 0, len(c.nodes)-1)
	for _, other := range c.nodes {
		if other != node {
			routes = append(routes, "nats://"+net.JoinHostPort(loopback, strconv.Itoa(other.route)))
		}
	}
	o := &server.Options{JetStream: true, NoLog: true, NoSigs: true}
	for _, fn := range c.configure {
		fn(o)
	}
	o.ServerName, o.Host, o.Port, o.StoreDir = node.name, loopback, node.port, node.storeDir
	o.Cluster = server.ClusterOpts{Name: c.name, Host: loopback, Port: node.route}
	o.Routes = server.RoutesFromStr(strings.Join(routes, ","))
	if len(o.Routes) != len(routes) {
		return nil, fmt.Errorf("routes %v do not parse", routes)
	}
	return o, nil
}

// start starts node and waits until it accepts clients (not until it has
// joined the cluster: WaitReady does that). An error wraps errAddrInUse
// when one of its ports is taken.
func (c *NATSCluster) start(node *natsNode) error {
	for _, port := range []int{node.port, node.route} {
		l, err := net.Listen("tcp", net.JoinHostPort(loopback, strconv.Itoa(port)))
		if err != nil {
			if errors.Is(err, syscall.EADDRINUSE) {
				return fmt.Errorf("%w: %v", errAddrInUse, err)
			}
			return err
		}
		if err := l.Close(); err != nil {
			return err
		}
	}
	opts, err := c.options(node)
	if err != nil {
		return err
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("new server: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(readyTimeout) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return fmt.Errorf("%w: node %s not ready for connections on port %d after %v", errAddrInUse, node.name, node.port, readyTimeout)
	}
	node.srv = srv
	return nil
}
