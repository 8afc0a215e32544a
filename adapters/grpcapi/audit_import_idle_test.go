package grpcapi

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/testenv"
	"github.com/ledgerd/ledger/projections"
	"github.com/ledgerd/ledger/queries"
	"github.com/ledgerd/ledger/workflows"
)

// TestImportEventsIdleEnds: an ImportEvents whose client sends nothing for
// the idle bound while the log is being received loses the stream
// (Aborted): its handler returns while the client still sends nothing. A
// client that pauses for less is not cut off (its empty log is refused as
// such).
func TestImportEventsIdleEnds(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := pgxpool.New(ctx, testenv.MigratedPostgresURL(t))
	testenv.NoError(t, err)
	t.Cleanup(pool.Close)
	testenv.NoError(t, eventstore.Migrate(ctx, pool))
	testenv.NoError(t, projections.Migrate(ctx, pool))
	const idle = 300 * time.Millisecond
	ended := make(chan error, 4)
	observe := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		err := handler(srv, ss)
		ended <- err
		return err
	}
	gs := grpc.NewServer(append(DecodeOptions(), grpc.ChainStreamInterceptor(observe))...)
	store := eventstore.New(pool)
	ledgerv1.RegisterAuditServiceServer(gs, &AuditServer{store: store, reads: queries.New(pool, nil), logger: slog.Default(),
		wires: &bufferPool{}, logImport: workflows.NewLogImport(store, nil, slog.Default()), importIdleMax: idle})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	testenv.NoError(t, err)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	testenv.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	client := ledgerv1.NewAuditServiceClient(conn)

	// Pauses under the bound: the empty log is refused, not the client.
	s, err := client.ImportEvents(ctx)
	testenv.NoError(t, err)
	testenv.NoError(t, s.Send(&ledgerv1.ImportEventsRequest{Ledger: "idle-a"}))
	time.Sleep(idle / 2)
	testenv.NoError(t, s.CloseSend())
	if _, err := s.CloseAndRecv(); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("an empty log sent with a pause under the bound: %v, want InvalidArgument", err)
	}
	<-ended

	// Silent after its first message: the handler returns, Aborted.
	s, err = client.ImportEvents(ctx)
	testenv.NoError(t, err)
	testenv.NoError(t, s.Send(&ledgerv1.ImportEventsRequest{Ledger: "idle-b"}))
	select {
	case err := <-ended:
		if status.Code(err) != codes.Aborted {
			t.Fatalf("a client silent past the bound: handler %v, want Aborted", err)
		}
	case <-time.After(20 * idle):
		t.Fatalf("a client silent for %s still holds its import", 20*idle)
	}
	if _, err := s.CloseAndRecv(); status.Code(err) != codes.Aborted {
		t.Fatalf("the client reads %v, want Aborted", err)
	}
}
