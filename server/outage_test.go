package server_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
	"github.com/mountain-sar/sar/internal/app"
	"github.com/mountain-sar/sar/internal/testenv"
	"github.com/mountain-sar/sar/server"
)

// TestHealthFollowsReadiness kills Redis: gRPC health, overall and per
// service, goes NOT_SERVING as /readyz goes 503, and SERVING again when
// Redis is back.
func TestHealthFollowsReadiness(t *testing.T) {
	e := startEnv(t)
	hc := healthpb.NewHealthClient(e.conn)
	services := []string{"", "sar.v1.LocationService", "sar.v1.IncidentService"}
	healthIs := func(want healthpb.HealthCheckResponse_ServingStatus) func() bool {
		return func() bool {
			for _, svc := range services {
				r, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{Service: svc})
				if err != nil || r.GetStatus() != want {
					return false
				}
			}
			return true
		}
	}
	readyz := func() int {
		resp, err := http.Get("http://" + e.app.HTTPAddr() + "/readyz")
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if !healthIs(healthpb.HealthCheckResponse_SERVING)() || readyz() != 200 {
		t.Fatalf("before the outage: health not SERVING or /readyz %d", readyz())
	}
	e.redis.Stop(testenv.WithSIGKILL())
	eventually(t, "health NOT_SERVING with Redis down", healthIs(healthpb.HealthCheckResponse_NOT_SERVING))
	if c := readyz(); c != http.StatusServiceUnavailable {
		t.Errorf("/readyz with Redis down = %d, want 503", c)
	}
	e.redis.Start()
	eventually(t, "health SERVING with Redis back", healthIs(healthpb.HealthCheckResponse_SERVING))
}

// TestStreamKeepsPrincipalThroughRedisOutage: a device stream outlives its
// credential's cache entry while Redis is down. The batch gets UNAVAILABLE
// in its ack and the stream stays open; after Redis returns the same
// stream stores again, and a revocation still ends it once the re-check
// can run.
func TestStreamKeepsPrincipalThroughRedisOutage(t *testing.T) {
	e := startEnv(t, func(c *app.Config) { c.CredentialCache = 200 * time.Millisecond })
	_, officer, inc := e.officerOnIncident()
	d := e.openDevice(officer, inc.GetId(), "phone")
	now := time.Now()
	if ack := d.send(walk(1, 5, now)...); len(ack.GetStored()) != 5 {
		t.Fatalf("before the outage ack = %v, want 5 stored", ack)
	}
	e.redis.Stop(testenv.WithSIGKILL())
	time.Sleep(400 * time.Millisecond) // the cached credential expires
	for range 3 {
		ack := d.send(walk(6, 5, now)...)
		if ack.GetProblem().GetCode() != uint32(codes.Unavailable) || len(ack.GetStored()) != 0 {
			t.Fatalf("during the outage ack = %v, want UNAVAILABLE in the ack and the stream open", ack)
		}
	}
	e.redis.Start()
	eventually(t, "the same stream storing again", func() bool {
		ack := d.send(walk(6, 5, now)...)
		return ack.GetProblem() == nil && ack.GetAckedThrough() == 10
	})
	who := must[*sarv1.WhoAmIResponse](t, "WhoAmI")(e.auth.WhoAmI(e.as(officer), &sarv1.WhoAmIRequest{}))
	must[*sarv1.RevokeCredentialResponse](t, "RevokeCredential")(e.auth.RevokeCredential(e.as(e.admin),
		&sarv1.RevokeCredentialRequest{CredentialId: who.GetPrincipal().GetCredentialId()}))
	time.Sleep(400 * time.Millisecond)
	if err := d.stream.Send(&sarv1.StreamFixesRequest{Batch: &sarv1.FixBatch{IncidentId: inc.GetId(), DeviceId: "phone", Fixes: walk(11, 1, now)}}); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if _, err := d.stream.Recv(); status.Code(err) != codes.Unauthenticated {
		t.Errorf("after revocation the stream ends with %v, want UNAUTHENTICATED", err)
	}
}

