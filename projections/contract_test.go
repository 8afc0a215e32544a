package projections_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/internal/testenv"
	"github.com/ledgerd/ledger/projections"
	"github.com/ledgerd/ledger/projections/projectortest"
)

// batchDependent lists, per table, the columns that depend on where the
// runner's batches happened to end, not on the log alone: two correct builds
// differ there. trial_balance_history has one row per batch end: left out
// (TestTrialBalanceMatchesReplay checks each row against a replay).
// recon_generations is random by design (a rebuild swaps in another).
var batchDependent = map[string][]string{
	"trial_balances":        {"position"},
	"trial_balance_history": nil,
	"recon_generations":     nil,
}

// contractLogs writes, per projector of projections.All(), a log that
// exercises it and builds its read model live beside the writer, and says
// how to check that read model against a replay of the log.
var contractLogs = map[string]func(t *testing.T) (projectortest.Log, projectortest.Case){
	projections.Balances{}.Name():          balancesContract,
	projections.NewMovements().Name():      movementsContract,
	projections.Transfers{}.Name():         transfersContract,
	projections.NewReconciliation().Name(): reconciliationContract,
	projections.NewAlerts().Name():         alertsContract,
}

// TestProjectorContract runs projectortest's contract on every projector
// ledgerd runs.
func TestProjectorContract(t *testing.T) {
	t.Parallel()
	for _, proj := range projections.All() {
		t.Run(proj.Name(), func(t *testing.T) {
			t.Parallel()
			contract, ok := contractLogs[proj.Name()]
			if !ok {
				t.Fatalf("no log for the contract of %s: add one to contractLogs", proj.Name())
			}
			log, c := contract(t)
			projectortest.Run(t, log, c)
		})
	}
}

// in returns e reporting to t: a subtest's env.
func (e *env) in(t *testing.T) *env {
	c := *e
	c.t = t
	return &c
}

// balancesContract: random transfers of several assets, accounts opened,
// amended and closed, projected live from the stream. The trial balance and
// the accounts it counts (trial_accounts) equal a replay of the log, the
// assets table holds every asset defined with its scale, the categories
// their last definitions.
func balancesContract(t *testing.T) (projectortest.Log, projectortest.Case) {
	e := newEnv(t)
	// Running from the empty ledger on, beside the writer and the relay.
	runner := e.startRunner(t.Context(), projections.Balances{}, e.natsSource())
	e.runWorkload(400, 1)
	head := e.amendAccounts()
	waitFor(t, runner, head)
	return projectortest.Log{Pool: e.pool, Ledger: e.ledger, Head: head}, projectortest.Case{
		New:            func() projections.Projector { return projections.Balances{} },
		BatchDependent: batchDependent,
		Check: func(t *testing.T) {
			e := e.in(t)
			e.checkTrialAt(head)
			e.checkTrialAccounts(head)
			rows, err := e.pool.Query(t.Context(), `SELECT code, scale FROM assets WHERE ledger = $1`, e.ledger)
			testenv.NoError(t, err)
			scales, err := collectScales(rows)
			testenv.NoError(t, err)
			want := map[string]int16{}
			for _, a := range workloadAssets {
				want[a.Code] = int16(a.Scale)
			}
			if diff := cmp.Diff(want, scales); diff != "" {
				t.Fatalf("assets (-want +got):\n%s", diff)
			}
			checkCategories(t, e)
		},
	}
}

