package dispatch_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"google.golang.org/protobuf/proto"

	"github.com/mountain-sar/sar/dispatch"
	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/testenv"
)

const (
	agencyA  = "valley-rescue"
	agencyB  = "ridge-rescue"
	incident = "01m8jr4ce97enc5xbf8y16h4vm"
)

// user is a generated nkey user with its seed in a file, as sarctl makes.
type user struct {
	pub, seedFile string
}

func newUser(t *testing.T, name string) user {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	pub, _ := kp.PublicKey()
	f := filepath.Join(t.TempDir(), name+".nk")
	if err := os.WriteFile(f, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	return user{pub: pub, seedFile: f}
}

// authServer starts nats-server with JetStream and the authorization file
// AuthorizationConfig renders for these users, read as nats-server reads
// an include file.
func authServer(t *testing.T, users []dispatch.NkeyUser) *testenv.NATS {
	t.Helper()
	conf, err := dispatch.AuthorizationConfig("test users", users)
	if err != nil {
		t.Fatalf("AuthorizationConfig: %v", err)
	}
	path := filepath.Join(t.TempDir(), "auth.conf")
	if err := os.WriteFile(path, conf, 0o600); err != nil {
		t.Fatal(err)
	}
	o, err := natsserver.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("nats-server cannot read the generated file: %v\n%s", err, conf)
	}
	if len(o.Nkeys) != len(users) {
		t.Fatalf("nats-server read %d nkey users from the generated file, want %d\n%s", len(o.Nkeys), len(users), conf)
	}
	return testenv.StartNATS(t, testenv.WithNATSServerOptions(func(so *natsserver.Options) { so.Nkeys = o.Nkeys }))
}

// conn is a client connection that records the server's asynchronous
// errors (permission violations).
type conn struct {
	*nats.Conn
	errs chan error
}

func connect(t *testing.T, url string, u user, opts ...nats.Option) *conn {
	t.Helper()
	seed, err := nats.NkeyOptionFromSeed(u.seedFile)
	if err != nil {
		t.Fatal(err)
	}
	c := &conn{errs: make(chan error, 100)}
	opts = append(opts, seed, nats.PermissionErrOnSubscribe(true),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { c.errs <- err }))
	if c.Conn, err = nats.Connect(url, opts...); err != nil {
		t.Fatalf("connect with %s: %v", u.seedFile, err)
	}
	t.Cleanup(c.Close)
	return c
}

// violation waits for the server to report a permissions violation for
// an operation ("Publish" or "Subscription") on exactly this subject.
func (c *conn) violation(t *testing.T, op, subject string) {
	t.Helper()
	want := fmt.Sprintf("Permissions Violation for %s to %q", op, subject)
	timeout := time.After(5 * time.Second)
	for {
		select {
		case err := <-c.errs:
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), want) {
				return
			}
			t.Logf("(other async error: %v)", err)
		case <-timeout:
			t.Errorf("no %q from the server", want)
			return
		}
	}
}