// TestWatchRidesOutARedisOutage: a console's WatchIncident stream outlives
// a Redis outage longer than its credential's cache entry and several
// re-checks, and after Redis returns it carries the events of the same
// incident; a revocation still ends it once the re-check can run. An
// outage longer than the grace ends a watch with UNAVAILABLE (its console
// reconnects to a replica that has its store).
func TestWatchRidesOutARedisOutage(t *testing.T) {
	e := startEnv(t, func(c *app.Config) { c.CredentialCache, c.WatchGrace = 200*time.Millisecond, 2*time.Second })
	op, officer, inc := e.officerOnIncident()
	d := e.openDevice(officer, inc.GetId(), "phone")
	watch := func(token string) (msgs chan *sarv1.WatchIncidentResponse, ended chan error) {
		w, err := e.inc.WatchIncident(e.as(token), &sarv1.WatchIncidentRequest{IncidentId: inc.GetId()})
		if err != nil {
			t.Fatalf("WatchIncident: %v", err)
		}
		if m, err := w.Recv(); err != nil || m.GetSnapshot() == nil {
			t.Fatalf("first watch message = %v, %v; want the snapshot", m, err)
		}
		msgs, ended = make(chan *sarv1.WatchIncidentResponse, 64), make(chan error, 1)
		go func() {
			for {
				m, err := w.Recv()
				if err != nil {
					ended <- err
					return
				}
				msgs <- m
			}
		}()
		return msgs, ended
	}
	msgs, ended := watch(op)

	e.redis.Stop(testenv.WithSIGKILL())
	select { // five re-checks (every 200 ms here), past the cache entry, within the grace
	case err := <-ended:
		t.Fatalf("the watch ended during a 1 s Redis outage: %v", err)
	case <-time.After(time.Second):
	}
	e.redis.Start()

	now := time.Now()
	seq := uint64(1)
	eventually(t, "a batch stored after the outage", func() bool {
		ack := d.send(walk(seq, 5, now)...)
		if ack.GetProblem() == nil {
			seq = ack.GetAckedThrough() + 1
		}
		return ack.GetProblem() == nil && ack.GetAckedThrough() >= 5
	})
	deadline := time.After(10 * time.Second)
	for got := false; !got; {
		select {
		case m := <-msgs:
			got = m.GetEvent().GetPositions() != nil
		case err := <-ended:
			t.Fatalf("the watch ended after the outage: %v", err)
		case <-deadline:
			t.Fatal("no positions event on the watch after the outage")
		}
	}

	must[*sarv1.RevokeCredentialResponse](t, "RevokeCredential")(e.auth.RevokeCredential(e.as(e.admin),
		&sarv1.RevokeCredentialRequest{CredentialId: e.principal(op).GetCredentialId()}))
	select {
	case err := <-ended:
		if status.Code(err) != codes.Unauthenticated {
			t.Errorf("after revocation the watch ends with %v, want UNAUTHENTICATED", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("the watch still open 10 s after its credential was revoked")
	}

	// Past the grace (2 s here) the watch ends.
	_, ended = watch(e.operator("north"))
	e.redis.Stop(testenv.WithSIGKILL())
	defer e.redis.Start()
	select {
	case err := <-ended:
		if status.Code(err) != codes.Unavailable {
			t.Errorf("a watch past the outage grace ends with %v, want UNAVAILABLE", err)
		}
	case <-time.After(6 * time.Second):
		t.Error("the watch still open 6 s into a Redis outage, with a grace of 2 s")
	}
}

// TestTaskStreamRidesOutARedisOutage: a team phone's StreamTasks outlives
// a Redis outage longer than its credential's cache entry, several
// re-checks and a poll of its feed, and the next task offered after Redis
// returns reaches it on the same stream.
func TestTaskStreamRidesOutARedisOutage(t *testing.T) {
	e := startEnv(t, func(c *app.Config) { c.CredentialCache = 200 * time.Millisecond })
	c := e.callout()
	phone := e.streamTasks(c.rescuers["blue-sky/k9"], c.inc, "")
	phone.backlog()

	e.redis.Stop(testenv.WithSIGKILL())
	select { // re-checks every 200 ms, and the feed's poll (every 5 s) fails once
	case err := <-phone.err:
		t.Fatalf("the task stream ended during the Redis outage: %v", err)
	case <-time.After(server.TaskFeedPoll + time.Second):
	}
	e.redis.Start()

	const title = "after the outage"
	eventually(t, "a task offered after the outage", func() bool {
		_, err := e.tasks().CreateTask(e.as(c.op), &sarv1.CreateTaskRequest{IncidentId: c.inc, Kind: sarv1.TaskKind_TASK_KIND_STAND_BY,
			Team: &sarv1.TeamRef{AgencyId: "blue-sky", TeamId: "k9"}, Title: title,
			Instructions: "Wait at the north ridge trailhead", Point: &sarv1.LatLng{Lat: 30.25, Lng: 119.72}})
		return err == nil
	})
	if it := phone.next("the task after the outage"); it.GetTask().GetTitle() != title {
		t.Errorf("phone got %v after the outage, want the task %q", it, title)
	}
}
