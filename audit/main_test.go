package audit_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ledgerd/ledger/adapters/apikeys"
	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/audit"
	"github.com/ledgerd/ledger/audit/servicelog"
	"github.com/ledgerd/ledger/audit/storelog"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/daemon"
	"github.com/ledgerd/ledger/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// harness is a ledgerd on the test's database and NATS, its clients, and a
// pool on the same database to read and tamper with.
type harness struct {
	pgURL string
	pool  *pgxpool.Pool
	cmd   ledgerv1.CommandServiceClient
	query ledgerv1.QueryServiceClient
	audit ledgerv1.AuditServiceClient
	mon   ledgerv1.MonitoringServiceClient
}

func start(t testing.TB) *harness {
	t.Helper()
	h := &harness{pgURL: testenv.MigratedPostgresURL(t)}
	key, err := apikeys.Generate(nil)
	testenv.NoError(t, err)
	m := &daemon.Main{
		Config: daemon.Config{PostgresURL: h.pgURL, NATSURL: testenv.NATSURL(t), GRPCAddr: "127.0.0.1:0",
			HTTPAddr: "127.0.0.1:0", DataDir: t.TempDir(), PostgresConnsMax: 8, AdminKey: key},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	testenv.NoError(t, m.Run(context.Background()))
	t.Cleanup(m.Close)
	conn, err := grpc.NewClient(m.GRPCAddr(), grpc.WithPerRPCCredentials(apikeys.Bearer(key)),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	testenv.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	h.cmd, h.query, h.audit = ledgerv1.NewCommandServiceClient(conn), ledgerv1.NewQueryServiceClient(conn),
		ledgerv1.NewAuditServiceClient(conn)
	h.mon = ledgerv1.NewMonitoringServiceClient(conn)
	h.pool, err = pgxpool.New(context.Background(), h.pgURL)
	testenv.NoError(t, err)
	t.Cleanup(h.pool.Close)
	return h
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

// serviceLog is the ledger's log through ledgerd, as ledgerctl reads it.
func (h *harness) serviceLog(ledger string) *servicelog.Log {
	return &servicelog.Log{Name: ledger, Audit: h.audit, Query: h.query}
}

func (h *harness) storeLog(ledger string) *storelog.Log {
	return &storelog.Log{Store: eventstore.New(h.pool), Name: ledger}
}

func (h *harness) head(t *testing.T, ledger string) uint64 {
	t.Helper()
	var pos int64
	testenv.NoError(t, h.pool.QueryRow(ctx(t), `SELECT position FROM ledger_heads WHERE ledger = $1`, ledger).Scan(&pos))
	return uint64(pos)
}

// caughtUp waits until every projection of ledger has applied its head:
// a test that edits a read model edits what the projectors wrote, and
// nothing they write after.
func (h *harness) caughtUp(t *testing.T, ledger string) {
	t.Helper()
	head := h.head(t, ledger)
	testenv.Eventually(t, time.Minute, func() error {
		st, err := h.query.GetProjectionStatus(ctx(t), &ledgerv1.GetProjectionStatusRequest{Ledger: ledger})
		if err != nil {
			return err
		}
		for _, p := range st.GetProjections() {
			if p.GetPosition() < head {
				return fmt.Errorf("%s at %d of %d", p.GetName(), p.GetPosition(), head)
			}
		}
		return nil
	})
}

// verify runs Verify through ledgerd, as ledgerctl does (alerts compared,
// the statement lines read at once).
func (h *harness) verify(t *testing.T, ledger string, opts audit.Options) *audit.Report {
	t.Helper()
	if opts.Alerts == nil {
		opts.Alerts = h.mon
	}
	if opts.Lines == nil {
		opts.Lines = h.audit
	}
	rep, err := audit.Verify(ctx(t), h.serviceLog(ledger), h.query, opts)
	testenv.NoError(t, err)
	return rep
}

// tamperLog runs sql on the events table with its append-only triggers off,
// in one transaction that turns them on again: what only the table's owner
// (or a superuser) can do, and what Verify must catch.
func (h *harness) tamperLog(t *testing.T, sql string, args ...any) {
	t.Helper()
	err := pgx.BeginFunc(ctx(t), h.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx(t), `ALTER TABLE events DISABLE TRIGGER USER`); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx(t), sql, args...)
		if err != nil {
			return err
		}
		if tag.RowsAffected() != 1 {
			return fmt.Errorf("%d rows changed, want 1", tag.RowsAffected())
		}
		_, err = tx.Exec(ctx(t), `ALTER TABLE events ENABLE TRIGGER USER`)
		return err
	})
	testenv.NoError(t, err)
	// The triggers are back: the log refuses edits again.
	var enabled []string
	rows, err := h.pool.Query(ctx(t), `SELECT tgenabled::text FROM pg_trigger WHERE tgrelid = 'events'::regclass AND NOT tgisinternal`)
	testenv.NoError(t, err)
	for rows.Next() {
		var e string
		testenv.NoError(t, rows.Scan(&e))
		enabled = append(enabled, e)
	}
	testenv.NoError(t, rows.Err())
	// Two: no UPDATE or DELETE, no TRUNCATE. (Inserts are the owner's and
	// append_events' alone: no trigger since migration 0007.)
	if len(enabled) != 2 || slices.ContainsFunc(enabled, func(e string) bool { return e != "O" }) {
		t.Fatalf("events triggers after tampering: %v, want both enabled (O)", enabled)
	}
}

