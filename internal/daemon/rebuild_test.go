package daemon_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/internal/daemon"
	"github.com/ledgerd/ledger/internal/testenv"
	"github.com/ledgerd/ledger/projections"
)

// rebuildTransfersPerCall is how many transfers each background call sends.
const rebuildTransfersPerCall = 5

// TestRebuildWhileServing rebuilds every projection through AdminService
// while transfers are written and GetBalances and ListStatement are called in
// a loop: not one query fails, and afterwards the read models hold every
// transfer exactly once.
func TestRebuildWhileServing(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	var pre uint64
	for i := range 20 {
		pre = h.transferOK(t, ledger, transfer(fmt.Sprintf("pre-%d", i), "alice", "bob", "1.00", "USD"))
	}
	// The queries below give no min_position: the read models must hold bob
	// before they start, or a slow projector answers NotFound.
	_, err := h.query.ListStatement(ctx(t), &ledgerv1.ListStatementRequest{Ledger: ledger, Account: "bob", Limit: 1, MinPosition: pre})
	testenv.NoError(t, err)
	_, err = h.query.GetBalances(ctx(t), &ledgerv1.GetBalancesRequest{Ledger: ledger, Accounts: []string{"bob"}, MinPosition: pre})
	testenv.NoError(t, err)
	conn, err := grpc.NewClient(h.m.GRPCAddr(), h.auth(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	testenv.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	admin := ledgerv1.NewAdminServiceClient(conn)

	// A ledger that does not exist is not found: not rebuilt empty and
	// swapped in at position 0.
	none, err := admin.RebuildProjection(ctx(t), &ledgerv1.RebuildProjectionRequest{Ledger: ledger + "-none",
		Projection: "movements"})
	testenv.NoError(t, err)
	if p, err := none.Recv(); status.Code(err) != codes.NotFound {
		t.Fatalf("rebuild of an unknown ledger: %v, %v; want NotFound", p, err)
	}

	stop := make(chan struct{})
	var written, queries, failures atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			var ts []*ledgerv1.Transfer
			for i := range rebuildTransfersPerCall {
				ts = append(ts, transfer(fmt.Sprintf("bg-%d-%d", n, i), "alice", "bob", "1.00", "USD"))
			}
			resp, err := h.cmd.CreateTransfers(context.Background(), &ledgerv1.CreateTransfersRequest{Ledger: ledger, Transfers: ts})
			if err != nil {
				t.Errorf("write during the rebuild: %v", err)
				return
			}
			for _, r := range resp.GetResults() {
				if r.GetCode() != ledgerv1.ResultCode_RESULT_CODE_CREATED {
					t.Errorf("write during the rebuild: %s %s", r.GetCode(), r.GetDetail())
				}
			}
			written.Add(rebuildTransfersPerCall)
		}
	})
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			queries.Add(2)
			if _, err := h.query.GetBalances(context.Background(), &ledgerv1.GetBalancesRequest{Ledger: ledger,
				Accounts: []string{"alice", "bob"}}); err != nil {
				failures.Add(1)
				t.Errorf("GetBalances during the rebuild: %v", err)
			}
			if _, err := h.query.ListStatement(context.Background(), &ledgerv1.ListStatementRequest{Ledger: ledger,
				Account: "bob", Limit: 50}); err != nil {
				failures.Add(1)
				t.Errorf("ListStatement during the rebuild: %v", err)
			}
		}
	})

	for _, name := range []string{"balances", "movements", "transfers", "reconciliation"} {
		rebuild(t, admin, ledger, name)
	}
	close(stop)
	wg.Wait()
	if failures.Load() != 0 || queries.Load() == 0 {
		t.Fatalf("%d of %d queries failed during the rebuilds", failures.Load(), queries.Load())
	}

	// Every transfer exactly once, in each rebuilt model.
	last := h.transferOK(t, ledger, transfer("last", "alice", "bob", "1.00", "USD"))
	n := 20 + written.Load() + 1
	bob := h.balances(t, ledger, last, "bob")["bob"]
	if got, want := bob.GetCreditsPosted(), fmt.Sprintf("%d.00", n); got != want {
		t.Fatalf("bob's credits %s after the rebuilds, want %s", got, want)
	}
	lines := 0
	for cursor := ""; ; {
		resp, err := h.query.ListStatement(ctx(t), &ledgerv1.ListStatementRequest{Ledger: ledger, Account: "bob",
			Limit: 1000, Cursor: cursor, MinPosition: last})
		testenv.NoError(t, err)
		lines += len(resp.GetLines())
		if cursor = resp.GetNextCursor(); cursor == "" {
			break
		}
	}
	if int64(lines) != n {
		t.Fatalf("bob's statement has %d lines after the rebuilds, want %d", lines, n)
	}
	tr, err := h.query.GetTransfers(ctx(t), &ledgerv1.GetTransfersRequest{Ledger: ledger, Ids: []string{"pre-0", "last"},
		MinPosition: last})
	testenv.NoError(t, err)
	if len(tr.GetTransfers()) != 2 {
		t.Fatalf("GetTransfers found %d of 2 after the rebuilds", len(tr.GetTransfers()))
	}

	// The REST route streams the same progress.
	body := h.rest(t, "POST", "/v1/ledgers/"+ledger+"/projections/transfers:rebuild", "{}", 200, nil)
	if !strings.Contains(string(body), `"done":true`) {
		t.Fatalf("REST rebuild answered %s, want a last line with done", body)
	}
	// Each rebuild swept the rows it replaced before it returned.
	if left := retiredRows(t, h.pool(t)); left != [2]int64{} {
		t.Fatalf("%d retired numbers and %d of their rows left after the rebuilds, want none", left[0], left[1])
	}
}

