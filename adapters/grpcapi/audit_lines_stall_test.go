package grpcapi

import (
	"context"
	"errors"
	"io"
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
)

// TestStatementLinesLetGoOfAStalledClient: a client that opens
// ReadStatementLines and reads nothing holds ledgerd's PostgreSQL snapshot
// no longer than the stall bound: the read ends, its transaction with it,
// and the client, when it reads at last, gets what was read ahead and then
// Aborted.
func TestStatementLinesLetGoOfAStalledClient(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const ledger, accounts, events = "stalled", 20, 6000
	pool := seedStalledLedger(ctx, t, ledger, accounts, events)
	const stall = 500 * time.Millisecond
	client, _ := startStallAudit(t, pool, stall, StreamStallMax)
	stream, err := client.ReadStatementLines(ctx, &ledgerv1.ReadStatementLinesRequest{Ledger: ledger, ToPosition: events})
	testenv.NoError(t, err)

	reading := func() (int, error) {
		var n int
		err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
			AND pid <> pg_backend_pid() AND state <> 'idle' AND query LIKE '%CROSS JOIN LATERAL%'`).Scan(&n)
		return n, err
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if n, err := reading(); err != nil || n == 0 {
			return errors.Join(err, errors.New("the lines are not being read"))
		}
		return nil
	})
	// Not read for the stall bound: the read and its snapshot end.
	testenv.Eventually(t, 20*time.Second, func() error {
		if n, err := reading(); err != nil || n > 0 {
			return errors.Join(err, errors.New("a stalled client's read still holds its snapshot"))
		}
		return nil
	})
	lines := 0
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			t.Fatalf("%d lines and the end of the stream, want Aborted before the end", lines)
		}
		if err != nil {
			if status.Code(err) != codes.Aborted || lines == 0 || lines >= 2*(events-accounts) {
				t.Fatalf("after %d lines: %v, want Aborted after some lines, not all", lines, err)
			}
			break
		}
		lines += len(msg.GetLines())
	}
}

// seedStalledLedger makes a database holding ledger's log of events events
// (about 1 KiB each, not chained: nothing here checks hashes) and its
// statement lines over accounts accounts, as the projections would, and
// returns a pool on it.
func seedStalledLedger(ctx context.Context, t *testing.T, ledger string, accounts, events int) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(ctx, testenv.MigratedPostgresURL(t))
	testenv.NoError(t, err)
	t.Cleanup(pool.Close)
	testenv.NoError(t, eventstore.Migrate(ctx, pool))
	testenv.NoError(t, projections.Migrate(ctx, pool))
	for _, sql := range []string{
		`INSERT INTO ledger_heads (ledger, position, hash) VALUES ($1, $3, decode(repeat('00', 32), 'hex'))`,
		`INSERT INTO events (ledger, position, type, schema_version, recorded_at, command_id, payload, prev_hash, hash)
			SELECT $1, p, 'TransferCommitted', 1, now(), 'c-' || p, json_build_object('pad', repeat('x', 1000)),
				decode(repeat('00', 32), 'hex'), decode(repeat('00', 32), 'hex')
			FROM generate_series(1, $3) p`,
		`INSERT INTO projection_checkpoints (ledger, projection, version, position) VALUES ($1, 'movements', 1, $3)`,
		`INSERT INTO movement_ledgers (ledger) VALUES ($1)`,
		`INSERT INTO movement_heads (ledger, ledger_no, account, asset, scale, normal_balance, opened_position)
			SELECT $1, ledger_no, 'acc-' || a, 'USD', 2, 'credit', a FROM movement_ledgers, generate_series(1, $2) a
			WHERE ledger = $1`,
		`INSERT INTO movements (ledger_no, account_no, position, seq, posting_index, side, pending, kind, transfer_id,
				counter_accounts, amount, debits_posted, credits_posted, debits_pending, credits_pending, effective_at,
				recorded_at)
			SELECT ledger_no, 1 + (p + side) % $2, p, 0, 0, CASE side WHEN 0 THEN 'debit' ELSE 'credit' END, false,
				'TransferCommitted', 't-' || p, ARRAY['acc-x'], 1, p, p, 0, 0, now(), now()
			FROM movement_ledgers, generate_series($2 + 1, $3) p, generate_series(0, 1) side WHERE ledger = $1`,
	} {
		// Every statement names the three parameters' types: not all use them.
		_, err := pool.Exec(ctx, "WITH p AS (SELECT $1::text, $2::int, $3::int) "+sql, ledger, accounts, events)
		testenv.NoError(t, err)
	}
	return pool
}

// startStallAudit serves the AuditService over pool with the stall bounds
// given, and returns a client with small flow-control windows (the server
// can write little before the client reads) and the channel that gets each
// call's method and error as its handler returns.
func startStallAudit(t *testing.T, pool *pgxpool.Pool, linesStall, streamStall time.Duration) (ledgerv1.AuditServiceClient, <-chan handlerEnd) {
	t.Helper()
	ended := make(chan handlerEnd, 16)
	observe := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		err := handler(srv, ss)
		ended <- handlerEnd{info.FullMethod, err}
		return err
	}
	gs := grpc.NewServer(append(DecodeOptions(), grpc.ChainStreamInterceptor(observe))...)
	ledgerv1.RegisterAuditServiceServer(gs, &AuditServer{store: eventstore.New(pool), reads: queries.New(pool, nil),
		logger: slog.Default(), wires: &bufferPool{}, linesStallMax: linesStall, streamStallMax: streamStall})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	testenv.NoError(t, err)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	testenv.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return ledgerv1.NewAuditServiceClient(conn), ended
}

// handlerEnd is a stream handler's return.
type handlerEnd struct {
	method string
	err    error
}
