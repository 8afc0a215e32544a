package daemon_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/internal/daemon"
	"github.com/ledgerd/ledger/internal/testenv"
	"github.com/ledgerd/ledger/queries"
)

func TestMain(m *testing.M) { testenv.Main(m) }

type harness struct {
	m     *daemon.Main
	pgURL string
	// key is the admin key the ledgerd was given and its clients send.
	key   string
	cmd   ledgerv1.CommandServiceClient
	query ledgerv1.QueryServiceClient
}

// start runs ledgerd as users do, on the test's database and NATS server.
func start(t testing.TB) *harness { return startWith(t, nil) }

// startWith is start with what set changes of the Main before it runs.
func startWith(t testing.TB, set func(*daemon.Main)) *harness {
	t.Helper()
	h := &harness{pgURL: testenv.MigratedPostgresURL(t), key: newKey(t)}
	h.m = &daemon.Main{
		Config: daemon.Config{PostgresURL: h.pgURL, NATSURL: testenv.NATSURL(t), GRPCAddr: "127.0.0.1:0",
			HTTPAddr: "127.0.0.1:0", DataDir: t.TempDir(), PostgresConnsMax: 8, AdminKey: h.key},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if set != nil {
		set(h.m)
	}
	h.run(t)
	return h
}

// run runs h.m until the end of the test and connects h's clients to it; it
// returns their connection.
func (h *harness) run(t testing.TB) *grpc.ClientConn {
	t.Helper()
	testenv.NoError(t, h.m.Run(context.Background()))
	t.Cleanup(h.m.Close)
	conn, err := grpc.NewClient(h.m.GRPCAddr(), h.auth(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	testenv.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	h.cmd, h.query = ledgerv1.NewCommandServiceClient(conn), ledgerv1.NewQueryServiceClient(conn)
	return conn
}

// ctx bounds one call of a test: generous, since make test runs these under
// the race detector beside the other packages on two cores.
func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	return c
}

func (h *harness) setup(t *testing.T, ledger string) {
	t.Helper()
	d, err := h.cmd.DefineAsset(ctx(t), &ledgerv1.DefineAssetRequest{Ledger: ledger, Code: "USD", Scale: 2})
	testenv.NoError(t, err)
	e, err := h.cmd.DefineAsset(ctx(t), &ledgerv1.DefineAssetRequest{Ledger: ledger, Code: "EUR", Scale: 2})
	testenv.NoError(t, err)
	mustCreated(t, d.GetResult(), e.GetResult())
	credit := ledgerv1.NormalBalance_NORMAL_BALANCE_CREDIT
	zero := "0"
	o, err := h.cmd.OpenAccounts(ctx(t), &ledgerv1.OpenAccountsRequest{Ledger: ledger, Accounts: []*ledgerv1.Account{
		{Id: "alice", Asset: "USD", NormalBalance: credit},
		{Id: "bob", Asset: "USD", NormalBalance: credit},
		{Id: "carol", Asset: "USD", NormalBalance: credit, MinBalance: &zero},
		{Id: "eve:eur", Asset: "EUR", NormalBalance: credit},
	}})
	testenv.NoError(t, err)
	mustCreated(t, o.GetResults()...)
}

func mustCreated(t testing.TB, results ...*ledgerv1.ItemResult) {
	t.Helper()
	for _, r := range results {
		if r.GetCode() != ledgerv1.ResultCode_RESULT_CODE_CREATED {
			t.Fatalf("item %d %s: %s %s", r.GetIndex(), r.GetId(), r.GetCode(), r.GetDetail())
		}
	}
}

func transfer(id, from, to, amount, asset string) *ledgerv1.Transfer {
	return &ledgerv1.Transfer{Id: id, Postings: []*ledgerv1.Posting{{DebitAccount: from, CreditAccount: to, Amount: amount, Asset: asset}}}
}

func (h *harness) head(t *testing.T, ledger string) uint64 {
	t.Helper()
	conn, err := pgx.Connect(ctx(t), h.pgURL)
	testenv.NoError(t, err)
	defer conn.Close(context.Background())
	var pos int64
	testenv.NoError(t, conn.QueryRow(ctx(t), `SELECT COALESCE(max(position), 0) FROM events WHERE ledger = $1`, ledger).Scan(&pos))
	return uint64(pos)
}

func TestTransferThenReadYourWrites(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	resp, err := h.cmd.CreateTransfers(ctx(t), &ledgerv1.CreateTransfersRequest{Ledger: ledger,
		Transfers: []*ledgerv1.Transfer{transfer("t1", "alice", "bob", "10.00", "USD")}})
	testenv.NoError(t, err)
	mustCreated(t, resp.GetResults()...)
	pos := resp.GetResults()[0].GetPosition()

	bal, err := h.query.GetBalances(ctx(t), &ledgerv1.GetBalancesRequest{Ledger: ledger, Accounts: []string{"alice", "bob", "nobody"}, MinPosition: pos})
	testenv.NoError(t, err)
	if bal.GetPosition() < pos {
		t.Fatalf("answer reflects position %d, asked for %d", bal.GetPosition(), pos)
	}
	got := map[string]string{}
	for _, b := range bal.GetBalances() {
		got[b.GetAccount()] = b.GetBalance() + "/" + b.GetAvailable() + "/" + b.GetDebitsPosted() + "/" + b.GetCreditsPosted()
	}
	want := map[string]string{"alice": "-10.00/-10.00/10.00/0.00", "bob": "10.00/10.00/0.00/10.00"}
	if len(got) != len(want) || got["alice"] != want["alice"] || got["bob"] != want["bob"] {
		t.Errorf("balances %v, want %v", got, want)
	}

	// The same id again is not applied twice.
	again, err := h.cmd.CreateTransfers(ctx(t), &ledgerv1.CreateTransfersRequest{Ledger: ledger,
		Transfers: []*ledgerv1.Transfer{transfer("t1", "alice", "bob", "10.00", "USD")}})
	testenv.NoError(t, err)
	if r := again.GetResults()[0]; r.GetCode() != ledgerv1.ResultCode_RESULT_CODE_EXISTS || r.GetPosition() != pos {
		t.Errorf("retry: %s at %d, want EXISTS at %d", r.GetCode(), r.GetPosition(), pos)
	}
	if head := h.head(t, ledger); head != pos {
		t.Errorf("log head %d after the retry, want %d", head, pos)
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	head := h.head(t, ledger)
	cases := []struct {
		name     string
		transfer *ledgerv1.Transfer
		code     ledgerv1.ResultCode
		field    string
	}{
		{"unknown account", transfer("b1", "alice", "nobody", "1.00", "USD"), ledgerv1.ResultCode_RESULT_CODE_ACCOUNT_NOT_FOUND, "postings[0].credit_account"},
		{"wrong asset", transfer("b2", "alice", "eve:eur", "1.00", "USD"), ledgerv1.ResultCode_RESULT_CODE_ASSET_MISMATCH, "postings[0].credit_account"},
		{"too many decimals", transfer("b3", "alice", "bob", "1.001", "USD"), ledgerv1.ResultCode_RESULT_CODE_INVALID_AMOUNT, "postings[0].amount"},
		{"zero amount", transfer("b4", "alice", "bob", "0.00", "USD"), ledgerv1.ResultCode_RESULT_CODE_INVALID_AMOUNT, "postings[0].amount"},
		{"negative amount", transfer("b5", "alice", "bob", "-5.00", "USD"), ledgerv1.ResultCode_RESULT_CODE_INVALID_AMOUNT, "postings[0].amount"},
		{"same account", transfer("b6", "alice", "alice", "1.00", "USD"), ledgerv1.ResultCode_RESULT_CODE_SAME_ACCOUNT, "postings[0].credit_account"},
		{"malformed id", transfer("b 7!", "alice", "bob", "1.00", "USD"), ledgerv1.ResultCode_RESULT_CODE_INVALID_FIELD, "id"},
		{"over 38 digits", transfer("b8", "alice", "bob", strings.Repeat("9", 39), "USD"), ledgerv1.ResultCode_RESULT_CODE_INVALID_AMOUNT, "postings[0].amount"},
		{"overdraft", transfer("b9", "carol", "bob", "0.01", "USD"), ledgerv1.ResultCode_RESULT_CODE_BELOW_MIN_BALANCE, "postings"},
		{"unknown asset", transfer("b10", "alice", "bob", "1.00", "GBP"), ledgerv1.ResultCode_RESULT_CODE_ASSET_NOT_FOUND, "postings[0].asset"},
	}
	req := &ledgerv1.CreateTransfersRequest{Ledger: ledger}
	for _, c := range cases {
		req.Transfers = append(req.Transfers, c.transfer)
	}
	resp, err := h.cmd.CreateTransfers(ctx(t), req)
	testenv.NoError(t, err)
	for i, c := range cases {
		r := resp.GetResults()[i]
		if r.GetCode() != c.code || r.GetField() != c.field || r.GetIndex() != uint32(i) || r.GetDetail() == "" {
			t.Errorf("%s: %s field %q (index %d, %q), want %s field %q", c.name, r.GetCode(), r.GetField(), r.GetIndex(), r.GetDetail(), c.code, c.field)
		}
	}
	if after := h.head(t, ledger); after != head {
		t.Errorf("log head moved from %d to %d on refused input", head, after)
	}

	// Request-level faults are InvalidArgument naming the field.
	tooMany := &ledgerv1.CreateTransfersRequest{Ledger: ledger, Transfers: make([]*ledgerv1.Transfer, 8193)}
	for i := range tooMany.Transfers {
		tooMany.Transfers[i] = transfer("x", "alice", "bob", "1.00", "USD")
	}
	for name, call := range map[string]func() error{
		"ledger": func() error {
			_, err := h.cmd.CreateTransfers(ctx(t), &ledgerv1.CreateTransfersRequest{Ledger: "Bad Ledger", Transfers: []*ledgerv1.Transfer{transfer("t", "a", "b", "1", "USD")}})
			return err
		},
		"transfers": func() error {
			_, err := h.cmd.CreateTransfers(ctx(t), tooMany)
			return err
		},
		"accounts": func() error {
			_, err := h.query.GetBalances(ctx(t), &ledgerv1.GetBalancesRequest{Ledger: ledger})
			return err
		},
	} {
		err := call()
		st, _ := status.FromError(err)
		if st.Code() != codes.InvalidArgument || fieldOf(st) != name {
			t.Errorf("%s: %v (field %q), want InvalidArgument naming %q", name, err, fieldOf(st), name)
		}
	}
	if after := h.head(t, ledger); after != head {
		t.Errorf("log head moved from %d to %d on refused requests", head, after)
	}
}

func fieldOf(st *status.Status) string {
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) > 0 {
			return br.GetFieldViolations()[0].GetField()
		}
	}
	return ""
}

// TestMinPositionPastTheHeadIsRefused: a min_position no command has
// reached is refused at once, naming the field, instead of waiting the
// server's 10 s in vain. The deadline only guards: past the server's wait,
// a wait would end in DeadlineExceeded, not InvalidArgument.
func TestMinPositionPastTheHeadIsRefused(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	c, cancel := context.WithTimeout(context.Background(), queries.WaitMax+5*time.Second)
	defer cancel()
	_, err := h.query.GetBalances(c, &ledgerv1.GetBalancesRequest{Ledger: ledger, Accounts: []string{"alice"}, MinPosition: 1 << 40})
	if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument || fieldOf(st) != "min_position" {
		t.Errorf("GetBalances past the head: %v, want InvalidArgument on min_position", err)
	}
	_, err = h.query.GetBalances(c, &ledgerv1.GetBalancesRequest{Ledger: "no-such-ledger", Accounts: []string{"alice"}, MinPosition: 1})
	if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument || fieldOf(st) != "ledger" {
		t.Errorf("GetBalances of an unknown ledger at min_position 1: %v, want InvalidArgument on ledger", err)
	}
}

func TestRestartKeepsStateAndHealthEndpoints(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		resp, err := http.Get("http://" + h.m.HTTPAddr() + path)
		testenv.NoError(t, err)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d", path, resp.StatusCode)
		}
	}
	r1, err := h.cmd.CreateTransfers(ctx(t), &ledgerv1.CreateTransfersRequest{Ledger: ledger,
		Transfers: []*ledgerv1.Transfer{transfer("t1", "alice", "bob", "3.00", "USD")}})
	testenv.NoError(t, err)
	mustCreated(t, r1.GetResults()...)
	h.m.Close()

	// A second ledgerd on the same data: the writer reloads from the log.
	h2 := &harness{pgURL: h.pgURL, key: h.key}
	cfg := h.m.Config
	h2.m = &daemon.Main{Config: cfg, Logger: h.m.Logger}
	testenv.NoError(t, h2.m.Run(context.Background()))
	t.Cleanup(h2.m.Close)
	conn, err := grpc.NewClient(h2.m.GRPCAddr(), h2.auth(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	testenv.NoError(t, err)
	defer conn.Close()
	cmd, query := ledgerv1.NewCommandServiceClient(conn), ledgerv1.NewQueryServiceClient(conn)
	r2, err := cmd.CreateTransfers(ctx(t), &ledgerv1.CreateTransfersRequest{Ledger: ledger,
		Transfers: []*ledgerv1.Transfer{transfer("t1", "alice", "bob", "3.00", "USD"), transfer("t2", "bob", "alice", "1.00", "USD")}})
	testenv.NoError(t, err)
	if r2.GetResults()[0].GetCode() != ledgerv1.ResultCode_RESULT_CODE_EXISTS {
		t.Errorf("t1 after restart: %s, want EXISTS", r2.GetResults()[0].GetCode())
	}
	mustCreated(t, r2.GetResults()[1])
	bal, err := query.GetBalances(ctx(t), &ledgerv1.GetBalancesRequest{Ledger: ledger, Accounts: []string{"bob"}, MinPosition: r2.GetResults()[1].GetPosition()})
	testenv.NoError(t, err)
	if len(bal.GetBalances()) != 1 || bal.GetBalances()[0].GetBalance() != "2.00" {
		t.Errorf("bob after restart: %v, want balance 2.00", bal.GetBalances())
	}
}
