package server

import (
	"context"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	sarv1 "github.com/mountain-sar/sar/gen/sar/v1"
)

// servedServices are the services whose gRPC health follows readiness.
var servedServices = []string{sarv1.AuthService_ServiceDesc.ServiceName, sarv1.AgencyService_ServiceDesc.ServiceName,
	sarv1.IncidentService_ServiceDesc.ServiceName, sarv1.LocationService_ServiceDesc.ServiceName,
	sarv1.SearchService_ServiceDesc.ServiceName, sarv1.TaskService_ServiceDesc.ServiceName}

// setHealth sets the overall and every service's gRPC health.
func (s *Server) setHealth(st healthpb.HealthCheckResponse_ServingStatus) {
	s.health.SetServingStatus("", st)
	for _, name := range servedServices {
		s.health.SetServingStatus(name, st)
	}
}

// followReady keeps gRPC health (grpc.health.v1, overall and per service)
// in step with readiness, the check behind /readyz: NOT_SERVING while a
// backend (Redis, NATS) does not answer, SERVING again when it does. It
// checks every ReadyInterval until the server shuts down (Shutdown sets
// NOT_SERVING for good).
func (s *Server) followReady() {
	if s.opt.Ready == nil {
		return
	}
	t := time.NewTicker(s.opt.ReadyInterval)
	defer t.Stop()
	serving := true
	for {
		select {
		case <-s.draining:
			return
		case <-s.base.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(s.base, min(2*time.Second, max(s.opt.ReadyInterval, 500*time.Millisecond)))
		err := s.opt.Ready(ctx)
		cancel()
		switch {
		case err != nil && serving:
			s.log.Warn("not ready: gRPC health NOT_SERVING", "err", err)
			s.setHealth(healthpb.HealthCheckResponse_NOT_SERVING)
		case err == nil && !serving:
			s.log.Info("ready again: gRPC health SERVING")
			s.setHealth(healthpb.HealthCheckResponse_SERVING)
		}
		serving = err == nil
	}
}
