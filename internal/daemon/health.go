package daemon

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Limits of the gRPC health service.
const (
	// healthCheckEvery is how often the health service pings PostgreSQL: it
	// bounds how long Check answers SERVING after PostgreSQL became
	// unreachable, or NOT_SERVING after it came back.
	healthCheckEvery = 1 * time.Second
	// healthPingTimeout bounds one ping; a PostgreSQL that does not answer in
	// time counts as unreachable.
	healthPingTimeout = 1 * time.Second
)

// healthWatch serves grpc.health.v1.Health: SERVING while PostgreSQL answers
// (commands and queries need it; NATS they do not), NOT_SERVING while it does
// not and from the start of shutdown on, for the server as a whole ("") and
// for each service registered.
type healthWatch struct {
	srv   *health.Server
	ping  func(context.Context) error
	names []string
}

// services is where services are registered, and listed (*grpc.Server,
// or grpcapi.OpenServices for those that need no key).
type services interface {
	grpc.ServiceRegistrar
	GetServiceInfo() map[string]grpc.ServiceInfo
}

// registerHealth registers the health service on s, after every other
// service (it lists them), and checks once so that the first answer is true.
func registerHealth(ctx context.Context, s services, ping func(context.Context) error) *healthWatch {
	h := &healthWatch{srv: health.NewServer(), ping: ping, names: []string{""}}
	for name := range s.GetServiceInfo() {
		h.names = append(h.names, name)
	}
	healthpb.RegisterHealthServer(s, h.srv)
	h.check(ctx)
	return h
}

// check pings PostgreSQL once and sets every name's status by the answer.
func (h *healthWatch) check(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, healthPingTimeout)
	defer cancel()
	st := healthpb.HealthCheckResponse_SERVING
	if h.ping(ctx) != nil {
		st = healthpb.HealthCheckResponse_NOT_SERVING
	}
	for _, name := range h.names {
		h.srv.SetServingStatus(name, st) // ignored after shutdown
	}
}

// run checks every healthCheckEvery until ctx ends.
func (h *healthWatch) run(ctx context.Context) {
	t := time.NewTicker(healthCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			h.check(ctx)
		}
	}
}

// shutdown answers NOT_SERVING from now on, to Check and to every Watch.
func (h *healthWatch) shutdown() { h.srv.Shutdown() }