// movementsContract: transfers, holds posted, voided and expired, reversals,
// accounts amended and closed, with recorded and effective times the test
// sets, projected live in small batches (heads carry running totals across
// many batches). Statements are prefix sums of the log, balances as of
// positions and times equal a replay, and the accounts table (migration
// 0021) is the accounts as opened, amended and closed.
func movementsContract(t *testing.T) (projectortest.Log, projectortest.Case) {
	clock := newMvClock(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))
	e := newClockedEnv(t, clock)
	runner := e.startRunner(t.Context(), projections.NewMovements().KeepServed(), batches{src: e.natsSource(), size: 5})
	w := &mvWorkload{e: e, clock: clock, rng: rand.New(rand.NewPCG(7, 7)), postingsOf: map[string][]domain.PostingInput{}}
	w.run(40, 15)
	head := e.amendAccounts()
	waitFor(t, runner, head)
	return projectortest.Log{Pool: e.pool, Ledger: e.ledger, Head: head}, projectortest.Case{
		New:            func() projections.Projector { return projections.NewMovements().KeepServed() },
		BatchDependent: batchDependent,
		Check: func(t *testing.T) {
			e := e.in(t)
			m := e.model(head)
			kinds := map[string]int{}
			for _, r := range m.recs {
				kinds[r.Type]++
			}
			t.Logf("%d events: %v", head, kinds)
			for _, k := range []string{domain.TypePendingPosted, domain.TypePendingVoided, domain.TypePendingExpired, domain.TypeTransferReversed} {
				if kinds[k] == 0 {
					t.Fatalf("the workload made no %s", k)
				}
			}
			q := mvQueries(e.pool, runner)
			rng := rand.New(rand.NewPCG(8, 8))
			t.Run("statements are prefix sums of the log", func(t *testing.T) { m.checkStatements(t, q) })
			t.Run("as of positions equal a replay", func(t *testing.T) { m.checkAsOfPositions(t, q, rng, 100) })
			t.Run("as of recorded times", func(t *testing.T) { m.checkAsOfRecorded(t, q, rng, 30) })
			t.Run("as of effective times", func(t *testing.T) { m.checkAsOfEffective(t, q, rng, 30) })
			t.Run("statement ranges", func(t *testing.T) { m.checkStatementRanges(t, q, rng, 30) })
			t.Run("accounts", func(t *testing.T) { e.in(t).checkAccounts() })
			t.Run("balances served from memory", func(t *testing.T) {
				checkServedBalances(t, e, e.ledger, runner.Runner, true)
				checkGetBalancesFromMemory(t, e.in(t), runner)
			})
		},
		// A runner from the log's start holds every account; one from a
		// checkpoint those its batches opened or moved.
		CheckRunner: func(t *testing.T, key string, r *projections.Runner) { checkServedBalances(t, e, key, r, false) },
	}
}

// transfersContract: transfers, holds posted in full and in part, voided,
// left open and expired, reversals in part and in full, some within one
// request with what they resolve, projected live from the stream. The rows
// equal a replay, and a few have the fate the workload gave them.
func transfersContract(t *testing.T) (projectortest.Log, projectortest.Case) {
	clock := &xferClock{now: time.Now().UTC().Truncate(time.Microsecond)}
	e := newXferEnv(t, clock)
	runner := e.startRunner(t.Context(), projections.Transfers{}, e.natsSource())
	head := e.runXferWorkload(clock, 4)
	waitFor(t, runner, head)
	return projectortest.Log{Pool: e.pool, Ledger: e.ledger, Head: head}, projectortest.Case{
		New:            func() projections.Projector { return projections.Transfers{} },
		BatchDependent: batchDependent,
		Check: func(t *testing.T) {
			e := e.in(t)
			want, got := e.replayTransfers(head), e.readTransfers()
			if diff := cmp.Diff(want.rows, got.rows, emptyIsNil); diff != "" {
				t.Errorf("transfers differ from the replay (-replay +read model):\n%s", diff)
			}
			if diff := cmp.Diff(want.accounts, e.accountsFromMovements(head)); diff != "" {
				t.Errorf("accounts' transfers found through their statement lines differ from the replay (-replay +lines):\n%s", diff)
			}
			checkXferFates(t, got)
		},
	}
}

// Shape of the reconciliation contract's log.
const (
	reconTransfers = 90
	// reconLateFrom is the transfer from which statement lines are imported:
	// the movements before it are read from the movements projection.
	reconLateFrom = 20
)

