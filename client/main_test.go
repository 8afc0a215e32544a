package client_test

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ledgerd/ledger/adapters/apikeys"
	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/client"
	"github.com/ledgerd/ledger/internal/daemon"
	"github.com/ledgerd/ledger/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// ledgerd is a running ledgerd and the admin key it was given.
type ledgerd struct {
	m   *daemon.Main
	key string
}

// startLedgerd runs ledgerd as users do, on its own database and the
// package's NATS server, listening for gRPC on grpcAddr.
func startLedgerd(t testing.TB, grpcAddr string) *ledgerd {
	t.Helper()
	key, err := apikeys.Generate(nil)
	testenv.NoError(t, err)
	return startLedgerdOn(t, testenv.MigratedPostgresURL(t), grpcAddr, key)
}

// startLedgerdOn is startLedgerd on the database at pgURL with key, its
// configuration changed by set (when given) before it runs.
func startLedgerdOn(t testing.TB, pgURL, grpcAddr, key string, set ...func(*daemon.Config)) *ledgerd {
	t.Helper()
	m := &daemon.Main{
		Config: daemon.Config{PostgresURL: pgURL, NATSURL: testenv.NATSURL(t), GRPCAddr: grpcAddr,
			HTTPAddr: "127.0.0.1:0", DataDir: t.TempDir(), PostgresConnsMax: 8, AdminKey: key},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for _, f := range set {
		f(&m.Config)
	}
	testenv.NoError(t, m.Run(context.Background()))
	t.Cleanup(m.Close)
	return &ledgerd{m: m, key: key}
}

// dial returns a client of l with the admin key, closed when t ends.
func (l *ledgerd) dial(t testing.TB, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.Dial(context.Background(), l.m.GRPCAddr(),
		append([]client.Option{client.WithInsecure(), client.WithAPIKey(l.key)}, opts...)...)
	testenv.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// exampleLedgerd is the ledgerd every example shares: examples have no
// *testing.T to start their own.
var exampleLedgerd = sync.OnceValue(func() *ledgerd { return startLedgerd(testenv.Examples(), "127.0.0.1:0") })

// ctx bounds one call of a test: generous, for two shared cores.
func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	return c
}

// setup defines USD (scale 2) in ledger and opens credit-normal accounts.
func setup(t testing.TB, c *client.Client, ledger string, accounts ...string) {
	t.Helper()
	d, err := c.DefineAsset(ctx(t), &ledgerv1.DefineAssetRequest{Ledger: ledger, Code: "USD", Scale: 2})
	testenv.NoError(t, err)
	mustCode(t, ledgerv1.ResultCode_RESULT_CODE_CREATED, d.GetResult())
	req := &ledgerv1.OpenAccountsRequest{Ledger: ledger}
	for _, id := range accounts {
		req.Accounts = append(req.Accounts, &ledgerv1.Account{Id: id, Asset: "USD", NormalBalance: ledgerv1.NormalBalance_NORMAL_BALANCE_CREDIT})
	}
	o, err := c.OpenAccounts(ctx(t), req)
	testenv.NoError(t, err)
	mustCode(t, ledgerv1.ResultCode_RESULT_CODE_CREATED, o.GetResults()...)
}

func mustCode(t testing.TB, want ledgerv1.ResultCode, results ...*ledgerv1.ItemResult) {
	t.Helper()
	for _, r := range results {
		if r.GetCode() != want {
			t.Fatalf("item %d %s: %s %s, want %s", r.GetIndex(), r.GetId(), r.GetCode(), r.GetDetail(), want)
		}
	}
}

func transfer(id, from, to, amount string) *ledgerv1.Transfer {
	return &ledgerv1.Transfer{Id: id, Postings: []*ledgerv1.Posting{{DebitAccount: from, CreditAccount: to, Amount: amount, Asset: "USD"}}}
}
