package daemon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/internal/testenv"
	"github.com/ledgerd/ledger/projections"
)

// raisedAlerts are the log's AlertRaised events, in position order: each
// as "<alert id> <rule> v<version> <account> <figures>".
func (h *harness) raisedAlerts(t *testing.T, ledger string) []string {
	t.Helper()
	conn, err := pgx.Connect(ctx(t), h.pgURL)
	testenv.NoError(t, err)
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx(t), `SELECT position, payload FROM events WHERE ledger = $1 AND type = $2 ORDER BY position`,
		ledger, domain.TypeAlertRaised)
	testenv.NoError(t, err)
	var (
		out     []string
		pos     int64
		payload []byte
	)
	_, err = pgx.ForEachRow(rows, []any{&pos, &payload}, func() error {
		var e domain.AlertRaised
		if err := json.Unmarshal(payload, &e); err != nil {
			return err
		}
		if uint64(pos) <= e.Position {
			t.Errorf("alert %s raised at %d, not after its event", e.ID, pos)
		}
		out = append(out, fmt.Sprintf("%s %s v%d %s %v", e.ID, e.Rule, e.RuleVersion, e.Account, e.Figures))
		return nil
	})
	testenv.NoError(t, err)
	return out
}

// servedAlerts are ListAlerts' alerts, as raisedAlerts writes them.
func servedAlerts(t *testing.T, mon ledgerv1.MonitoringServiceClient, ledger string, minPosition uint64) []string {
	t.Helper()
	resp, err := mon.ListAlerts(ctx(t), &ledgerv1.ListAlertsRequest{Ledger: ledger, MinPosition: minPosition, Limit: 1000})
	testenv.NoError(t, err)
	var out []string
	for _, a := range resp.GetAlerts() {
		out = append(out, fmt.Sprintf("%s %s v%d %s %v", a.GetId(), a.GetRuleId(), a.GetRuleVersion(), a.GetAccount(), a.GetFigures()))
	}
	return out
}

// TestAlertsRaisedInTheLog: every alert of an after-commit rule, with or
// without an action, becomes one AlertRaised event in the log (so on the
// stream and to webhooks), in alert order, saying what the alert says; a
// freezing rule's alert freezes too. After a restart of ledgerd none is
// raised again, a new one is, and audit verify, which checks every
// AlertRaised against its replay, is clean.
func TestAlertsRaisedInTheLog(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	mon := h.monitoring(t)
	h.setup(t, ledger)
	h.transferOK(t, ledger, transfer("fund", "alice", "bob", "500.00", "USD"))
	big := &ledgerv1.Rule{Id: "big", Asset: "USD", Kind: &ledgerv1.Rule_Threshold{Threshold: &ledgerv1.ThresholdRule{Amount: "70.00",
		Side: ledgerv1.Side_SIDE_CREDIT}}}
	huge := &ledgerv1.Rule{Id: "huge", Asset: "USD", AccountPattern: "bob", Actions: []ledgerv1.RuleAction{ledgerv1.RuleAction_RULE_ACTION_FREEZE},
		Kind: &ledgerv1.Rule_Threshold{Threshold: &ledgerv1.ThresholdRule{Amount: "300.00", Side: ledgerv1.Side_SIDE_DEBIT}}}
	checkResults(t, "define", h.defineRules(t, mon, ledger, big, huge), created(2)...)

	h.transferOK(t, ledger, transfer("t1", "bob", "carol", "80.00", "USD"))            // big on carol
	h.transferOK(t, ledger, transfer("t2", "bob", "carol", "10.00", "USD"))            // none
	h.transferOK(t, ledger, transfer("t3", "bob", "carol", "350.00", "USD"))           // big on carol, huge on bob
	last := h.transferOK(t, ledger, transfer("t4", "carol", "alice", "100.00", "USD")) // big on alice
	waitRaised := func(h *harness, mon ledgerv1.MonitoringServiceClient, n int, at uint64) []string {
		t.Helper()
		var raised []string
		testenv.Eventually(t, 30*time.Second, func() error {
			raised = h.raisedAlerts(t, ledger)
			if len(raised) < n {
				return fmt.Errorf("%d alerts raised, want %d", len(raised), n)
			}
			return nil
		})
		if served := servedAlerts(t, mon, ledger, at); !slices.Equal(raised, served) {
			t.Fatalf("alerts raised in the log:\n%s\nalerts served:\n%s", strings.Join(raised, "\n"), strings.Join(served, "\n"))
		}
		return raised
	}
	raised := waitRaised(h, mon, 4, last)
	hugeAlert := strings.Fields(raised[slices.IndexFunc(raised, func(s string) bool { return strings.Contains(s, " huge ") })])[0]
	testenv.Eventually(t, 30*time.Second, func() error {
		if n := h.countEvents(t, ledger, "AccountFrozen", hugeAlert); n != 1 {
			return fmt.Errorf("%d freezes for alert %s", n, hugeAlert)
		}
		return nil
	})

	h.m.Close()
	h2 := restart(t, h)
	mon2 := h2.monitoring(t)
	last = h2.transferOK(t, ledger, transfer("t5", "alice", "carol", "90.00", "USD")) // big on carol
	again := waitRaised(h2, mon2, 5, last)
	if !slices.Equal(again[:4], raised) {
		t.Fatalf("after a restart, the first alerts raised are\n%s\nwant\n%s", strings.Join(again[:4], "\n"), strings.Join(raised, "\n"))
	}
	// Nothing is raised twice, a second later either.
	time.Sleep(1500 * time.Millisecond)
	if n := len(h2.raisedAlerts(t, ledger)); n != 5 {
		t.Fatalf("%d alerts raised, want 5", n)
	}
	if out := h2.runCtlOK(t, ledger, "audit", "verify"); !strings.Contains(out, "clean") {
		t.Fatalf("audit verify:\n%s", out)
	}
}