// retiredRows counts the retired numbers of the statement lines and the
// transfers (projections.RetiredPrefix), and their rows.
func retiredRows(t *testing.T, pool *pgxpool.Pool) (n [2]int64) {
	t.Helper()
	testenv.NoError(t, pool.QueryRow(ctx(t), `SELECT
		(SELECT count(*) FROM movement_ledgers WHERE starts_with(ledger, $1)) +
			(SELECT count(*) FROM transfer_ledgers WHERE starts_with(ledger, $1)),
		(SELECT count(*) FROM movements m JOIN movement_ledgers l USING (ledger_no) WHERE starts_with(l.ledger, $1)) +
			(SELECT count(*) FROM transfers r JOIN transfer_ledgers l USING (ledger_no) WHERE starts_with(l.ledger, $1))`,
		projections.RetiredPrefix).Scan(&n[0], &n[1]))
	return n
}

// TestStartSweepsRetiredRows: rows a swap retired and whose sweep did not
// run (the process stopped after the swap) are deleted when a ledgerd with
// the projector role starts; the live models' rows stay.
func TestStartSweepsRetiredRows(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	var last uint64
	for i := range 5 {
		last = h.transferOK(t, ledger, transfer(fmt.Sprintf("t%d", i), "alice", "bob", "1.00", "USD"))
	}
	h.balances(t, ledger, last, "bob") // the statement lines are there
	_, err := h.query.GetTransfers(ctx(t), &ledgerv1.GetTransfersRequest{Ledger: ledger, Ids: []string{"t4"}, MinPosition: last})
	testenv.NoError(t, err)
	h.m.Close()

	// What a swap leaves before its sweep: the live rows copied under a
	// number of their own, retired.
	pool := h.pool(t)
	live := func() (lines, transfers int64) {
		testenv.NoError(t, pool.QueryRow(ctx(t), `SELECT
			(SELECT count(*) FROM movements WHERE ledger_no = (SELECT ledger_no FROM movement_ledgers WHERE ledger = $1)),
			(SELECT count(*) FROM transfers WHERE ledger_no = (SELECT ledger_no FROM transfer_ledgers WHERE ledger = $1))`,
			ledger).Scan(&lines, &transfers))
		return lines, transfers
	}
	lines, transfers := live()
	for _, t2 := range projections.NumberedTables() {
		var cols string // but the number, and the generated ones
		testenv.NoError(t, pool.QueryRow(ctx(t), `SELECT string_agg(quote_ident(column_name), ', ' ORDER BY ordinal_position)
			FROM information_schema.columns WHERE table_name = $1 AND is_generated = 'NEVER' AND column_name <> 'ledger_no'`,
			t2.Rows).Scan(&cols))
		_, err := pool.Exec(ctx(t), `WITH n AS (INSERT INTO `+t2.Numbers+` (ledger) VALUES ('retiring') RETURNING ledger_no)
			INSERT INTO `+t2.Rows+` (ledger_no, `+cols+`) SELECT n.ledger_no, `+cols+`
			FROM `+t2.Rows+`, n WHERE `+t2.Rows+`.ledger_no = (SELECT ledger_no FROM `+t2.Numbers+` WHERE ledger = $1)`, ledger)
		testenv.NoError(t, err)
		_, err = pool.Exec(ctx(t), `UPDATE `+t2.Numbers+` SET ledger = $1 || ledger_no WHERE ledger = 'retiring'`,
			projections.RetiredPrefix)
		testenv.NoError(t, err)
	}
	if left := retiredRows(t, pool); left != [2]int64{2, lines + transfers} || lines < 5 || transfers != 5 {
		t.Fatalf("retired %v (numbers, rows) of %d lines and %d transfers, want 2 numbers and all of them", left, lines, transfers)
	}

	startOn(t, h.pgURL, testenv.NATSURL(t))
	testenv.Eventually(t, 30*time.Second, func() error {
		if left := retiredRows(t, pool); left != [2]int64{} {
			return fmt.Errorf("%v retired numbers and rows left after the start", left)
		}
		return nil
	})
	if l, tr := live(); l != lines || tr != transfers {
		t.Fatalf("the live model holds %d lines and %d transfers after the sweep, want %d and %d", l, tr, lines, transfers)
	}
}