// reconciliationContract: a bank account whose movements before its first
// statement line come from the movements projection, then transfers and
// lines that match by reference, by amount and date, in splits, or not at
// all. The contract compares the matches, which are a function of the log
// alone, across batch sizes, crashes and a rebuild; the log must make some.
func reconciliationContract(t *testing.T) (projectortest.Log, projectortest.Case) {
	e := newEnv(t)
	mv := e.startRunner(t.Context(), projections.NewMovements(), e.natsSource())
	rc := e.startRunner(t.Context(), projections.NewReconciliation(), e.natsSource())
	e.submit([]domain.Command{&domain.DefineAsset{Code: "USD", Scale: 2},
		&domain.OpenAccount{ID: "bank", Asset: "USD", Normal: domain.SideDebit},
		&domain.OpenAccount{ID: "cust", Asset: "USD", Normal: domain.SideCredit}})
	// Business days of last week: effective times may not be far in the past.
	day := time.Now().UTC().Truncate(24 * time.Hour).Add(-10*24*time.Hour + 12*time.Hour)
	// A closed period before every effective time below.
	e.submit([]domain.Command{&domain.ClosePeriod{End: day.Add(-24 * time.Hour)}})
	for i := range reconTransfers {
		on := day.Add(time.Duration(i%7) * 24 * time.Hour)
		ref := fmt.Sprintf("INV-%d", i%11)
		if i%3 == 0 {
			ref = ""
		}
		cents := 100 * (1 + i%5)
		cmds := []domain.Command{&domain.CreateTransfer{ID: fmt.Sprintf("t%d", i), Reference: ref, EffectiveAt: on,
			Postings: []domain.PostingInput{{Debit: "bank", Credit: "cust", Asset: "USD",
				Amount: domain.UnitsFromInt64(int64(cents)).Format(2)}}}}
		if i >= reconLateFrom {
			// Lines that match some movements exactly, others by date or
			// in sums, others never.
			line := &domain.ImportStatementLine{Account: "bank", Source: "acme", ExternalID: fmt.Sprintf("L%d", i),
				Amount: domain.UnitsFromInt64(int64(100 * (1 + (i*7)%5))).Format(2), Direction: domain.SideCredit,
				ValueDate: on.Add(time.Duration(i%2) * 24 * time.Hour).Format(domain.DateLayout), Reference: ref}
			if i%10 == 9 {
				line.Amount, line.Reference = "12345.67", "" // matches nothing
			}
			cmds = append(cmds, line)
		}
		e.submit(cmds)
	}
	head, _, err := e.store.Head(t.Context(), e.ledger)
	testenv.NoError(t, err)
	waitFor(t, mv, head)
	waitFor(t, rc, head)
	return projectortest.Log{Pool: e.pool, Ledger: e.ledger, Head: head}, projectortest.Case{
		New:            func() projections.Projector { return projections.NewReconciliation() },
		Upstream:       []projections.Projector{projections.NewMovements()},
		BatchDependent: batchDependent,
		Check: func(t *testing.T) {
			var matches, unmatched int
			testenv.NoError(t, e.pool.QueryRow(t.Context(), `SELECT (SELECT count(*) FROM recon_matches WHERE ledger = $1),
				(SELECT count(*) FROM recon_lines WHERE ledger = $1 AND match_id IS NULL)`, e.ledger).Scan(&matches, &unmatched))
			if matches == 0 || unmatched == 0 {
				t.Fatalf("%d matches and %d unmatched lines: the log should make both", matches, unmatched)
			}
		},
	}
}

// amendAccounts opens accounts with bounds and metadata, amends them and the
// workload's (in one batch with the opening, and in later ones) and closes
// one: every event the accounts table (migrations 0015 and 0021) follows.
// It returns the head.
func (e *env) amendAccounts() uint64 {
	e.t.Helper()
	low, high := "-99999999999.00", "99999999999.00"
	e.submit([]domain.Command{
		&domain.OpenAccount{ID: "meta:1", Asset: "USD", Normal: domain.SideCredit, MinBalance: ptr("-5.00"),
			Metadata: map[string]string{"tier": "gold"}},
		&domain.OpenAccount{ID: "meta:2", Asset: "JPY", Normal: domain.SideDebit,
			Metadata: map[string]string{"tier": "gold", "region": "eu"}},
		&domain.SetAccountMetadata{AccountID: "meta:1", Metadata: map[string]string{"tier": "silver"}},
		&domain.SetAccountBounds{AccountID: accountID("USD", 1), MinBalance: &low},
		// Freezes (migration 0025): meta:1 stays frozen (an alert's freeze
		// of it again in the next batch keeps its first), USD-2 is unfrozen
		// in the next batch, USD-1 frozen there, meta:2 closed frozen and
		// unfrozen after its close in one batch. No later debit of these.
		&domain.FreezeAccount{AccountID: "meta:1", Reason: "test"},
		&domain.FreezeAccount{AccountID: accountID("USD", 2), Reason: "test"},
		&domain.FreezeAccount{AccountID: "meta:2", Reason: "test"},
	})
	e.submit([]domain.Command{
		&domain.SetAccountMetadata{AccountID: accountID("USD", 0), Metadata: map[string]string{"k": "v"}},
		&domain.SetAccountBounds{AccountID: accountID("USD", 2), MinBalance: &low, MaxBalance: &high},
		&domain.SetAccountBounds{AccountID: accountID("USD", 1)},
		&domain.SetAccountMetadata{AccountID: "meta:2"},
		&domain.CloseAccount{AccountID: "meta:2"},
		&domain.UnfreezeAccount{AccountID: accountID("USD", 2), Reason: "test"},
		&domain.FreezeAccount{AccountID: accountID("USD", 1), Reason: "test"},
		&domain.UnfreezeAccount{AccountID: "meta:2", Reason: "test"},
		&domain.FreezeAccount{AccountID: "meta:1", Reason: "alert", Alert: &domain.AlertMark{Position: 1, ID: "alert-1"}},
	})
	head, _, err := e.store.Head(e.t.Context(), e.ledger)
	testenv.NoError(e.t, err)
	return head
}

