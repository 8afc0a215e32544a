package storelog_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ledgerd/ledger/audit"
	"github.com/ledgerd/ledger/audit/logtest"
	"github.com/ledgerd/ledger/audit/storelog"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestLogContract(t *testing.T) {
	t.Parallel()
	logtest.Run(t, "stored", func(t *testing.T, chain []eventstore.Record, omit uint64) audit.Log {
		pool, err := pgxpool.New(context.Background(), testenv.PostgresURL(t))
		testenv.NoError(t, err)
		t.Cleanup(pool.Close)
		logtest.Store(t, pool, chain, omit)
		return &storelog.Log{Store: eventstore.New(pool), Name: chain[0].Ledger}
	}, logtest.Features{})
}
