package app

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/mountain-sar/sar/dispatch"
	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/testenv"
)

// writeSeed makes a user seed file and returns its public key.
func writeSeed(t *testing.T, path string) string {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	if err := os.WriteFile(path, append(seed, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	return pub
}

// authFiles writes what `sarctl nats-auth` writes for one agency: the
// authorization file and the seeds next to it.
func authFiles(t *testing.T, agency string) (authFile, agencySeed string) {
	t.Helper()
	dir := t.TempDir()
	sardPub := writeSeed(t, filepath.Join(dir, dispatch.ServiceSeedFile))
	agencySeed = filepath.Join(dir, agency+".nk")
	agencyPub := writeSeed(t, agencySeed)
	perms, err := dispatch.AgencyPermissions(agency)
	if err != nil {
		t.Fatal(err)
	}
	conf, err := dispatch.AuthorizationConfig("test", []dispatch.NkeyUser{
		{Comment: "sard", PublicKey: sardPub, Permissions: dispatch.ServicePermissions()},
		{Comment: "agency " + agency, PublicKey: agencyPub, Permissions: perms},
	})
	if err != nil {
		t.Fatal(err)
	}
	authFile = filepath.Join(dir, "auth.conf")
	if err := os.WriteFile(authFile, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	return authFile, agencySeed
}

// TestEmbeddedNATSAuth: sard in embedded mode with --nats-auth and
// --nats-listen starts, connects with its own seed, serves, and publishes
// what an agency's system, connected with its seed, receives; a client
// without a key is refused and the agency is confined.
func TestEmbeddedNATSAuth(t *testing.T) {
	const agency = "valley-rescue"
	authFile, agencySeed := authFiles(t, agency)
	cfg := Defaults()
	cfg.GRPCAddr, cfg.HTTPAddr, cfg.DataDir = "127.0.0.1:0", "127.0.0.1:0", t.TempDir()
	cfg.NATSAuthFile = authFile
	cfg.NATSListen = net.JoinHostPort("127.0.0.1", strconv.Itoa(testenv.FreePort(t)))
	logs := &syncBuffer{}
	a, err := Start(context.Background(), cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatalf("Start with --nats-auth: %v", err)
	}
	defer a.Close()
	for _, want := range []string{"embedded NATS: nkey users loaded", "users=2", "embedded NATS: listening for agencies", "sard serving"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
	url := "nats://" + cfg.NATSListen
	if a.Embedded.NATSURL != url || a.Embedded.NATSUsers != 2 {
		t.Errorf("Embedded NATS = %s with %d users, want %s with 2", a.Embedded.NATSURL, a.Embedded.NATSUsers, url)
	}
	if nc, err := nats.Connect(url); err == nil {
		nc.Close()
		t.Fatalf("a client without a key was let in")
	}

	seed, err := nats.NkeyOptionFromSeed(agencySeed)
	if err != nil {
		t.Fatal(err)
	}
	asyncErrs := make(chan error, 10)
	nc, err := nats.Connect(url, seed, nats.CustomInboxPrefix(dispatch.InboxPrefix(agency)),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { asyncErrs <- err }))
	if err != nil {
		t.Fatalf("agency connects with its seed: %v", err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// The stream sard made with its own user; the agency's durable consumer.
	js, _ := jetstream.New(nc)
	cons, err := js.CreateOrUpdateConsumer(ctx, dispatch.StreamName, jetstream.ConsumerConfig{
		Durable: dispatch.TaskConsumer(agency), FilterSubject: dispatch.TaskFilter(agency), AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatalf("agency: create its task consumer on the embedded server: %v", err)
	}
	if _, err := cons.Info(ctx); err != nil {
		t.Fatalf("agency: consumer info: %v", err)
	}
	joined, err := nc.SubscribeSync(dispatch.SubjectPrefix + "*.evt.participant." + agency + ".>")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	// A rescuer of the agency joins an incident: sard publishes it.
	conn, err := grpc.NewClient(a.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	as := func(token string) context.Context {
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	admin, op := as(a.Embedded.AdminToken), as(a.Embedded.OperatorToken)
	if _, err := sarv1.NewAgencyServiceClient(conn).CreateAgency(admin, &sarv1.CreateAgencyRequest{Agency: &sarv1.Agency{
		Id: agency, Name: "Valley rescue", Jurisdiction: cfg.EmbeddedJurisdiction, Kind: sarv1.AgencyKind_AGENCY_KIND_VOLUNTEER_RESCUE}}); err != nil {
		t.Fatalf("CreateAgency: %v", err)
	}
	inc, err := sarv1.NewIncidentServiceClient(conn).CreateIncident(op, &sarv1.CreateIncidentRequest{Title: "drill", AgencyIds: []string{agency}})
	if err != nil {
		t.Fatalf("CreateIncident: %v", err)
	}
	cred, err := sarv1.NewAuthServiceClient(conn).CreateCredential(admin, &sarv1.CreateCredentialRequest{
		Role: sarv1.Role_ROLE_RESCUER, AgencyId: agency, DisplayName: "Anna"})
	if err != nil {
		t.Fatalf("CreateCredential: %v", err)
	}
	part, err := sarv1.NewIncidentServiceClient(conn).JoinIncident(as(cred.GetToken()), &sarv1.JoinIncidentRequest{
		IncidentId: inc.GetIncident().GetId(), DeviceId: "phone-1"})
	if err != nil {
		t.Fatalf("JoinIncident: %v", err)
	}
	m, err := joined.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("agency: no participant event from sard: %v", err)
	}
	ev := &sarv1.Event{}
	if err := proto.Unmarshal(m.Data, ev); err != nil || ev.GetParticipantJoined().GetParticipant().GetId() != part.GetParticipant().GetId() {
		t.Errorf("agency received %s: %v (%v), want participant %s joined", m.Subject, ev, err, part.GetParticipant().GetId())
	}

	// Confined: not the whole scheme.
	if _, err := nc.SubscribeSync("sar.v1.>"); err != nil {
		t.Fatal(err)
	}
	_ = nc.Flush()
	select {
	case err := <-asyncErrs:
		if !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), `Subscription to "sar.v1.>"`) {
			t.Errorf("async error %v, want a permissions violation for sar.v1.>", err)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("agency subscribed to sar.v1.> without a permissions violation")
	}
}

func TestNATSAuthSettingsRefused(t *testing.T) {
	authFile, _ := authFiles(t, "valley-rescue")
	otherSeed := filepath.Join(t.TempDir(), "other.nk")
	writeSeed(t, otherSeed)
	for _, tc := range []struct {
		name string
		set  func(*Config)
		want string
	}{
		{"auth with nats-url", func(c *Config) {
			c.RedisURL, c.NATSURL, c.NATSAuthFile = "redis://127.0.0.1:1/0", "nats://127.0.0.1:1", authFile
		},
			"--nats-auth is for the embedded NATS server only"},
		{"listen with nats-url", func(c *Config) {
			c.RedisURL, c.NATSURL, c.NATSListen = "redis://127.0.0.1:1/0", "nats://127.0.0.1:1", ":4222"
		},
			"--nats-listen is for the embedded NATS server only"},
		{"open listen without users", func(c *Config) { c.NATSListen = "0.0.0.0:4222" }, "give it users with --nats-auth"},
		{"open listen without TLS", func(c *Config) { c.NATSListen, c.NATSAuthFile = "0.0.0.0:4222", authFile },
			"--nats-listen 0.0.0.0:4222 would carry positions, tasks and notices over the network in plaintext"},
		{"seed without users", func(c *Config) { c.NATSSeedFile = otherSeed }, "--nats-nkey-seed-file without --nats-auth"},
		{"seed not a user", func(c *Config) { c.NATSAuthFile, c.NATSSeedFile = authFile, otherSeed }, "is not a user of --nats-auth"},
		{"missing auth file", func(c *Config) { c.NATSAuthFile = filepath.Join(t.TempDir(), "none.conf") }, "--nats-auth"},
	} {
		cfg := Defaults()
		cfg.GRPCAddr, cfg.HTTPAddr, cfg.DataDir = "127.0.0.1:0", "127.0.0.1:0", t.TempDir()
		tc.set(&cfg)
		a, err := Start(context.Background(), cfg, slog.New(slog.NewTextHandler(&syncBuffer{}, nil)))
		if err == nil {
			a.Close()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Start = %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
}