// exec runs one statement that must change exactly one row.
func (h *harness) exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	tag, err := h.pool.Exec(ctx(t), sql, args...)
	testenv.NoError(t, err)
	if tag.RowsAffected() != 1 {
		t.Fatalf("%s: %d rows changed, want 1", sql, tag.RowsAffected())
	}
}

// workload drives a ledger through gRPC with every kind of event: assets of
// scales 2 and 0, accounts of both normal sides and with bounds, transfers
// of one to three postings (some across assets), holds posted in full and in
// part, voided and expired, reversals in full and in part, bounds and
// metadata changes, closes. Items may be refused; the log holds the rest.
type workload struct {
	t        *testing.T
	h        *harness
	ledger   string
	rng      *rand.Rand
	n        int
	accounts map[string][]string // by asset
	scales   map[string]int
	closable []string
	holds    []tracked
	posted   []tracked
}

// tracked is a hold or a posted transfer, and the minor units per posting it
// still holds or may still reverse.
type tracked struct {
	id     string
	assets []string
	left   []int64
}

func newWorkload(t *testing.T, h *harness, ledger string, seed uint64) *workload {
	t.Helper()
	w := &workload{t: t, h: h, ledger: ledger, rng: rand.New(rand.NewPCG(seed, seed^0x5eed)),
		accounts: map[string][]string{}, scales: map[string]int{"USD": 2, "EUR": 2, "JPY": 0}}
	for _, code := range []string{"USD", "EUR", "JPY"} {
		resp, err := h.cmd.DefineAsset(ctx(t), &ledgerv1.DefineAssetRequest{Ledger: ledger, Code: code, Scale: uint32(w.scales[code])})
		testenv.NoError(t, err)
		mustCreated(t, resp.GetResult())
	}
	var open []*ledgerv1.Account
	zero := "0"
	for _, code := range []string{"USD", "EUR", "JPY"} {
		for i := range 5 {
			id := fmt.Sprintf("%s:%d", strings.ToLower(code), i)
			a := &ledgerv1.Account{Id: id, Asset: code, NormalBalance: ledgerv1.NormalBalance(1 + i%2),
				Metadata: map[string]string{"n": fmt.Sprint(i)}}
			if i == 2 {
				a.MinBalance = &zero // never overdrawn: some transfers are refused
			}
			if i == 4 {
				w.closable = append(w.closable, id)
			}
			open = append(open, a)
			w.accounts[code] = append(w.accounts[code], id)
		}
	}
	resp, err := h.cmd.OpenAccounts(ctx(t), &ledgerv1.OpenAccountsRequest{Ledger: ledger, Accounts: open})
	testenv.NoError(t, err)
	mustCreated(t, resp.GetResults()...)
	return w
}

func mustCreated(t *testing.T, results ...*ledgerv1.ItemResult) {
	t.Helper()
	for _, r := range results {
		if r.GetCode() != ledgerv1.ResultCode_RESULT_CODE_CREATED {
			t.Fatalf("item %d %s: %s %s", r.GetIndex(), r.GetId(), r.GetCode(), r.GetDetail())
		}
	}
}

func created(r *ledgerv1.ItemResult) bool {
	return r.GetCode() == ledgerv1.ResultCode_RESULT_CODE_CREATED
}

// amount writes units of an asset at its scale.
func (w *workload) amount(asset string, units int64) string {
	scale := w.scales[asset]
	if scale == 0 {
		return fmt.Sprint(units)
	}
	return fmt.Sprintf("%d.%0*d", units/100, scale, units%100)
}

func (w *workload) id(kind string) string {
	w.n++
	return fmt.Sprintf("%s-%d", kind, w.n)
}

