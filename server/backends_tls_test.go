package server_test

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
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/app"
	"github.com/mountain-sar/sar/internal/auth"
	"github.com/mountain-sar/sar/internal/testenv"
)

// TestBackendsOverTLS: sard reaches Redis over TLS (rediss://, the test
// CA, an ACL user whose password is in a file) and NATS over TLS (the test
// CA, user and password, NATS refusing plaintext); a wrong password or an
// untrusted CA stops the start; no secret reaches the log.
func TestBackendsOverTLS(t *testing.T) {
	ca := newTestCA(t, "backends CA")
	dir := t.TempDir()
	certPEM, keyPEM := ca.issue(7, "127.0.0.1", "localhost")
	file := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	certFile, keyFile := file("backend.crt", certPEM), file("backend.key", keyPEM)
	caFile := file("ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw}))
	const redisPW, natsPW = "redis-Secret-4711", "nats-Secret-0815"
	redisPWFile, natsPWFile := file("redis.pw", []byte(redisPW+"\n")), file("nats.pw", []byte(natsPW+"\n"))

	tlsPort := testenv.FreePort(t)
	testenv.StartRedis(t, testenv.WithRedisArgs("--tls-port", strconv.Itoa(tlsPort),
		"--tls-cert-file", certFile, "--tls-key-file", keyFile, "--tls-ca-cert-file", caFile, "--tls-auth-clients", "no",
		"--user", "sard", "on", ">"+redisPW, "~*", "&*", "+@all"))
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	n := testenv.StartNATS(t, testenv.WithNATSServerOptions(func(o *natsserver.Options) {
		o.TLS, o.TLSConfig, o.TLSTimeout = true, &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, 2
		o.Username, o.Password = "sard", natsPW
	}))

	base := func() app.Config {
		cfg := app.Defaults()
		cfg.GRPCAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
		cfg.ShutdownTimeout = 5 * time.Second
		cfg.RedisURL = "rediss://127.0.0.1:" + strconv.Itoa(tlsPort) + "/0"
		cfg.RedisCAFile, cfg.RedisUser, cfg.RedisPasswordFile = caFile, "sard", redisPWFile
		cfg.NATSURL = strings.Replace(n.URL(), "nats://", "tls://", 1)
		cfg.NATSCAFile, cfg.NATSUser, cfg.NATSPasswordFile = caFile, "sard", natsPWFile
		cfg.AdminToken, _, _ = auth.NewToken()
		return cfg
	}

	t.Run("accepted", func(t *testing.T) {
		var logs lockedBuffer
		cfg := base()
		a, err := app.Start(context.Background(), cfg, jsonLogger(&logs))
		if err != nil {
			t.Fatalf("app.Start: %v", err)
		}
		defer a.Close()
		cc, err := grpc.NewClient(a.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ctx = withBearer(ctx, cfg.AdminToken)
		if _, err := sarv1.NewAgencyServiceClient(cc).CreateAgency(ctx, &sarv1.CreateAgencyRequest{Agency: &sarv1.Agency{
			Id: "police-north", Name: "North", Jurisdiction: "north", Kind: sarv1.AgencyKind_AGENCY_KIND_POLICE_STATION}}); err != nil {
			t.Fatalf("CreateAgency (Redis over TLS): %v", err)
		}
		resp, err := http.Get("http://" + a.HTTPAddr() + "/readyz")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("readyz: %v %v", resp, err)
		}
		resp.Body.Close()
		if s, err := a.NATS.TLSConnectionState(); err != nil || !s.HandshakeComplete {
			t.Errorf("NATS connection TLS state: %v %v", s.HandshakeComplete, err)
		}
		_ = a.Close()
		if l := logs.String(); strings.Contains(l, redisPW) || strings.Contains(l, natsPW) {
			t.Errorf("a backend password is in the log:\n%.3000s", l)
		}
	})

	for _, tc := range []struct {
		name string
		set  func(*app.Config)
	}{
		{"wrong redis password", func(c *app.Config) { c.RedisPasswordFile = file("bad.pw", []byte("nope")) }},
		{"redis CA untrusted", func(c *app.Config) { c.RedisCAFile = file("other.pem", otherCAPEM(t)) }},
		{"redis without TLS on its TLS port", func(c *app.Config) {
			c.RedisURL, c.RedisCAFile = strings.Replace(c.RedisURL, "rediss://", "redis://", 1), ""
		}},
		{"wrong nats password", func(c *app.Config) { c.NATSPasswordFile = file("bad2.pw", []byte("nope")) }},
		{"nats CA untrusted", func(c *app.Config) { c.NATSCAFile = file("other2.pem", otherCAPEM(t)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base()
			tc.set(&cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			if a, err := app.Start(ctx, cfg, testLogger(t)); err == nil {
				_ = a.Close()
				t.Fatal("started")
			}
		})
	}
}

func otherCAPEM(t *testing.T) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: newTestCA(t, "other CA").cert.Raw})
}

func jsonLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func withBearer(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// TestNATSTokenOverTLS: sard logs in to a NATS server that requires TLS
// and a token, with the token read from a file; a wrong token stops the
// start, and the token never reaches the log.
func TestNATSTokenOverTLS(t *testing.T) {
	ca := newTestCA(t, "nats CA")
	dir := t.TempDir()
	certPEM, keyPEM := ca.issue(9, "127.0.0.1", "localhost")
	file := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caFile := file("ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw}))
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	const token = "nats-Token-2718281828"
	n := testenv.StartNATS(t, testenv.WithNATSServerOptions(func(o *natsserver.Options) {
		o.TLS, o.TLSConfig, o.TLSTimeout = true, &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, 2
		o.Authorization = token
	}))
	r := testenv.StartRedis(t)
	cfg := func(tokenFile string) app.Config {
		c := app.Defaults()
		c.GRPCAddr, c.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
		c.ShutdownTimeout = 5 * time.Second
		c.RedisURL = r.URL()
		c.NATSURL = strings.Replace(n.URL(), "nats://", "tls://", 1)
		c.NATSCAFile, c.NATSTokenFile = caFile, tokenFile
		c.AdminToken, _, _ = auth.NewToken()
		return c
	}
	var logs lockedBuffer
	a, err := app.Start(context.Background(), cfg(file("token", []byte(token+"\n"))), jsonLogger(&logs))
	if err != nil {
		t.Fatalf("app.Start with the NATS token: %v", err)
	}
	if s, err := a.NATS.TLSConnectionState(); err != nil || !s.HandshakeComplete {
		t.Errorf("NATS connection TLS state: %v %v", s.HandshakeComplete, err)
	}
	resp, err := http.Get("http://" + a.HTTPAddr() + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("readyz: %v %v", resp, err)
	}
	resp.Body.Close()
	_ = a.Close()
	if strings.Contains(logs.String(), token) {
		t.Errorf("the NATS token is in the log:\n%.3000s", logs.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if a, err := app.Start(ctx, cfg(file("bad-token", []byte("nope"))), testLogger(t)); err == nil {
		_ = a.Close()
		t.Fatal("started with a wrong NATS token")
	}
}

// TestRedisClusterOverTLS: sard runs on a three-master Redis Cluster whose
// nodes speak TLS only (client port, bus and replication) and serve only an
// ACL user. Each node has a certificate of its own: node 0's names only
// "localhost" (the seed host of --redis-url), node 1's only 127.0.0.1 (the
// address the cluster announces), node 2's both. go-redis alone checks every
// node against the seed host and fails on node 1; sard checks each node
// against its own address or a seed host. Fixes ingested on incidents spread
// over the masters are read back; an untrusted CA and a wrong password stop
// the start with a clear error; no password reaches the log.
func TestRedisClusterOverTLS(t *testing.T) {
	ca := newTestCA(t, "cluster CA")
	dir := t.TempDir()
	file := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caFile := file("ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw}))
	var nodes []testenv.RedisTLS
	for i, hosts := range [][]string{{"localhost"}, {"127.0.0.1"}, {"localhost", "127.0.0.1"}} {
		c, k := ca.issueNode(int64(10+i), hosts...)
		nodes = append(nodes, testenv.RedisTLS{CertFile: file(fmt.Sprintf("node%d.crt", i), c),
			KeyFile: file(fmt.Sprintf("node%d.key", i), k), CAFile: caFile})
	}
	const redisPW = "cluster-Secret-31415"
	pwFile := file("redis.pw", []byte(redisPW+"\n"))
	cluster := testenv.StartRedisCluster(t, 3, testenv.WithClusterTLS(nodes...), testenv.WithClusterACL("sard", redisPW))
	seed := "rediss://" + net.JoinHostPort("localhost", strings.Split(cluster.Addrs()[0], ":")[1]) // node 0 by the name its certificate holds
	nc := testenv.StartNATS(t)

	base := func() app.Config {
		cfg := app.Defaults()
		cfg.GRPCAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
		cfg.ShutdownTimeout = 5 * time.Second
		cfg.RateLimit, cfg.RateBurst = 10000, 10000
		cfg.RedisURL, cfg.RedisCluster = seed, true
		cfg.RedisCAFile, cfg.RedisUser, cfg.RedisPasswordFile = caFile, "sard", pwFile
		cfg.NATSURL = nc.URL()
		cfg.AdminToken, _, _ = auth.NewToken()
		return cfg
	}

	var logs lockedBuffer
	cfg := base()
	e := &env{t: t, nats: nc, admin: cfg.AdminToken, logTo: &logs}
	a, err := app.Start(context.Background(), cfg, jsonLogger(&logs))
	if err != nil {
		t.Fatalf("app.Start on the TLS cluster: %v", err)
	}
	t.Cleanup(func() { _ = a.Close() })
	e.app = a
	e.connect()

	e.createAgency("police-north", "north", sarv1.AgencyKind_AGENCY_KIND_POLICE_STATION)
	op := e.operator("north")
	officer := e.rescuer("police-north", "")
	cc, ok := a.Redis.(*redis.ClusterClient)
	if !ok {
		t.Fatalf("sard's Redis client is a %T, want a *redis.ClusterClient", a.Redis)
	}
	masters := map[string]bool{}
	for i := 0; i < 12 && len(masters) < 3; i++ { // until incidents live on every master
		inc := e.createIncident(op, "police-north")
		part := e.join(officer, inc.GetId(), "phone").GetParticipant().GetId()
		d := e.openDevice(officer, inc.GetId(), "phone")
		if ack := d.send(walk(1, 10, time.Now())...); len(ack.GetStored()) != 10 {
			t.Fatalf("ingest on the TLS cluster: ack = %v, want 10 stored", ack)
		}
		d.close()
		track := must[*sarv1.GetTrackResponse](t, "GetTrack")(e.loc.GetTrack(e.as(op),
			&sarv1.GetTrackRequest{IncidentId: inc.GetId(), ParticipantId: part})).GetFixes()
		if len(track) != 10 || track[0].GetSequence() != 1 || track[9].GetSequence() != 10 {
			t.Fatalf("GetTrack of %s = %d fixes, want sequences 1-10", inc.GetId(), len(track))
		}
		node, err := cc.MasterForKey(context.Background(), "sar:{"+inc.GetId()+"}:inc")
		if err != nil {
			t.Fatalf("MasterForKey: %v", err)
		}
		masters[node.Options().Addr] = true
	}
	if len(masters) != 3 {
		t.Errorf("incidents landed on masters %v, want all 3 (the nodes have no plaintext port: each was reached over TLS)", masters)
	}
	_ = a.Close()
	if strings.Contains(logs.String(), redisPW) {
		t.Errorf("the Redis password is in the log:\n%.3000s", logs.String())
	}

	for _, tc := range []struct {
		name string
		set  func(*app.Config)
		want []string
	}{
		{"CA untrusted", func(c *app.Config) { c.RedisCAFile = file("other.pem", otherCAPEM(t)) },
			[]string{"certificate", "unknown authority", "--redis-ca-file"}},
		{"wrong password", func(c *app.Config) { c.RedisPasswordFile = file("bad.pw", []byte("nope")) },
			[]string{"WRONGPASS"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base()
			tc.set(&cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			a, err := app.Start(ctx, cfg, testLogger(t))
			if err == nil {
				_ = a.Close()
				t.Fatal("started")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("app.Start = %v, want it to say %q", err, w)
				}
			}
			if strings.Contains(err.Error(), redisPW) {
				t.Errorf("app.Start = %v, holds the password", err)
			}
		})
	}
}

// issueNode makes a certificate for a Redis Cluster node: server and
// client authentication (the nodes show it to each other on the bus).
func (ca *testCA) issueNode(serial int64, hosts ...string) (certPEM, keyPEM []byte) {
	t := ca.t
	t.Helper()
	key := must[*ecdsa.PrivateKey](t, "key")(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: hosts[0]},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der := must[[]byte](t, "cert")(x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key))
	kder := must[[]byte](t, "key")(x509.MarshalPKCS8PrivateKey(key))
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}