// TestAlertWebhook: a webhook subscription to AlertRaised events of the
// accounts matching its pattern receives each such alert once, in order,
// signed, and nothing else.
func TestAlertWebhook(t *testing.T) {
	t.Parallel()
	h, hooks := fastWebhooks(t, time.Minute)
	ledger := testenv.Name(t)
	mon := h.monitoring(t)
	h.setup(t, ledger)
	r := newReceiver(t)
	sub := subscribe(t, hooks, r, &ledgerv1.CreateSubscriptionRequest{Ledger: ledger, EventTypes: []string{domain.TypeAlertRaised},
		AccountPattern: "carol"})
	big := &ledgerv1.Rule{Id: "big", Asset: "USD", Kind: &ledgerv1.Rule_Threshold{Threshold: &ledgerv1.ThresholdRule{Amount: "70.00",
		Side: ledgerv1.Side_SIDE_CREDIT}}}
	checkResults(t, "define", h.defineRules(t, mon, ledger, big), want{code: codeCreated})
	h.transferOK(t, ledger, transfer("fund", "alice", "bob", "500.00", "USD")) // big on bob: not carol's
	h.transferOK(t, ledger, transfer("t1", "bob", "carol", "80.00", "USD"))    // big on carol
	h.transferOK(t, ledger, transfer("t2", "bob", "carol", "10.00", "USD"))    // none
	h.transferOK(t, ledger, transfer("t3", "bob", "carol", "90.00", "USD"))    // big on carol
	var want []uint64
	testenv.Eventually(t, 30*time.Second, func() error {
		want = h.raisedPositions(t, ledger, "carol")
		if len(want) != 2 || len(h.raisedPositions(t, ledger, "bob")) != 1 {
			return fmt.Errorf("alerts of carol raised at %v, want 2, and one of bob", want)
		}
		return nil
	})
	testenv.Eventually(t, 30*time.Second, func() error {
		ids, positions, bad := r.got()
		if len(bad) > 0 {
			t.Fatalf("bad deliveries: %v", bad)
		}
		return checkInOrderOnce(ledger, sub.GetId(), ids, positions, want)
	})
}

// raisedPositions are the positions of the AlertRaised events about account.
func (h *harness) raisedPositions(t *testing.T, ledger, account string) []uint64 {
	t.Helper()
	conn, err := pgx.Connect(ctx(t), h.pgURL)
	testenv.NoError(t, err)
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx(t), `SELECT position FROM events WHERE ledger = $1 AND type = $2 AND payload->>'account' = $3
		ORDER BY position`, ledger, domain.TypeAlertRaised, account)
	testenv.NoError(t, err)
	var out []uint64
	var pos int64
	_, err = pgx.ForEachRow(rows, []any{&pos}, func() error { out = append(out, uint64(pos)); return nil })
	testenv.NoError(t, err)
	return out
}