// transfer returns a transfer of one to three postings.
func (w *workload) transfer(pending bool) (*ledgerv1.Transfer, tracked) {
	tr := &ledgerv1.Transfer{Pending: pending, Reference: "ref", Metadata: map[string]string{"k": "v"}}
	var tk tracked
	for range 1 + w.rng.IntN(3) {
		asset := []string{"USD", "EUR", "JPY"}[w.rng.IntN(3)]
		ids := w.accounts[asset]
		from := w.rng.IntN(len(ids))
		to := (from + 1 + w.rng.IntN(len(ids)-1)) % len(ids)
		units := 1 + w.rng.Int64N(50_000)
		tk.assets, tk.left = append(tk.assets, asset), append(tk.left, units)
		tr.Postings = append(tr.Postings, &ledgerv1.Posting{DebitAccount: ids[from], CreditAccount: ids[to],
			Amount: w.amount(asset, units), Asset: asset})
	}
	tr.Id = w.id(map[bool]string{false: "t", true: "hold"}[pending])
	tk.id = tr.Id
	return tr, tk
}

// part takes some of each posting's units left (all with full).
func (w *workload) part(tk *tracked, full bool) []string {
	out := make([]string, len(tk.left))
	for i, left := range tk.left {
		took := left
		if !full && left > 0 {
			took = w.rng.Int64N(left + 1)
		}
		out[i] = w.amount(tk.assets[i], took)
		tk.left[i] -= took
	}
	return out
}

func (w *workload) take(list *[]tracked) (tracked, bool) {
	if len(*list) == 0 {
		return tracked{}, false
	}
	i := w.rng.IntN(len(*list))
	tk := (*list)[i]
	*list = append((*list)[:i], (*list)[i+1:]...)
	return tk, true
}

// run takes steps steps, each a request of one kind, defines categories a
// third of the way (and moves one at two thirds) and closes an accounting
// period halfway: every fold of the auditor meets a CategoryDefined and a
// PeriodClosed.
func (w *workload) run(steps int) {
	for i := range steps {
		switch i {
		case steps / 3:
			w.defineCategories(&ledgerv1.Category{Name: "assets"}, &ledgerv1.Category{Name: "usd", Parent: "assets",
				Patterns: []string{"usd:*"}}, &ledgerv1.Category{Name: "other", Patterns: []string{"eur:*", "jpy:0"}})
		case steps / 2:
			w.closePeriod()
		case 2 * steps / 3:
			w.defineCategories(&ledgerv1.Category{Name: "usd", Parent: "other", Patterns: []string{"usd:*", "usd:1"},
				Description: "moved"})
		}
		w.step()
	}
}

// defineCategories defines categories, each of them CREATED.
func (w *workload) defineCategories(cats ...*ledgerv1.Category) {
	w.t.Helper()
	resp, err := w.h.cmd.DefineCategories(ctx(w.t), &ledgerv1.DefineCategoriesRequest{Ledger: w.ledger, Categories: cats})
	testenv.NoError(w.t, err)
	mustCreated(w.t, resp.GetResults()...)
}

// closePeriod closes the ledger's open period at the clock: no step dates a
// transfer in the past, so none is refused for it.
func (w *workload) closePeriod() {
	w.t.Helper()
	resp, err := w.h.cmd.ClosePeriod(ctx(w.t), &ledgerv1.ClosePeriodRequest{Ledger: w.ledger,
		End: timestamppb.New(time.Now().Add(-time.Second))})
	testenv.NoError(w.t, err)
	mustCreated(w.t, resp.GetResult())
}

