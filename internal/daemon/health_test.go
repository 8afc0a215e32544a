package daemon_test

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/ledgerd/ledger/internal/testenv"
)

// TestHealthServedWithoutKey: grpc.health.v1.Health answers without a key,
// SERVING for the server and for each ledger service while ledgerd serves,
// and tells its watchers NOT_SERVING once ledgerd shuts down. Before, the
// method was open in the auth table but not served (Unimplemented).
func TestHealthServedWithoutKey(t *testing.T) {
	t.Parallel()
	h := start(t)
	conn, err := grpc.NewClient(h.m.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	testenv.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	client := healthpb.NewHealthClient(conn)
	for _, service := range []string{"", "ledger.v1.CommandService", "ledger.v1.QueryService"} {
		resp, err := client.Check(ctx(t), &healthpb.HealthCheckRequest{Service: service})
		testenv.NoError(t, err)
		if got := resp.GetStatus(); got != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("Check(%q) = %s, want SERVING", service, got)
		}
	}

	wctx, cancel := context.WithCancel(ctx(t))
	defer cancel()
	watch, err := client.Watch(wctx, &healthpb.HealthCheckRequest{})
	testenv.NoError(t, err)
	first, err := watch.Recv()
	testenv.NoError(t, err)
	if first.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Watch starts with %s, want SERVING", first.GetStatus())
	}
	closed := make(chan struct{})
	go func() { defer close(closed); h.m.Close() }()
	next, err := watch.Recv()
	testenv.NoError(t, err)
	if next.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("Watch during shutdown: %s, want NOT_SERVING", next.GetStatus())
	}
	cancel() // the server's graceful stop waits for this stream
	<-closed
}