func ptr(s string) *string { return &s }

// checkAccounts checks the accounts table against what amendAccounts did.
func (e *env) checkAccounts() {
	e.t.Helper()
	rows, err := e.pool.Query(e.t.Context(), `SELECT account, asset, normal_balance, coalesce(min_balance::text, '-'),
			coalesce(max_balance::text, '-'), metadata::text, closed, opened_position > 0 AND position >= opened_position,
			frozen_position > opened_position AND position >= frozen_position
		FROM accounts WHERE ledger = $1 ORDER BY account`, e.ledger)
	testenv.NoError(e.t, err)
	got := map[string]string{}
	var (
		id, asset, normal, minB, maxB, meta string
		closed, positioned                  bool
		frozen                              *bool
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &asset, &normal, &minB, &maxB, &meta, &closed, &positioned, &frozen}, func() error {
		got[id] = fmt.Sprintf("%s %s min %s max %s %s closed %t positioned %t", asset, normal, minB, maxB, meta, closed, positioned)
		if frozen != nil {
			got[id] += fmt.Sprintf(" frozen %t", *frozen)
		}
		return nil
	})
	testenv.NoError(e.t, err)
	if n := len(workloadAssets)*accountsPerAsset + 2; len(got) != n {
		e.t.Fatalf("%d accounts, want %d", len(got), n)
	}
	want := map[string]string{
		"meta:1":            `USD credit min -5.00 max - {"tier": "silver"} closed false positioned true frozen true`,
		"meta:2":            `JPY debit min - max - {} closed true positioned true`,
		accountID("USD", 0): `USD debit min - max - {"k": "v"} closed false positioned true`,
		accountID("USD", 1): `USD credit min - max - {} closed false positioned true frozen true`,
		accountID("USD", 2): `USD debit min -99999999999.00 max 99999999999.00 {} closed false positioned true`,
	}
	for id, w := range want {
		if got[id] != w {
			e.t.Errorf("account %s: %s, want %s", id, got[id], w)
		}
	}
}

// checkCategories: the categories table holds each category's last
// definition (workloadCategories), at the position of its event.
func checkCategories(t *testing.T, e *env) {
	t.Helper()
	type row struct {
		Name, Description string
		Parent            *string
		Patterns          []string
		Position          int64
	}
	rows, err := e.pool.Query(t.Context(), `SELECT name, description, parent, patterns, position FROM categories
		WHERE ledger = $1 ORDER BY name`, e.ledger)
	testenv.NoError(t, err)
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
	testenv.NoError(t, err)
	// The setup's events are the assets, the accounts, then the categories.
	first := int64(len(workloadAssets) * (1 + accountsPerAsset))
	usd := "usd"
	want := []row{
		{Name: "usd", Description: "redefined", Patterns: []string{"USD-1", "USD-3"}, Position: first + 3},
		{Name: "usd:even", Parent: &usd, Patterns: []string{"USD-2", "USD-4"}, Position: first + 2},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("categories (-want +got):\n%s", diff)
	}
}