// rebuild rebuilds a projection through AdminService and requires it to end
// swapped in at a position.
func rebuild(t *testing.T, admin ledgerv1.AdminServiceClient, ledger, name string) {
	t.Helper()
	stream, err := admin.RebuildProjection(ctx(t), &ledgerv1.RebuildProjectionRequest{Ledger: ledger, Projection: name})
	testenv.NoError(t, err)
	var last *ledgerv1.RebuildProjectionResponse
	for {
		p, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		testenv.NoError(t, err)
		last = p
	}
	if !last.GetDone() || last.GetSwappedAtPosition() == 0 {
		t.Fatalf("rebuild of %s ended with %v, want done at a position", name, last)
	}
}

// A rebuild repairs the read model for what comes after it too: the live
// statement lines' projector, which continues each account's running totals
// from memory, starts again from the rebuilt rows. Without that, totals it
// had loaded from a damaged row before the rebuild went on into new lines.
func TestRebuildRestartsTheLiveProjections(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	first := h.transferOK(t, ledger, transfer("t1", "alice", "bob", "1.00", "USD"))
	statementAt := func(h *harness, pos uint64) *ledgerv1.ListStatementResponse {
		st, err := h.query.ListStatement(ctx(t), &ledgerv1.ListStatementRequest{Ledger: ledger, Account: "bob",
			Limit: 10, MinPosition: pos})
		testenv.NoError(t, err)
		return st
	}
	statementAt(h, first)
	h.m.Close()

	// Damage bob's last line, then start again: the projector loads bob's
	// totals from it at the next transfer.
	tag, err := h.pool(t).Exec(ctx(t), `UPDATE movements m SET credits_posted = credits_posted + 1000
		FROM movement_heads h WHERE h.ledger = $1 AND h.account = 'bob'
			AND m.ledger_no = h.ledger_no AND m.account_no = h.opened_position AND m.position = $2`, ledger, int64(first))
	testenv.NoError(t, err)
	if tag.RowsAffected() != 1 {
		t.Fatalf("damaged %d lines, want 1", tag.RowsAffected())
	}
	h2 := &harness{pgURL: h.pgURL, key: h.key, m: &daemon.Main{Config: h.m.Config, Logger: h.m.Logger}}
	conn := h2.run(t)
	statementAt(h2, h2.transferOK(t, ledger, transfer("t2", "alice", "bob", "1.00", "USD")))

	rebuild(t, ledgerv1.NewAdminServiceClient(conn), ledger, "movements")
	var balances []string
	for _, l := range statementAt(h2, h2.transferOK(t, ledger, transfer("t3", "alice", "bob", "1.00", "USD"))).GetLines() {
		balances = append(balances, l.GetRunningBalance())
	}
	if want := []string{"1.00", "2.00", "3.00"}; !slices.Equal(balances, want) {
		t.Fatalf("bob's running balances after the rebuild: %v, want %v", balances, want)
	}
}