// noErrors checks that the server reported nothing so far.
func (c *conn) noErrors(t *testing.T) {
	t.Helper()
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-c.errs:
		t.Errorf("unexpected async error: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
}

// cannotSubscribe checks that a subscription is refused and receives none
// of the messages published on pubSubject.
func (c *conn) cannotSubscribe(t *testing.T, sard *conn, subject, pubSubject string) {
	t.Helper()
	sub, err := c.SubscribeSync(subject)
	if err != nil {
		t.Fatalf("SubscribeSync(%s): %v", subject, err)
	}
	defer sub.Unsubscribe()
	c.violation(t, "Subscription", subject)
	if err := sard.Publish(pubSubject, []byte("x")); err != nil {
		t.Fatal(err)
	}
	_ = sard.Flush()
	if m, err := sub.NextMsg(300 * time.Millisecond); err == nil {
		t.Errorf("subscription to %s received %s", subject, m.Subject)
	} else if !errors.Is(err, nats.ErrPermissionViolation) {
		t.Errorf("NextMsg on the refused subscription %s: %v, want a permissions violation", subject, err)
	}
}

func event(id string) []byte {
	b, _ := proto.Marshal(&sarv1.Event{Id: id, IncidentId: incident})
	return b
}

func publishDurable(t *testing.T, js jetstream.JetStream, subject, id string) uint64 {
	t.Helper()
	m := nats.NewMsg(subject)
	m.Data = event(id)
	m.Header.Set(jetstream.MsgIDHeader, id)
	ack, err := js.PublishMsg(t.Context(), m)
	if err != nil {
		t.Fatalf("sard publish %s: %v", subject, err)
	}
	return ack.Sequence
}

func TestAgencyPermissionsOnRealServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts nats-server")
	}
	sardU, aU, bU, consoleU := newUser(t, "sard"), newUser(t, agencyA), newUser(t, agencyB), newUser(t, "console")
	adminU := newUser(t, "admin") // the test's view of the stream and its consumers
	permA, err := dispatch.AgencyPermissions(agencyA)
	if err != nil {
		t.Fatal(err)
	}
	permB, _ := dispatch.AgencyPermissions(agencyB)
	srv := authServer(t, []dispatch.NkeyUser{
		{Comment: "sard", PublicKey: sardU.pub, Permissions: dispatch.ServicePermissions()},
		{Comment: "agency " + agencyA, PublicKey: aU.pub, Permissions: permA},
		{Comment: "agency " + agencyB, PublicKey: bU.pub, Permissions: permB},
		{Comment: "console", PublicKey: consoleU.pub, Permissions: dispatch.ConsolePermissions()},
		{Comment: "test admin", PublicKey: adminU.pub, Permissions: dispatch.Permissions{Publish: []string{">"}, Subscribe: []string{">"}}},
	})
	ctx := t.Context()

	// Without a known key nobody gets in.
	if nc, err := nats.Connect(srv.URL()); err == nil {
		nc.Close()
		t.Fatalf("anonymous connection accepted")
	}

	// sard makes the stream as it does at startup, and publishes.
	sard := connect(t, srv.URL(), sardU)
	bus, err := dispatch.New(sard.Conn)
	if err != nil {
		t.Fatal(err)
	}
	if err := bus.EnsureStream(ctx); err != nil {
		t.Fatalf("sard: EnsureStream: %v", err)
	}
	if err := bus.EnsureStream(ctx); err != nil { // the update path of a restart
		t.Fatalf("sard: EnsureStream again: %v", err)
	}
	sardJS, _ := jetstream.New(sard.Conn)
	adminJS, _ := jetstream.New(connect(t, srv.URL(), adminU).Conn)

	a := connect(t, srv.URL(), aU, nats.CustomInboxPrefix(dispatch.InboxPrefix(agencyA)))
	b := connect(t, srv.URL(), bU, nats.CustomInboxPrefix(dispatch.InboxPrefix(agencyB)))
	jsA, _ := jetstream.New(a.Conn)
	jsB, _ := jetstream.New(b.Conn)
	taskA := dispatch.SubjectPrefix + incident + ".evt.task." + agencyA + ".alpha"
	taskB := dispatch.SubjectPrefix + incident + ".evt.task." + agencyB + ".bravo"
	noticeA := dispatch.SubjectPrefix + incident + ".evt.notice." + agencyA
	posA := dispatch.SubjectPrefix + incident + ".pos." + agencyA + ".alpha.p1"
	posB := dispatch.SubjectPrefix + incident + ".pos." + agencyB + ".bravo.p2"

	t.Run("OwnTasks", func(t *testing.T) {
		cons, err := jsA.CreateOrUpdateConsumer(ctx, dispatch.StreamName, jetstream.ConsumerConfig{
			Durable: dispatch.TaskConsumer(agencyA), FilterSubject: dispatch.TaskFilter(agencyA),
			AckPolicy: jetstream.AckExplicitPolicy})
		if err != nil {
			t.Fatalf("agency A: create its task consumer: %v", err)
		}
		publishDurable(t, sardJS, taskB, "ev-task-b")
		seq := publishDurable(t, sardJS, taskA, "ev-task-a")
		batch, err := cons.Fetch(10, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			t.Fatalf("agency A: fetch: %v", err)
		}
		var got []string
		for m := range batch.Messages() {
			ev := &sarv1.Event{}
			if err := proto.Unmarshal(m.Data(), ev); err != nil {
				t.Errorf("payload of %s is not a sar.v1.Event: %v", m.Subject(), err)
			}
			got = append(got, m.Subject()+" "+ev.GetId())
			if err := m.DoubleAck(ctx); err != nil { // an ack confirmed on A's inbox
				t.Errorf("agency A: ack: %v", err)
			}
		}
		if batch.Error() != nil {
			t.Errorf("agency A: fetch: %v", batch.Error())
		}
		if want := taskA + " ev-task-a"; len(got) != 1 || got[0] != want {
			t.Errorf("agency A's task consumer delivered %q, want just %q", got, want)
		}
		info, err := cons.Info(ctx)
		if err != nil {
			t.Fatalf("agency A: consumer info: %v", err)
		}
		if info.AckFloor.Stream != seq || info.NumAckPending != 0 || info.NumPending != 0 {
			t.Errorf("agency A's consumer after the ack: ack floor %d, ack pending %d, pending %d; want %d, 0, 0",
				info.AckFloor.Stream, info.NumAckPending, info.NumPending, seq)
		}

		// A narrower filter (one incident's notices) is allowed too.
		nc, err := jsA.CreateOrUpdateConsumer(ctx, dispatch.StreamName, jetstream.ConsumerConfig{
			Durable: dispatch.NoticeConsumer(agencyA), FilterSubject: dispatch.SubjectPrefix + incident + ".evt.notice." + agencyA,
			AckPolicy: jetstream.AckExplicitPolicy})
		if err != nil {
			t.Fatalf("agency A: create its notice consumer: %v", err)
		}
		publishDurable(t, sardJS, noticeA, "ev-notice-a")
		m, err := nc.Next(jetstream.FetchMaxWait(2 * time.Second))
		if err != nil || m.Subject() != noticeA {
			t.Fatalf("agency A: next notice: %v, %v", m, err)
		}
		if err := m.Ack(); err != nil {
			t.Fatal(err)
		}

		// Live: A follows its teams' positions.
		sub, err := a.SubscribeSync(dispatch.SubjectPrefix + "*.pos." + agencyA + ".>")
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := sard.Publish(posA, event("ev-pos-a")); err != nil {
			t.Fatal(err)
		}
		if m, err := sub.NextMsg(2 * time.Second); err != nil || m.Subject != posA {
			t.Fatalf("agency A: own positions: %v, %v", m, err)
		}
		a.noErrors(t)
	})

	t.Run("NotOthersSubjects", func(t *testing.T) {
		a.cannotSubscribe(t, sard, dispatch.TaskFilter(agencyB), taskB)
		a.cannotSubscribe(t, sard, dispatch.SubjectPrefix+"*.pos."+agencyB+".>", posB)
		a.cannotSubscribe(t, sard, posB, posB)
		a.cannotSubscribe(t, sard, dispatch.SubjectPrefix+"*.evt.task.*.>", taskB)
		a.cannotSubscribe(t, sard, "sar.v1.>", taskB)
		a.cannotSubscribe(t, sard, ">", taskB)
		// B's replies: its inbox prefix, and the default one.
		a.cannotSubscribe(t, sard, dispatch.InboxPrefix(agencyB)+".>", dispatch.InboxPrefix(agencyB)+".x")
		a.cannotSubscribe(t, sard, "_INBOX.>", "_INBOX.x")
	})

	t.Run("NoPublishing", func(t *testing.T) {
		watch, err := sard.SubscribeSync("sar.v1.>")
		if err != nil {
			t.Fatal(err)
		}
		defer watch.Unsubscribe()
		_ = sard.Flush()
		for _, s := range []string{taskA, taskB, posA, noticeA} {
			if err := a.Publish(s, event("forged")); err != nil {
				t.Fatal(err)
			}
			_ = a.Flush()
			a.violation(t, "Publish", s)
		}
		if m, err := watch.NextMsg(300 * time.Millisecond); err == nil {
			t.Errorf("a subscriber of sar.v1.> received %s published by agency A", m.Subject)
		}
	})

	// JetStream requests that are refused time out for the caller; the
	// server reports the violation.
	short := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 500*time.Millisecond) }
	create := func(name, filter string) error {
		c, cancel := short()
		defer cancel()
		_, err := jsA.CreateOrUpdateConsumer(c, dispatch.StreamName, jetstream.ConsumerConfig{
			Durable: name, FilterSubject: filter, AckPolicy: jetstream.AckExplicitPolicy})
		return err
	}
	consumerExists := func(name string) bool {
		_, err := adminJS.Consumer(ctx, dispatch.StreamName, name)
		return err == nil
	}

	t.Run("NoConsumersOnOthersSubjects", func(t *testing.T) {
		for _, c := range []struct{ name, filter string }{
			{dispatch.TaskConsumer(agencyA), dispatch.TaskFilter(agencyB)},        // own name, B's tasks
			{dispatch.TaskConsumer(agencyA), dispatch.NoticeFilter(agencyB)},      // own name, B's notices
			{dispatch.TaskConsumer(agencyB), dispatch.TaskFilter(agencyB)},        // B's consumer
			{dispatch.TaskConsumer(agencyA), "sar.v1.inc.*.evt.task.*.>"},         // every agency's tasks
			{dispatch.TaskConsumer(agencyA), dispatch.StreamSubject},              // the whole stream
			{dispatch.NoticeConsumer(agencyA), dispatch.TaskFilter(agencyA)},      // the notice consumer on tasks
			{"mine", dispatch.TaskFilter(agencyA)},                                // a name not its own
			{dispatch.TaskConsumer(agencyA) + "-x", dispatch.TaskFilter(agencyA)}, // nor a longer one
		} {
			if err := create(c.name, c.filter); err == nil {
				t.Errorf("agency A created consumer %s filtered to %s", c.name, c.filter)
			}
			a.violation(t, "Publish", "$JS.API.CONSUMER.CREATE."+dispatch.StreamName+"."+c.name+"."+c.filter)
		}
		// Unfiltered, by name (…CREATE.<stream>.<name>) and the legacy forms.
		if err := create(dispatch.TaskConsumer(agencyA)+"-all", ""); err == nil {
			t.Errorf("agency A created an unfiltered consumer")
		}
		a.violation(t, "Publish", "$JS.API.CONSUMER.CREATE."+dispatch.StreamName+"."+dispatch.TaskConsumer(agencyA)+"-all")
		for _, subj := range []string{
			"$JS.API.CONSUMER.CREATE." + dispatch.StreamName,
			"$JS.API.CONSUMER.DURABLE.CREATE." + dispatch.StreamName + "." + dispatch.TaskConsumer(agencyA),
		} {
			c, cancel := short()
			_, err := a.RequestWithContext(c, subj, []byte(`{"stream_name":"SAR_EVENTS","config":{"ack_policy":"explicit"}}`))
			cancel()
			if err == nil {
				t.Errorf("agency A: %s answered", subj)
			}
			a.violation(t, "Publish", subj)
		}
		if consumerExists(dispatch.TaskConsumer(agencyB)) || consumerExists("mine") || consumerExists(dispatch.TaskConsumer(agencyA)+"-all") {
			t.Errorf("a refused consumer exists")
		}
		cons, err := adminJS.Consumer(ctx, dispatch.StreamName, dispatch.TaskConsumer(agencyA))
		if err != nil || cons.CachedInfo().Config.FilterSubject != dispatch.TaskFilter(agencyA) {
			t.Errorf("agency A's task consumer after the refusals: %v, %v; want its own filter", cons, err)
		}
	})

	t.Run("ServerChecksTheFilterInTheSubject", func(t *testing.T) {
		// The permission is on the create subject; the server refuses a
		// body whose filter is not the subject's, so A cannot widen it.
		subj := "$JS.API.CONSUMER.CREATE." + dispatch.StreamName + "." + dispatch.TaskConsumer(agencyA) + "." + dispatch.TaskFilter(agencyA)
		for _, cfg := range []string{
			`{"durable_name":"` + dispatch.TaskConsumer(agencyA) + `","filter_subject":"` + dispatch.TaskFilter(agencyB) + `","ack_policy":"explicit"}`,
			`{"durable_name":"` + dispatch.TaskConsumer(agencyA) + `","filter_subjects":["` + dispatch.TaskFilter(agencyB) + `"],"ack_policy":"explicit"}`,
			`{"durable_name":"` + dispatch.TaskConsumer(agencyA) + `","ack_policy":"explicit"}`,
		} {
			m, err := a.RequestWithContext(ctx, subj, []byte(`{"stream_name":"SAR_EVENTS","config":`+cfg+`}`))
			if err != nil {
				t.Fatalf("create request: %v", err)
			}
			var resp struct {
				Error *struct {
					Code        int    `json:"code"`
					Description string `json:"description"`
				} `json:"error"`
			}
			if err := json.Unmarshal(m.Data, &resp); err != nil || resp.Error == nil {
				t.Errorf("create on %s with config %s: answer %s, want an error", subj, cfg, m.Data)
			}
		}
		cons, err := adminJS.Consumer(ctx, dispatch.StreamName, dispatch.TaskConsumer(agencyA))
		if err != nil || cons.CachedInfo().Config.FilterSubject != dispatch.TaskFilter(agencyA) || len(cons.CachedInfo().Config.FilterSubjects) != 0 {
			t.Errorf("agency A's task consumer: %+v, %v; want its own filter", cons.CachedInfo().Config, err)
		}
		a.noErrors(t)
	})

	t.Run("NoStreamReadsNorOthersConsumers", func(t *testing.T) {
		if _, err := jsB.CreateOrUpdateConsumer(ctx, dispatch.StreamName, jetstream.ConsumerConfig{
			Durable: dispatch.TaskConsumer(agencyB), FilterSubject: dispatch.TaskFilter(agencyB), AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
			t.Fatalf("agency B: create its task consumer: %v", err)
		}
		b.noErrors(t)
		for _, subj := range []string{
			"$JS.API.STREAM.MSG.GET." + dispatch.StreamName,
			"$JS.API.DIRECT.GET." + dispatch.StreamName,
			"$JS.API.DIRECT.GET." + dispatch.StreamName + "." + taskB,
			"$JS.API.STREAM.INFO." + dispatch.StreamName,
			"$JS.API.STREAM.PURGE." + dispatch.StreamName,
			"$JS.API.STREAM.DELETE." + dispatch.StreamName,
			"$JS.API.CONSUMER.LIST." + dispatch.StreamName,
			"$JS.API.CONSUMER.INFO." + dispatch.StreamName + "." + dispatch.TaskConsumer(agencyB),
			"$JS.API.CONSUMER.MSG.NEXT." + dispatch.StreamName + "." + dispatch.TaskConsumer(agencyB),
			"$JS.API.CONSUMER.DELETE." + dispatch.StreamName + "." + dispatch.TaskConsumer(agencyB),
		} {
			c, cancel := short()
			_, err := a.RequestWithContext(c, subj, []byte(`{"seq":1,"batch":1}`))
			cancel()
			if err == nil {
				t.Errorf("agency A: %s answered", subj)
			}
			a.violation(t, "Publish", subj)
		}
		if !consumerExists(dispatch.TaskConsumer(agencyB)) {
			t.Errorf("agency B's consumer is gone")
		}
		// B's tasks still wait for B alone: nothing was delivered.
		info, err := adminJS.Consumer(ctx, dispatch.StreamName, dispatch.TaskConsumer(agencyB))
		if err != nil {
			t.Fatal(err)
		}
		if ci := info.CachedInfo(); ci.NumPending == 0 || ci.Delivered.Consumer != 0 {
			t.Errorf("agency B's consumer: %d pending, %d delivered; want some pending, none delivered", ci.NumPending, ci.Delivered.Consumer)
		}
	})

	t.Run("Console", func(t *testing.T) {
		console := connect(t, srv.URL(), consoleU)
		sub, err := console.SubscribeSync(dispatch.IncidentSubjects(incident))
		if err != nil {
			t.Fatal(err)
		}
		if err := console.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := sard.Publish(posB, event("ev-pos-b")); err != nil {
			t.Fatal(err)
		}
		if m, err := sub.NextMsg(2 * time.Second); err != nil || m.Subject != posB {
			t.Fatalf("console: %v, %v", m, err)
		}
		console.noErrors(t)
		if err := console.Publish(posB, event("forged")); err != nil {
			t.Fatal(err)
		}
		_ = console.Flush()
		console.violation(t, "Publish", posB)
		c, cancel := short()
		defer cancel()
		if _, err := console.RequestWithContext(c, "$JS.API.INFO", nil); err == nil {
			t.Errorf("console: $JS.API.INFO answered")
		}
		console.violation(t, "Publish", "$JS.API.INFO")
	})
}