// eventsOf are the payloads of ledger's events of type typ whose payload's
// key holds value, in position order.
func (h *harness) eventsOf(t *testing.T, ledger, typ, key, value string) []string {
	t.Helper()
	conn, err := pgx.Connect(ctx(t), h.pgURL)
	testenv.NoError(t, err)
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx(t), `SELECT payload::text FROM events WHERE ledger = $1 AND type = $2 AND payload->>$3 = $4
		ORDER BY position`, ledger, typ, key, value)
	testenv.NoError(t, err)
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	testenv.NoError(t, err)
	return out
}

// TestHoldAction: a threshold rule with the hold action holds the
// triggering amount from the account to the rule's hold account, right
// after the alert's AlertRaised: the account's available balance drops by
// it. A hold the writer refuses (the account frozen) is recorded on the
// AlertRaised, and nothing is held. audit verify is clean.
func TestHoldAction(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	mon := h.monitoring(t)
	h.setup(t, ledger)
	o, err := h.cmd.OpenAccounts(ctx(t), &ledgerv1.OpenAccountsRequest{Ledger: ledger, Accounts: []*ledgerv1.Account{
		{Id: "review", Asset: "USD", NormalBalance: ledgerv1.NormalBalance_NORMAL_BALANCE_CREDIT}}})
	testenv.NoError(t, err)
	mustCreated(t, o.GetResults()...)
	h.transferOK(t, ledger, transfer("fund", "alice", "bob", "500.00", "USD"))
	big := &ledgerv1.Rule{Id: "big-in", Asset: "USD", AccountPattern: "carol", HoldAccount: "review",
		Actions: []ledgerv1.RuleAction{ledgerv1.RuleAction_RULE_ACTION_HOLD},
		Kind:    &ledgerv1.Rule_Threshold{Threshold: &ledgerv1.ThresholdRule{Amount: "70.00", Side: ledgerv1.Side_SIDE_CREDIT}}}
	bad := &ledgerv1.Rule{Id: "bad", Asset: "USD", HoldAccount: "review", Actions: []ledgerv1.RuleAction{ledgerv1.RuleAction_RULE_ACTION_HOLD},
		Kind: &ledgerv1.Rule_NewCounterparty{NewCounterparty: &ledgerv1.NewCounterpartyRule{}}}
	checkResults(t, "define", h.defineRules(t, mon, ledger, big, bad), want{code: codeCreated},
		want{ledgerv1.ResultCode_RESULT_CODE_INVALID_FIELD, "actions[0]"})

	first := fmt.Sprintf("%s:%d:big-in:carol", ledger, h.transferOK(t, ledger, transfer("t1", "bob", "carol", "80.00", "USD")))
	testenv.Eventually(t, 30*time.Second, func() error {
		if holds := h.eventsOf(t, ledger, "TransferPending", "alert", first); len(holds) != 1 {
			return fmt.Errorf("%d holds of alert %s", len(holds), first)
		}
		return nil
	})
	hold := h.eventsOf(t, ledger, "TransferPending", "alert", first)[0]
	if !strings.Contains(hold, `"debit":"carol","credit":"review","asset":"USD","amount":"80.00"`) ||
		!strings.Contains(hold, `"id":"`+domain.AlertHoldID(first)+`"`) {
		t.Fatalf("hold of alert %s: %s", first, hold)
	}
	// The hold names its alert where it is read.
	holdAt := h.head(t, ledger)
	got, err := h.query.GetTransfers(ctx(t), &ledgerv1.GetTransfersRequest{Ledger: ledger, Ids: []string{domain.AlertHoldID(first)},
		MinPosition: holdAt})
	testenv.NoError(t, err)
	if v := got.GetTransfers(); len(v) != 1 || v[0].GetAlert() != first || v[0].GetKind() != ledgerv1.TransferKind_TRANSFER_KIND_PENDING {
		t.Fatalf("GetTransfers of the hold: %v, want a hold naming alert %s", v, first)
	}
	// A read model projected before projections 0030 gets its holds' alerts
	// from the log.
	pool, err := pgxpool.New(ctx(t), h.pgURL)
	testenv.NoError(t, err)
	defer pool.Close()
	_, err = pool.Exec(ctx(t), `UPDATE transfers SET alert = NULL WHERE id = $1`, domain.AlertHoldID(first))
	testenv.NoError(t, err)
	_, err = pool.Exec(ctx(t), `DELETE FROM schema_migrations WHERE component = 'projections' AND name LIKE '%0030_transfers_alert.sql'`)
	testenv.NoError(t, err)
	testenv.NoError(t, projections.Migrate(ctx(t), pool))
	got, err = h.query.GetTransfers(ctx(t), &ledgerv1.GetTransfersRequest{Ledger: ledger, Ids: []string{domain.AlertHoldID(first)}})
	testenv.NoError(t, err)
	if v := got.GetTransfers(); len(v) != 1 || v[0].GetAlert() != first {
		t.Fatalf("GetTransfers of the hold after 0030 again: %v, want it naming alert %s", v, first)
	}
	// carol (min 0) holds 80.00, all of it held: nothing is available.
	checkResults(t, "a debit of carol, her money held", h.transfers(t, ledger, transfer("t2", "carol", "alice", "1.00", "USD")),
		want{ledgerv1.ResultCode_RESULT_CODE_BELOW_MIN_BALANCE, ""})

	_, err = mon.FreezeAccounts(ctx(t), &ledgerv1.FreezeAccountsRequest{Ledger: ledger, AccountIds: []string{"carol"}, Reason: "review"})
	testenv.NoError(t, err)
	second := fmt.Sprintf("%s:%d:big-in:carol", ledger, h.transferOK(t, ledger, transfer("t3", "bob", "carol", "90.00", "USD")))
	var raised []string
	testenv.Eventually(t, 30*time.Second, func() error {
		if raised = h.eventsOf(t, ledger, domain.TypeAlertRaised, "id", second); len(raised) != 1 {
			return fmt.Errorf("alert %s raised %d times", second, len(raised))
		}
		return nil
	})
	if !strings.Contains(raised[0], `"hold_refused":"`) || !strings.Contains(raised[0], "frozen") {
		t.Fatalf("the AlertRaised of a hold refused does not say why: %s", raised[0])
	}
	if holds := h.eventsOf(t, ledger, "TransferPending", "alert", second); len(holds) != 0 {
		t.Fatalf("a hold refused was placed: %v", holds)
	}
	if out := h.runCtlOK(t, ledger, "audit", "verify"); !strings.Contains(out, "clean") {
		t.Fatalf("audit verify:\n%s", out)
	}
}

