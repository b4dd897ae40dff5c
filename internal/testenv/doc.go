// Package testenv starts real backing services for integration tests: Redis
// (a redis-server child process, alone or as a small Redis Cluster) and NATS
// with JetStream (nats-server embedded in the test binary).
//
// Every service listens on a free 127.0.0.1 port and keeps its data in a
// tb.TempDir(), so tests may run side by side; tests can stop, crash and
// restart a service on the same port and directory to exercise reconnects and
// persistence. Everything is stopped by tb.Cleanup, whether the test passed
// or not.
//
// The helpers follow the MustX style: they take a testing.TB, call
// tb.Helper(), and fail the test rather than return errors. A service's
// methods report to the testing.TB it was started with, so call them from
// that test's goroutine (not from a subtest or another goroutine). The types
// are not safe for concurrent use.
//
// A typical test:
//
//	func TestFixesSurviveRestart(t *testing.T) {
//		rdb := testenv.StartRedis(t, testenv.WithAOF())
//		broker := testenv.StartNATS(t)
//		// ... connect to rdb.URL() and broker.URL(), store some fixes ...
//		rdb.Restart(testenv.WithSIGKILL()) // crash: acknowledged writes stay
//		broker.Restart()                   // same port: clients reconnect
//		// ... check that nothing was lost ...
//	}
//
// Redis tests need the redis-server binary on PATH. CI must run them, so a
// missing binary fails the test and tells to run `make test`, which installs
// it; set SAR_TEST_ALLOW_SKIP=1 to skip instead on a machine without it.
package testenv
