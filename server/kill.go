package server

// Kill stops serving at once, as a crash of the process would look to its
// clients: the listeners and every connection close now, open streams and
// in-flight calls break with a transport error, and health never says
// NOT_SERVING first. Calls already running inside the server finish
// against whatever backends are left, but their answers go nowhere. For
// tests of what the other replicas and the clients do when one dies;
// Shutdown is the way to stop.
func (s *Server) Kill() {
	s.grpc.Stop()
	s.mu.Lock()
	hs := s.http
	s.drain.Do(func() { close(s.draining) }) // a Serve not yet started serves nothing
	s.mu.Unlock()
	if hs != nil {
		_ = hs.Close()
	}
	s.cut()
	s.bg.Wait()
}