// TestAlerterFreezesWhileARaiseIsRefused: an alert the writer refuses to
// raise (a row of the alerts read model naming a rule the ledger never
// defined, as an edit may leave it) stops the raise pass there, every round
// (no alert is raised past it: they are raised in order); a rule's freeze
// on a later alert still happens.
func TestAlerterFreezesWhileARaiseIsRefused(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	mon := h.monitoring(t)
	h.setup(t, ledger)
	conn, err := pgx.Connect(ctx(t), h.pgURL)
	testenv.NoError(t, err)
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx(t), `INSERT INTO alerts (ledger, position, id, rule_id, rule_version, transfer_id, account, counterparties,
		asset, figures, freezes, recorded_at) VALUES ($1, 1, $2, 'ghost', 1, '', 'bob', '{}', 'USD', '{}', false, now())`,
		ledger, ledger+":1:ghost:bob")
	testenv.NoError(t, err)
	h.transferOK(t, ledger, transfer("fund", "alice", "bob", "500.00", "USD"))
	big := &ledgerv1.Rule{Id: "big", Asset: "USD", AccountPattern: "bob", Actions: []ledgerv1.RuleAction{ledgerv1.RuleAction_RULE_ACTION_FREEZE},
		Kind: &ledgerv1.Rule_Threshold{Threshold: &ledgerv1.ThresholdRule{Amount: "100.00", Side: ledgerv1.Side_SIDE_DEBIT}}}
	checkResults(t, "define", h.defineRules(t, mon, ledger, big), want{code: codeCreated})
	alert := fmt.Sprintf("%s:%d:big:bob", ledger, h.transferOK(t, ledger, transfer("t1", "bob", "carol", "150.00", "USD")))
	testenv.Eventually(t, 30*time.Second, func() error {
		if n := h.countEvents(t, ledger, "AccountFrozen", alert); n != 1 {
			return fmt.Errorf("%d freezes for alert %s", n, alert)
		}
		return nil
	})
	if raised := h.raisedAlerts(t, ledger); len(raised) != 0 {
		t.Fatalf("alerts raised past one the writer refuses: %v", raised)
	}
}

