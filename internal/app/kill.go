package app

// Kill stops the app as a crash would, for tests of what the other
// replicas and the clients do when one dies. The listeners and every
// client connection close at once, without NOT_SERVING or a drain of
// streams and in-flight batches (server.Kill); the NATS connection closes
// without draining; the outbox relay and the escalation sweep stop where
// they are; then Redis closes. What a dead process leaves behind is left
// here too: an event written to its outbox but not yet acknowledged by
// JetStream, a batch stored whose ack never left. One difference remains:
// nats.go writes out what it had buffered as its connection closes, which
// a killed process would lose (live positions only: durable events count
// on JetStream's acknowledgement, not on that buffer).
//
// Close after Kill does nothing more.
func (a *App) Kill() {
	a.closeOnce.Do(func() {
		if a.Server != nil {
			a.Server.Kill()
			<-a.served
		}
		if a.NATS != nil {
			a.NATS.Close()
		}
		a.closeAll()
	})
}
