package daemon

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// TestHealthNotServingWithoutPostgres: with PostgreSQL unreachable the health
// service answers NOT_SERVING, and SERVING again once it answers.
func TestHealthNotServingWithoutPostgres(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(context.Background(), "postgres://postgres@"+addr+"/ledger")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var reachable bool
	ping := func(ctx context.Context) error {
		if reachable {
			return nil
		}
		return pool.Ping(ctx)
	}
	h := registerHealth(ctx, grpc.NewServer(), ping)
	status := func() healthpb.HealthCheckResponse_ServingStatus {
		resp, err := h.srv.Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetStatus()
	}
	if got := status(); got != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("PostgreSQL unreachable: %s, want NOT_SERVING", got)
	}
	reachable = true
	h.check(ctx)
	if got := status(); got != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("PostgreSQL back: %s, want SERVING", got)
	}
}
