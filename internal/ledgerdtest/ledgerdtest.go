// Package ledgerdtest runs a ledgerd in the test's process, on the test
// harness's PostgreSQL and NATS, for the tests of what sits around ledgerd
// (the Go client's consumer, the examples) and drives it through gRPC.
package ledgerdtest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ledgerd/ledger/adapters/apikeys"
	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/internal/daemon"
	"github.com/ledgerd/ledger/internal/testenv"
)

// callTimeout bounds one call: generous, the tests share two cores.
const callTimeout = 90 * time.Second

// Ledgerd is a running ledgerd and clients of it, with an admin key.
type Ledgerd struct {
	Main        *daemon.Main
	PostgresURL string
	NATSURL     string
	Key         string
	Conn        *grpc.ClientConn
	Command     ledgerv1.CommandServiceClient
	Audit       ledgerv1.AuditServiceClient
}

// Start runs a ledgerd on a fresh database and the package's NATS (the
// caller's TestMain runs testenv.Main), stopped at the end of the test.
func Start(t testing.TB) *Ledgerd {
	t.Helper()
	key, err := apikeys.Generate(nil)
	testenv.NoError(t, err)
	l := &Ledgerd{PostgresURL: testenv.MigratedPostgresURL(t), NATSURL: testenv.NATSURL(t), Key: key}
	l.Main = &daemon.Main{
		Config: daemon.Config{PostgresURL: l.PostgresURL, NATSURL: l.NATSURL, GRPCAddr: "127.0.0.1:0",
			HTTPAddr: "127.0.0.1:0", DataDir: t.TempDir(), PostgresConnsMax: 8, AdminKey: key},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	testenv.NoError(t, l.Main.Run(context.Background()))
	t.Cleanup(l.Main.Close)
	l.Conn, err = grpc.NewClient(l.Main.GRPCAddr(), grpc.WithPerRPCCredentials(apikeys.Bearer(key)),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	testenv.NoError(t, err)
	t.Cleanup(func() { l.Conn.Close() })
	l.Command, l.Audit = ledgerv1.NewCommandServiceClient(l.Conn), ledgerv1.NewAuditServiceClient(l.Conn)
	return l
}

// Ctx bounds one call of a test.
func Ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), callTimeout)
	t.Cleanup(cancel)
	return c
}

// UserAccount is user i's USD wallet: users:<i>:wallet.
func UserAccount(i int) string { return fmt.Sprintf("users:%d:wallet", i) }

// Setup defines USD (scale 2) in ledger and opens the wallets of users
// 1..users and the account "bank"; it returns the position of the last event.
func (l *Ledgerd) Setup(t testing.TB, ledger string, users int) uint64 {
	t.Helper()
	d, err := l.Command.DefineAsset(Ctx(t), &ledgerv1.DefineAssetRequest{Ledger: ledger, Code: "USD", Scale: 2})
	testenv.NoError(t, err)
	mustCreated(t, d.GetResult())
	credit := ledgerv1.NormalBalance_NORMAL_BALANCE_CREDIT
	accounts := []*ledgerv1.Account{{Id: "bank", Asset: "USD", NormalBalance: credit}}
	for i := 1; i <= users; i++ {
		accounts = append(accounts, &ledgerv1.Account{Id: UserAccount(i), Asset: "USD", NormalBalance: credit})
	}
	o, err := l.Command.OpenAccounts(Ctx(t), &ledgerv1.OpenAccountsRequest{Ledger: ledger, Accounts: accounts})
	testenv.NoError(t, err)
	mustCreated(t, o.GetResults()...)
	return o.GetResults()[len(accounts)-1].GetPosition()
}

// Transfer is a one-posting USD transfer.
func Transfer(id, from, to, amount string) *ledgerv1.Transfer {
	return &ledgerv1.Transfer{Id: id, Postings: []*ledgerv1.Posting{{DebitAccount: from, CreditAccount: to, Amount: amount, Asset: "USD"}}}
}

// Transfers creates ts in one request, each of which must be created, and
// returns the position of the last.
func (l *Ledgerd) Transfers(t testing.TB, ledger string, ts ...*ledgerv1.Transfer) uint64 {
	t.Helper()
	resp, err := l.Command.CreateTransfers(Ctx(t), &ledgerv1.CreateTransfersRequest{Ledger: ledger, Transfers: ts})
	testenv.NoError(t, err)
	mustCreated(t, resp.GetResults()...)
	var last uint64
	for _, r := range resp.GetResults() {
		last = max(last, r.GetPosition())
	}
	return last
}

func mustCreated(t testing.TB, results ...*ledgerv1.ItemResult) {
	t.Helper()
	for _, r := range results {
		if r.GetCode() != ledgerv1.ResultCode_RESULT_CODE_CREATED {
			t.Fatalf("item %d %s: %s %s", r.GetIndex(), r.GetId(), r.GetCode(), r.GetDetail())
		}
	}
}
