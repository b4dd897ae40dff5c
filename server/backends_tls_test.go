package server_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/mountain-sar/sar/dispatch"
	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/app"
	"github.com/mountain-sar/sar/internal/auth"
	"github.com/mountain-sar/sar/internal/testenv"
	"github.com/mountain-sar/sar/internal/tlsutil/tlstest"
)

// TestBackendsOverTLS: sard reaches Redis over TLS (rediss://, the test
// CA, an ACL user whose password is in a file) and NATS over TLS (the test
// CA, user and password, NATS refusing plaintext); a wrong password or an
// untrusted CA stops the start; no secret reaches the log.
func TestBackendsOverTLS(t *testing.T) {
	ca := newTestCA(t, "backends CA")
	dir := t.TempDir()
	certPEM, keyPEM := ca.issue(7, "127.0.0.1", "localhost")
	file := func(name string, b []byte) string { return tlstest.WriteFile(t, filepath.Join(dir, name), b) }
	certFile, keyFile := file("backend.crt", certPEM), file("backend.key", keyPEM)
	caFile := file("ca.pem", ca.PEM())
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
	file := func(name string, b []byte) string { return tlstest.WriteFile(t, filepath.Join(dir, name), b) }
	caFile := file("ca.pem", ca.PEM())
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
	file := func(name string, b []byte) string { return tlstest.WriteFile(t, filepath.Join(dir, name), b) }
	caFile := file("ca.pem", ca.PEM())
	var nodes []testenv.RedisTLS
	for i, hosts := range [][]string{{"localhost"}, {"127.0.0.1"}, {"localhost", "127.0.0.1"}} {
		c, k := ca.IssueNode(hosts...)
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
	for i := 0; i < 40 && len(masters) < 3; i++ { // until incidents live on every master (all 3 after 40: 1 − 3·(2/3)^40)
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

// natsTLSFiles makes a CA and a NATS server certificate for 127.0.0.1 and
// returns the server's TLS configuration and the CA file.
func natsTLSFiles(t *testing.T) (*tls.Config, string) {
	t.Helper()
	ca := newTestCA(t, "nats CA")
	certPEM, keyPEM := ca.issue(11, "127.0.0.1", "localhost")
	pair := must[tls.Certificate](t, "key pair")(tls.X509KeyPair(certPEM, keyPEM))
	caFile := filepath.Join(t.TempDir(), "nats-ca.pem")
	if err := os.WriteFile(caFile, ca.PEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, caFile
}

// startOnNATS starts sard on a fresh Redis and the NATS server n (over
// TLS, trusting caFile), with set applied, logging JSON to logs.
func startOnNATS(t *testing.T, n *testenv.NATS, caFile string, logs io.Writer, set func(*app.Config)) (*app.App, app.Config, error) {
	t.Helper()
	cfg := app.Defaults()
	cfg.GRPCAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.ShutdownTimeout = 5 * time.Second
	cfg.RateLimit, cfg.RateBurst = 10000, 10000
	cfg.RedisURL = testenv.StartRedis(t).URL()
	cfg.NATSURL = strings.Replace(n.URL(), "nats://", "tls://", 1)
	cfg.NATSCAFile = caFile
	cfg.AdminToken, _, _ = auth.NewToken()
	set(&cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a, err := app.Start(ctx, cfg, jsonLogger(logs))
	if err == nil {
		t.Cleanup(func() { _ = a.Close() })
	}
	return a, cfg, err
}

// natsOverTLS fails the test unless sard's NATS connection is TLS.
func natsOverTLS(t *testing.T, a *app.App) {
	t.Helper()
	if s, err := a.NATS.TLSConnectionState(); err != nil || !s.HandshakeComplete {
		t.Fatalf("sard's NATS connection: TLS handshake complete %v, %v; want TLS", s.HandshakeComplete, err)
	}
}

// ingestIsPublished has an officer's phone send fixes to sard through e's
// gRPC clients and waits for their live positions on observer, a NATS
// connection of another user: sard published them over its own connection.
func ingestIsPublished(t *testing.T, e *env, observer *nats.Conn) {
	t.Helper()
	sub := must[*nats.Subscription](t, "subscribe")(observer.SubscribeSync(dispatch.SubjectPrefix + "*.pos.>"))
	if err := observer.Flush(); err != nil {
		t.Fatal(err)
	}
	_, officer, inc := e.officerOnIncident()
	d := e.openDevice(officer, inc.GetId(), "phone")
	defer d.close()
	if ack := d.send(walk(1, 3, time.Now())...); len(ack.GetStored()) != 3 {
		t.Fatalf("ingest ack = %v, want 3 stored", ack)
	}
	msg, err := sub.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("live positions on NATS: %v", err)
	}
	if want := dispatch.SubjectPrefix + inc.GetId() + ".pos."; !strings.HasPrefix(msg.Subject, want) {
		t.Errorf("position subject = %s, want %s...", msg.Subject, want)
	}
}

// TestNATSNkeyOverTLS: sard logs in to a NATS server that requires TLS
// and nkey users with its seed file (--nats-nkey-seed-file), ingests and
// publishes; an unknown seed and an untrusted CA stop the start; the seed
// never reaches the log.
func TestNATSNkeyOverTLS(t *testing.T) {
	serverTLS, caFile := natsTLSFiles(t)
	dir := t.TempDir()
	user := func(name string) (pub, seedFile string, seed []byte) {
		kp := must[nkeys.KeyPair](t, "nkey")(nkeys.CreateUser())
		pub = must[string](t, "public key")(kp.PublicKey())
		seed = must[[]byte](t, "seed")(kp.Seed())
		seedFile = filepath.Join(dir, name+".nk")
		if err := os.WriteFile(seedFile, append(seed, '\n'), 0o600); err != nil {
			t.Fatal(err)
		}
		return pub, seedFile, seed
	}
	sardPub, sardSeedFile, sardSeed := user("sard")
	obsPub, obsSeedFile, _ := user("observer")
	_, strangerSeedFile, _ := user("stranger")
	n := testenv.StartNATS(t, testenv.WithNATSServerOptions(func(o *natsserver.Options) {
		o.TLS, o.TLSConfig, o.TLSTimeout = true, serverTLS.Clone(), 2
		o.Nkeys = []*natsserver.NkeyUser{{Nkey: sardPub}, {Nkey: obsPub}}
	}))
	tlsURL := strings.Replace(n.URL(), "nats://", "tls://", 1)

	var logs lockedBuffer
	a, cfg, err := startOnNATS(t, n, caFile, &logs, func(c *app.Config) { c.NATSSeedFile = sardSeedFile })
	if err != nil {
		t.Fatalf("app.Start with an nkey seed over TLS: %v", err)
	}
	obsKey := must[nats.Option](t, "observer seed")(nats.NkeyOptionFromSeed(obsSeedFile))
	observer := must[*nats.Conn](t, "observer connects")(nats.Connect(tlsURL, nats.RootCAs(caFile), obsKey))
	defer observer.Close()
	natsOverTLS(t, a)
	e := &env{t: t, app: a, admin: cfg.AdminToken}
	e.connect()
	ingestIsPublished(t, e, observer)
	_ = a.Close()
	if strings.Contains(logs.String(), string(sardSeed)) {
		t.Errorf("sard's nkey seed is in the log:\n%.3000s", logs.String())
	}

	for _, tc := range []struct {
		name string
		set  func(*app.Config)
		want string
	}{
		{"unknown seed", func(c *app.Config) { c.NATSSeedFile = strangerSeedFile }, "Authorization Violation"},
		{"CA untrusted", func(c *app.Config) {
			c.NATSSeedFile = sardSeedFile
			c.NATSCAFile = filepath.Join(dir, "other.pem")
			if err := os.WriteFile(c.NATSCAFile, otherCAPEM(t), 0o600); err != nil {
				t.Fatal(err)
			}
		}, "--nats-ca-file"},
		{"seed and password", func(c *app.Config) {
			c.NATSSeedFile, c.NATSUser, c.NATSPassword = sardSeedFile, "sard", "x"
		}, "authenticate one way"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs lockedBuffer
			_, _, err := startOnNATS(t, n, caFile, &logs, tc.set)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("app.Start = %v, want an error saying %q", err, tc.want)
			}
			if strings.Contains(logs.String(), string(sardSeed)) {
				t.Errorf("sard's nkey seed is in the log:\n%.3000s", logs.String())
			}
		})
	}
}

// TestNATSCredsOverTLS: sard logs in with a creds file (user JWT and seed)
// to a NATS server in operator mode (decentralized auth: an operator, an
// account with JetStream, users signed by the account) that requires TLS;
// it ingests and publishes. A creds file whose JWT expired, whose seed is
// another user's, or that is no creds file stops the start with a clear
// error; neither the seed nor the JWT reaches the log.
func TestNATSCredsOverTLS(t *testing.T) {
	serverTLS, caFile := natsTLSFiles(t)
	dir := t.TempDir()
	operator := must[nkeys.KeyPair](t, "operator")(nkeys.CreateOperator())
	opPub := must[string](t, "operator key")(operator.PublicKey())
	// The system account, which JetStream needs in operator mode.
	sys := must[nkeys.KeyPair](t, "system account")(nkeys.CreateAccount())
	sysPub := must[string](t, "system account key")(sys.PublicKey())
	sysJWT := must[string](t, "system account JWT")(jwt.NewAccountClaims(sysPub).Encode(operator))
	oc := jwt.NewOperatorClaims(opPub)
	oc.SystemAccount = sysPub
	opClaims := must[*jwt.OperatorClaims](t, "operator claims")(jwt.DecodeOperatorClaims(must[string](t, "operator JWT")(oc.Encode(operator))))
	account := must[nkeys.KeyPair](t, "account")(nkeys.CreateAccount())
	accPub := must[string](t, "account key")(account.PublicKey())
	ac := jwt.NewAccountClaims(accPub)
	ac.Name = "SAR"
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	accJWT := must[string](t, "account JWT")(ac.Encode(operator))
	creds := func(name string, expires time.Time) (file string, seed []byte, token string) {
		kp := must[nkeys.KeyPair](t, "user")(nkeys.CreateUser())
		uc := jwt.NewUserClaims(must[string](t, "user key")(kp.PublicKey()))
		uc.Name = name
		if !expires.IsZero() {
			uc.Expires = expires.Unix()
		}
		token = must[string](t, "user JWT")(uc.Encode(account))
		seed = must[[]byte](t, "seed")(kp.Seed())
		file = filepath.Join(dir, name+".creds")
		if err := os.WriteFile(file, must[[]byte](t, "creds")(jwt.FormatUserConfig(token, seed)), 0o600); err != nil {
			t.Fatal(err)
		}
		return file, seed, token
	}
	sardCreds, sardSeed, sardJWT := creds("sard", time.Time{})
	obsCreds, _, _ := creds("observer", time.Time{})
	expiredCreds, _, _ := creds("expired", time.Now().Add(-time.Minute))
	// The JWT of one user with the seed of another.
	_, otherSeed, _ := creds("other", time.Time{})
	mixed := filepath.Join(dir, "mixed.creds")
	sardFile := must[[]byte](t, "read creds")(os.ReadFile(sardCreds))
	if err := os.WriteFile(mixed, bytes.Replace(sardFile, sardSeed, otherSeed, 1), 0o600); err != nil {
		t.Fatal(err)
	}
	notCreds := filepath.Join(dir, "not.creds")
	if err := os.WriteFile(notCreds, []byte("user: sard\npassword: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	n := testenv.StartNATS(t, testenv.WithNATSServerOptions(func(o *natsserver.Options) {
		o.TLS, o.TLSConfig, o.TLSTimeout = true, serverTLS.Clone(), 2
		o.TrustedOperators, o.SystemAccount = []*jwt.OperatorClaims{opClaims}, sysPub
		r := &natsserver.MemAccResolver{}
		_ = r.Store(sysPub, sysJWT) // MemAccResolver.Store never fails
		_ = r.Store(accPub, accJWT)
		o.AccountResolver = r
	}))
	tlsURL := strings.Replace(n.URL(), "nats://", "tls://", 1)
	if nc, err := nats.Connect(tlsURL, nats.RootCAs(caFile)); err == nil {
		nc.Close()
		t.Fatal("a client without credentials got in: the server is not in operator mode")
	}

	var logs lockedBuffer
	a, cfg, err := startOnNATS(t, n, caFile, &logs, func(c *app.Config) { c.NATSCredsFile = sardCreds })
	if err != nil {
		t.Fatalf("app.Start with a creds file over TLS: %v", err)
	}
	observer := must[*nats.Conn](t, "observer connects")(nats.Connect(tlsURL, nats.RootCAs(caFile), nats.UserCredentials(obsCreds)))
	defer observer.Close()
	natsOverTLS(t, a)
	e := &env{t: t, app: a, admin: cfg.AdminToken}
	e.connect()
	ingestIsPublished(t, e, observer)
	_ = a.Close()
	if l := logs.String(); strings.Contains(l, string(sardSeed)) || strings.Contains(l, sardJWT) {
		t.Errorf("sard's seed or JWT is in the log:\n%.3000s", l)
	}

	for _, tc := range []struct {
		file string
		want string
	}{
		{expiredCreds, "expired"},
		{mixed, "its seed is of user"},
		{notCreds, "no user JWT"},
		{filepath.Join(dir, "missing.creds"), "no such file"},
	} {
		t.Run(filepath.Base(tc.file), func(t *testing.T) {
			var logs lockedBuffer
			_, _, err := startOnNATS(t, n, caFile, &logs, func(c *app.Config) { c.NATSCredsFile = tc.file })
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "nats creds file") {
				t.Fatalf("app.Start = %v, want a nats creds file error saying %q", err, tc.want)
			}
			if l := err.Error() + logs.String(); strings.Contains(l, string(otherSeed)) || strings.Contains(l, sardJWT) {
				t.Errorf("a seed or JWT is in the error or the log: %v\n%.3000s", err, logs.String())
			}
		})
	}
}