func (w *workload) step() {
	t, h, c := w.t, w.h, ctx(w.t)
	t.Helper()
	switch op := w.rng.IntN(12); {
	case op < 4:
		req := &ledgerv1.CreateTransfersRequest{Ledger: w.ledger}
		var tks []tracked
		for range 1 + w.rng.IntN(4) {
			tr, tk := w.transfer(false)
			req.Transfers, tks = append(req.Transfers, tr), append(tks, tk)
		}
		resp, err := h.cmd.CreateTransfers(c, req)
		testenv.NoError(t, err)
		for i, r := range resp.GetResults() {
			if created(r) {
				w.posted = append(w.posted, tks[i])
			}
		}
	case op < 6:
		tr, tk := w.transfer(true)
		resp, err := h.cmd.CreateTransfers(c, &ledgerv1.CreateTransfersRequest{Ledger: w.ledger, Transfers: []*ledgerv1.Transfer{tr}})
		testenv.NoError(t, err)
		if created(resp.GetResults()[0]) {
			w.holds = append(w.holds, tk)
		}
	case op < 8:
		tk, ok := w.take(&w.holds)
		if !ok {
			return
		}
		post := &ledgerv1.PostPending{Id: w.id("post"), PendingId: tk.id, Reference: "post"}
		full := w.rng.IntN(2) == 0
		amounts := w.part(&tk, full)
		if !full {
			post.Amounts = amounts
		}
		resp, err := h.cmd.PostPendingTransfers(c, &ledgerv1.PostPendingTransfersRequest{Ledger: w.ledger, Posts: []*ledgerv1.PostPending{post}})
		testenv.NoError(t, err)
		if created(resp.GetResults()[0]) {
			posted := tracked{id: post.Id, assets: tk.assets, left: make([]int64, len(tk.left))}
			for i := range tk.left {
				posted.left[i] = w.unitsOf(tk.assets[i], amounts[i])
			}
			w.posted = append(w.posted, posted)
		}
	case op < 9:
		tk, ok := w.take(&w.holds)
		if !ok {
			return
		}
		_, err := h.cmd.VoidPendingTransfers(c, &ledgerv1.VoidPendingTransfersRequest{Ledger: w.ledger,
			Voids: []*ledgerv1.VoidPending{{Id: w.id("void"), PendingId: tk.id}}})
		testenv.NoError(t, err)
	case op < 10:
		tk, ok := w.take(&w.posted)
		if !ok {
			return
		}
		rev := &ledgerv1.Reversal{Id: w.id("rev"), TransferId: tk.id, Reference: "undo"}
		full := w.rng.IntN(2) == 0
		amounts := w.part(&tk, full)
		if !full {
			rev.Amounts = amounts
			w.posted = append(w.posted, tk) // what is left may be reversed again
		}
		_, err := h.cmd.ReverseTransfers(c, &ledgerv1.ReverseTransfersRequest{Ledger: w.ledger, Reversals: []*ledgerv1.Reversal{rev}})
		testenv.NoError(t, err)
	case op < 11:
		asset := []string{"USD", "EUR", "JPY"}[w.rng.IntN(3)]
		id := w.accounts[asset][w.rng.IntN(5)]
		bounds := &ledgerv1.AccountBounds{AccountId: id}
		if w.rng.IntN(2) == 0 {
			lower := "-" + w.amount(asset, 1_000_000)
			bounds.MinBalance = &lower
		}
		_, err := h.cmd.SetAccountBounds(c, &ledgerv1.SetAccountBoundsRequest{Ledger: w.ledger, Bounds: []*ledgerv1.AccountBounds{bounds}})
		testenv.NoError(t, err)
		_, err = h.cmd.SetAccountMetadata(c, &ledgerv1.SetAccountMetadataRequest{Ledger: w.ledger,
			Accounts: []*ledgerv1.AccountMetadata{{AccountId: id, Metadata: map[string]string{"step": fmt.Sprint(w.n)}}}})
		testenv.NoError(t, err)
		// Freezes and unfreezes by turns (one of a frozen account, or the
		// other of one that is not, answers EXISTS): the accounts read
		// model's frozen_position, and debits refused meanwhile.
		if w.n%2 == 0 {
			_, err = h.mon.FreezeAccounts(c, &ledgerv1.FreezeAccountsRequest{Ledger: w.ledger, AccountIds: []string{id}, Reason: "step"})
		} else {
			_, err = h.mon.UnfreezeAccounts(c, &ledgerv1.UnfreezeAccountsRequest{Ledger: w.ledger, AccountIds: []string{id}, Reason: "step"})
		}
		testenv.NoError(t, err)
	default:
		if len(w.closable) == 0 || w.rng.IntN(4) != 0 {
			return
		}
		id := w.closable[0]
		resp, err := h.cmd.CloseAccounts(c, &ledgerv1.CloseAccountsRequest{Ledger: w.ledger, AccountIds: []string{id}})
		testenv.NoError(t, err)
		if created(resp.GetResults()[0]) {
			w.closable = w.closable[1:]
		}
	}
}

// unitsOf reads back an amount written by amount.
func (w *workload) unitsOf(asset, s string) int64 {
	var units int64
	for _, r := range s {
		if r >= '0' && r <= '9' {
			units = units*10 + int64(r-'0')
		}
	}
	return units
}

// expire places n holds that expire in a second (trying others when one
// is refused: an account frozen, overdrawn) and waits until the writer has
// expired them all.
func (w *workload) expire(n int) {
	t := w.t
	t.Helper()
	var ids []string
	for try := 0; len(ids) < n; try++ {
		if try == 100 {
			t.Fatalf("%d of %d holds placed in %d tries", len(ids), n, try)
		}
		tr, _ := w.transfer(true)
		tr.TimeoutSeconds = 1
		resp, err := w.h.cmd.CreateTransfers(ctx(t), &ledgerv1.CreateTransfersRequest{Ledger: w.ledger, Transfers: []*ledgerv1.Transfer{tr}})
		testenv.NoError(t, err)
		if created(resp.GetResults()[0]) {
			ids = append(ids, tr.Id)
		}
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		var expired int
		err := w.h.pool.QueryRow(ctx(t), `SELECT count(*) FROM events WHERE ledger = $1 AND type = 'PendingExpired'
			AND command_id = ANY($2)`, w.ledger, ids).Scan(&expired)
		if err != nil {
			return err
		}
		if expired != len(ids) {
			return fmt.Errorf("%d of %d holds expired", expired, len(ids))
		}
		return nil
	})
}
