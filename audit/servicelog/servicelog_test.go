package servicelog_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ledgerd/ledger/adapters/apikeys"
	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/audit"
	"github.com/ledgerd/ledger/audit/logtest"
	"github.com/ledgerd/ledger/audit/servicelog"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/daemon"
	"github.com/ledgerd/ledger/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// A ledgerd serving a log put in its store: the reader ledgerctl uses.
func TestLogContract(t *testing.T) {
	t.Parallel()
	logtest.Run(t, "served", func(t *testing.T, chain []eventstore.Record, omit uint64) audit.Log {
		pgURL := testenv.PostgresURL(t)
		key, err := apikeys.Generate(nil)
		testenv.NoError(t, err)
		m := &daemon.Main{
			Config: daemon.Config{PostgresURL: pgURL, NATSURL: testenv.NATSURL(t), GRPCAddr: "127.0.0.1:0",
				HTTPAddr: "127.0.0.1:0", DataDir: t.TempDir(), PostgresConnsMax: 4, AdminKey: key},
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		}
		testenv.NoError(t, m.Run(context.Background()))
		t.Cleanup(m.Close)
		pool, err := pgxpool.New(context.Background(), pgURL)
		testenv.NoError(t, err)
		t.Cleanup(pool.Close)
		logtest.Store(t, pool, chain, omit)
		conn, err := grpc.NewClient(m.GRPCAddr(), grpc.WithPerRPCCredentials(apikeys.Bearer(key)),
			grpc.WithTransportCredentials(insecure.NewCredentials()))
		testenv.NoError(t, err)
		t.Cleanup(func() { conn.Close() })
		l := &servicelog.Log{Name: chain[0].Ledger, Audit: ledgerv1.NewAuditServiceClient(conn), Query: ledgerv1.NewQueryServiceClient(conn)}
		// The head is the projections' status: it shows once a projector of
		// the ledger has started on what the store holds.
		testenv.Eventually(t, time.Minute, func() error {
			head, err := l.Head(context.Background())
			if err != nil || head == 0 {
				return fmt.Errorf("head %d: %v", head, err)
			}
			return nil
		})
		return l
	}, logtest.Features{})
}

func TestRecordOfLogEvent(t *testing.T) {
	t.Parallel()
	for _, e := range []*ledgerv1.LogEvent{
		{Position: 3, PrevHash: "00", Hash: "00"},
		{Position: 3, PrevHash: string(bytes.Repeat([]byte("zz"), 32)), Hash: string(bytes.Repeat([]byte("00"), 32))},
	} {
		_, err := servicelog.RecordOf(e)
		var m *audit.MalformedError
		if !errors.As(err, &m) || m.Position != 3 {
			t.Errorf("RecordOf(%v): %v, want a MalformedError at 3", e, err)
		}
	}
}