// TestEmbeddedNATSListenerTLS: in embedded mode with TLS on, --nats-listen
// serves TLS only, with sard's certificate, and serves the new one after a
// reload; sard itself connects in-process and publishes what an agency's
// system, connected over TLS, receives. (Without TLS, --nats-listen off
// loopback is refused at start: TestNATSAuthSettingsRefused.)
func TestEmbeddedNATSListenerTLS(t *testing.T) {
	ca := newTestCA(t, "sard CA")
	dir := t.TempDir()
	certs := certFiles{filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")}
	c, k := ca.issue(100, "127.0.0.1", "localhost")
	writeCert(t, certs, c, k)
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, ca.PEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := app.Defaults()
	cfg.GRPCAddr, cfg.HTTPAddr, cfg.DataDir = "127.0.0.1:0", "127.0.0.1:0", t.TempDir()
	cfg.ShutdownTimeout = 5 * time.Second
	cfg.RateLimit, cfg.RateBurst = 10000, 10000
	cfg.TLSCertFile, cfg.TLSKeyFile, cfg.TLSReloadInterval = certs.cert, certs.key, time.Hour
	cfg.NATSListen = net.JoinHostPort("127.0.0.1", strconv.Itoa(testenv.FreePort(t)))
	cfg.AdminToken, _, _ = auth.NewToken()
	a, err := app.Start(context.Background(), cfg, testLogger(t))
	if err != nil {
		t.Fatalf("app.Start in embedded mode with TLS and --nats-listen: %v", err)
	}
	t.Cleanup(func() { _ = a.Close() })
	if want := "tls://" + cfg.NATSListen; a.Embedded.NATSURL != want {
		t.Errorf("Embedded.NATSURL = %s, want %s", a.Embedded.NATSURL, want)
	}
	if nc, err := nats.Connect("nats://" + cfg.NATSListen); err == nil {
		nc.Close()
		t.Fatal("a plaintext client got in to the NATS listener of a TLS server")
	}
	serial := func() int64 {
		t.Helper()
		nc := must[*nats.Conn](t, "NATS over TLS")(nats.Connect(a.Embedded.NATSURL, nats.RootCAs(caFile)))
		defer nc.Close()
		s := must[tls.ConnectionState](t, "TLS state")(nc.TLSConnectionState())
		return s.PeerCertificates[0].SerialNumber.Int64()
	}
	if got := serial(); got != 100 {
		t.Errorf("NATS listener serves certificate serial %d, want sard's, 100", got)
	}

	observer := must[*nats.Conn](t, "agency connects over TLS")(nats.Connect(a.Embedded.NATSURL, nats.RootCAs(caFile)))
	defer observer.Close()
	e := &env{t: t, app: a, admin: cfg.AdminToken}
	e.conn = must[*grpc.ClientConn](t, "grpc.NewClient")(grpc.NewClient(a.GRPCAddr(),
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: ca.pool()}))))
	t.Cleanup(func() { _ = e.conn.Close() })
	e.auth, e.agency = sarv1.NewAuthServiceClient(e.conn), sarv1.NewAgencyServiceClient(e.conn)
	e.inc, e.loc = sarv1.NewIncidentServiceClient(e.conn), sarv1.NewLocationServiceClient(e.conn)
	ingestIsPublished(t, e, observer)

	c, k = ca.issue(101, "127.0.0.1", "localhost")
	writeCert(t, certs, c, k)
	if err := a.ReloadTLS(); err != nil {
		t.Fatalf("ReloadTLS: %v", err)
	}
	if got := serial(); got != 101 {
		t.Errorf("after the reload the NATS listener serves serial %d, want 101", got)
	}
}