func TestAgencyPermissionsRejectsBadIDs(t *testing.T) {
	for _, id := range []string{"", "_caller", "a.b", "a*", "a>", "A", "a b", strings.Repeat("a", 64)} {
		if _, err := dispatch.AgencyPermissions(id); err == nil {
			t.Errorf("AgencyPermissions(%q): no error", id)
		}
	}
}

func TestConsumerNamesAreDistinct(t *testing.T) {
	// Agency ids may end in what another's consumer suffix starts with.
	ids := []string{"a", "a-tasks", "a-notices", "a-tasks-tasks", "tasks", "notices", "a-", "a--tasks"}
	seen := map[string]string{}
	for _, id := range ids {
		for _, n := range []string{dispatch.TaskConsumer(id), dispatch.NoticeConsumer(id)} {
			if other, ok := seen[n]; ok && other != id {
				t.Errorf("consumer name %q belongs to agencies %q and %q", n, other, id)
			}
			seen[n] = id
		}
	}
}

func TestAuthorizationConfigRefusesBadUsers(t *testing.T) {
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	acc, _ := nkeys.CreateAccount()
	accPub, _ := acc.PublicKey()
	for name, users := range map[string][]dispatch.NkeyUser{
		"seed":      {{PublicKey: string(seed)}},
		"account":   {{PublicKey: accPub}},
		"twice":     {{PublicKey: pub}, {PublicKey: pub}},
		"multiline": {{PublicKey: pub, Comment: "a\nb"}},
	} {
		if out, err := dispatch.AuthorizationConfig("h", users); err == nil {
			t.Errorf("%s: AuthorizationConfig = %s, want an error", name, out)
		}
	}
}
