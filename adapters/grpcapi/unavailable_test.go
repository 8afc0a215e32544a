package grpcapi

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/queries"
)

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// TestQueriesUnavailableWithoutPostgres: a query whose PostgreSQL cannot be
// reached answers Unavailable (retry), like a command, not Internal. Before,
// every such query answered Internal.
func TestQueriesUnavailableWithoutPostgres(t *testing.T) {
	pool, err := pgxpool.New(context.Background(), "postgres://postgres@"+closedPort(t)+"/ledger?connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s := NewQueryServer(queries.New(pool, nil), nil)
	for _, tc := range []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"GetBalances", func(ctx context.Context) error {
			_, err := s.GetBalances(ctx, &ledgerv1.GetBalancesRequest{Ledger: "l", Accounts: []string{"a"}})
			return err
		}},
		{"GetBalances as of a position", func(ctx context.Context) error {
			_, err := s.GetBalances(ctx, &ledgerv1.GetBalancesRequest{Ledger: "l", Accounts: []string{"a"}, AsOfPosition: 3})
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := tc.call(ctx)
			if got := status.Code(err); got != codes.Unavailable {
				t.Fatalf("%s without PostgreSQL: %v (%s), want Unavailable", tc.name, err, got)
			}
		})
	}
}

// TestDatabaseUnreachable classifies the errors of a lost or refused
// PostgreSQL session as unreachable, and request errors, the caller's own
// deadline and query errors as not.
func TestDatabaseUnreachable(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"admin shutdown 57P01", fmt.Errorf("read: %w", &pgconn.PgError{Code: "57P01"}), true},
		{"crash shutdown 57P02", &pgconn.PgError{Code: "57P02"}, true},
		{"cannot connect now 57P03", &pgconn.PgError{Code: "57P03"}, true},
		{"connection failure 08006", &pgconn.PgError{Code: "08006"}, true},
		{"network error", fmt.Errorf("query: %w", &net.OpError{Op: "read", Err: fmt.Errorf("connection reset")}), true},
		{"closed connection", fmt.Errorf("query: %w", net.ErrClosed), true},
		{"query canceled 57014", &pgconn.PgError{Code: "57014"}, false},
		{"unique violation 23505", &pgconn.PgError{Code: "23505"}, false},
		{"caller's deadline", fmt.Errorf("query: %w", context.DeadlineExceeded), false},
		{"a request error", queries.ErrAccountNotFound, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := databaseUnreachable(tc.err); got != tc.want {
				t.Errorf("databaseUnreachable(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}