// watchBigDebitsOfBob funds bob on ledger (set up) and defines rule "big":
// an alert for each debit of bob over 100.00.
func (h *harness) watchBigDebitsOfBob(t *testing.T, ledger string) {
	t.Helper()
	h.transferOK(t, ledger, transfer("fund", "alice", "bob", "500.00", "USD"))
	big := &ledgerv1.Rule{Id: "big", Asset: "USD", AccountPattern: "bob",
		Kind: &ledgerv1.Rule_Threshold{Threshold: &ledgerv1.ThresholdRule{Amount: "100.00", Side: ledgerv1.Side_SIDE_DEBIT}}}
	checkResults(t, "define", h.defineRules(t, h.monitoring(t), ledger, big), want{code: codeCreated})
}

// holdAlertsBack locks the alerts table until release: reads go on, the
// alerts projection's writes wait, so its readers cannot catch up, as a
// backlog or a rebuild would hold them back.
func holdAlertsBack(t *testing.T, pgURL string) (release func()) {
	t.Helper()
	conn, err := pgx.Connect(ctx(t), pgURL)
	testenv.NoError(t, err)
	t.Cleanup(func() { conn.Close(context.Background()) })
	tx, err := conn.Begin(ctx(t))
	testenv.NoError(t, err)
	_, err = tx.Exec(ctx(t), `LOCK TABLE alerts IN EXCLUSIVE MODE`)
	testenv.NoError(t, err)
	return func() { testenv.NoError(t, tx.Rollback(ctx(t))) }
}

// raisedOnce waits until the log holds one AlertRaised of alert.
func (h *harness) raisedOnce(t *testing.T, ledger, alert string) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, func() error {
		if raised := h.eventsOf(t, ledger, domain.TypeAlertRaised, "id", alert); len(raised) != 1 {
			return fmt.Errorf("alert %s raised %d times", alert, len(raised))
		}
		return nil
	})
}

// TestAlertRaisedAfterTheWriterWentIdle: an alert the projection computes
// only after the ledger's writer went idle (the alerts table locked until
// then) is still raised: the alerter outlives the writer until the readers
// have caught up, then runs a last round, which starts the writer again for
// it. Also when the writer started again (a command) and went idle a second
// time before the readers caught up: a version that compared the head with
// the first stop's took this node's own appends for another node's, and
// never raised the alert.
func TestAlertRaisedAfterTheWriterWentIdle(t *testing.T) {
	t.Parallel()
	for _, idleTimes := range []int{1, 2} {
		t.Run(fmt.Sprintf("idle=%d", idleTimes), func(t *testing.T) {
			t.Parallel()
			h := startIdle(t, "", newKey(t))
			ledger := testenv.Name(t)
			h.setup(t, ledger)
			h.watchBigDebitsOfBob(t, ledger)
			release := holdAlertsBack(t, h.pgURL)
			alert := fmt.Sprintf("%s:%d:big:bob", ledger, h.transferOK(t, ledger, transfer("t1", "bob", "carol", "150.00", "USD")))
			// The writer goes idle after idleFor with nothing to do; the
			// alerter has had nothing to read.
			time.Sleep(10 * idleFor)
			if idleTimes == 2 {
				// A command starts the writer again (no alert of its own),
				// and it goes idle again.
				h.transferOK(t, ledger, transfer("t2", "alice", "carol", "1.00", "USD"))
				time.Sleep(10 * idleFor)
			}
			if raised := h.raisedAlerts(t, ledger); len(raised) != 0 {
				t.Fatalf("alerts raised while the projection could not write them: %v", raised)
			}
			release()
			h.raisedOnce(t, ledger, alert)
		})
	}
}
