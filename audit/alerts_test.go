package audit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/audit"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/testenv"
)

// alertsWorkload runs a workload on ledger under two after-commit rules
// that fire often, and waits until ledgerd's alerter raised every alert in
// the log (an AlertRaised each).
func alertsWorkload(t *testing.T, h *harness, ledger string, seed uint64) {
	t.Helper()
	w := newWorkload(t, h, ledger, seed)
	resp, err := h.mon.DefineRules(ctx(t), &ledgerv1.DefineRulesRequest{Ledger: ledger, Rules: []*ledgerv1.Rule{
		{Id: "big", Asset: "USD", Kind: &ledgerv1.Rule_Threshold{Threshold: &ledgerv1.ThresholdRule{Amount: "1.00"}}},
		{Id: "new", Asset: "EUR", Kind: &ledgerv1.Rule_NewCounterparty{NewCounterparty: &ledgerv1.NewCounterpartyRule{}}},
	}})
	testenv.NoError(t, err)
	mustCreated(t, resp.GetResults()...)
	w.run(90)
	h.caughtUp(t, ledger)
	testenv.Eventually(t, 30*time.Second, func() error {
		var alerts, raised int
		testenv.NoError(t, h.pool.QueryRow(ctx(t), `SELECT count(*) FROM alerts WHERE ledger = $1`, ledger).Scan(&alerts))
		testenv.NoError(t, h.pool.QueryRow(ctx(t), `SELECT count(*) FROM events WHERE ledger = $1 AND type = $2`,
			ledger, domain.TypeAlertRaised).Scan(&raised))
		if alerts < 4 || raised != alerts {
			return fmt.Errorf("%d alerts raised of %d (the workload should fire at least 4)", raised, alerts)
		}
		return nil
	})
}

// TestVerifyCatchesEditedAlert: with after-commit rules in the log, verify
// compares the alerts served with a replay; an alert's figures edited, or
// an alert deleted, is a divergence at its position naming it.
func TestVerifyCatchesEditedAlert(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	// Every alert raised before the edit: the alerter would put an edited
	// one into the log, which is TestVerifyCatchesForgedAlertRaised's case.
	alertsWorkload(t, h, ledger, 7)
	rep := h.verify(t, ledger, audit.Options{})
	mustClean(t, "before the edit", rep)

	var (
		id  string
		pos int64
		n   int
	)
	testenv.NoError(t, h.pool.QueryRow(ctx(t), `SELECT count(*) FROM alerts WHERE ledger = $1`, ledger).Scan(&n))
	if n < 4 {
		t.Fatalf("%d alerts: the workload should fire the rules more", n)
	}
	testenv.NoError(t, h.pool.QueryRow(ctx(t), `SELECT id, position FROM alerts WHERE ledger = $1 ORDER BY position, id
		OFFSET $2 LIMIT 1`, ledger, n/2).Scan(&id, &pos))
	h.exec(t, `UPDATE alerts SET figures = figures || '{"amount": "0.01"}' WHERE ledger = $1 AND id = $2`, ledger, id)
	rep = h.verify(t, ledger, audit.Options{})
	checkDivergence(t, rep, audit.Divergence{Kind: audit.KindAlert, Position: uint64(pos), Field: "figures"})
	if rep.Divergence.Detail != "alert "+id+" (alerts projection)" {
		t.Errorf("divergence detail %q does not name alert %s", rep.Divergence.Detail, id)
	}

	h.exec(t, `DELETE FROM alerts WHERE ledger = $1 AND id = $2`, ledger, id)
	checkDivergence(t, h.verify(t, ledger, audit.Options{}), audit.Divergence{Kind: audit.KindAlert, Position: uint64(pos), Field: "id"})
}

// TestVerifyCatchesEditedAlertRaise: verify compares where each alert was
// raised (ListAlerts' raised_position) with the AlertRaised events it
// replays: clean as the projector wrote it, a divergence naming the alert
// when the mark is moved or taken back.
func TestVerifyCatchesEditedAlertRaise(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	alertsWorkload(t, h, ledger, 11)
	mustClean(t, "before the edit", h.verify(t, ledger, audit.Options{}))

	var (
		id  string
		pos int64
		n   int
	)
	testenv.NoError(t, h.pool.QueryRow(ctx(t), `SELECT count(*) FROM alerts WHERE ledger = $1`, ledger).Scan(&n))
	testenv.NoError(t, h.pool.QueryRow(ctx(t), `SELECT id, position FROM alerts WHERE ledger = $1 ORDER BY position, id
		OFFSET $2 LIMIT 1`, ledger, n/2).Scan(&id, &pos))
	for _, edit := range []string{"raised + 1", "NULL"} {
		h.exec(t, `UPDATE alerts SET raised = `+edit+` WHERE ledger = $1 AND id = $2`, ledger, id)
		rep := h.verify(t, ledger, audit.Options{})
		checkDivergence(t, rep, audit.Divergence{Kind: audit.KindAlert, Position: uint64(pos), Field: "raised_position"})
		if rep.Divergence.Detail != "alert "+id+" (alerts projection)" {
			t.Errorf("raised = %s: divergence detail %q does not name alert %s", edit, rep.Divergence.Detail, id)
		}
		h.exec(t, `UPDATE alerts a SET raised = e.position FROM events e WHERE a.ledger = $1 AND a.id = $2
			AND e.ledger = a.ledger AND e.type = 'AlertRaised' AND e.payload->>'id' = a.id`, ledger, id)
	}
	mustClean(t, "after the mark is put back", h.verify(t, ledger, audit.Options{}))
	// A server before raised_position serves none, and says nothing of
	// it: verify does not take every raised alert for a divergence.
	mustClean(t, "from a server before raised_position", h.verify(t, ledger, audit.Options{Alerts: olderAlerts{h.mon}}))
}

// olderAlerts answers ListAlerts as a server before raised_position.
type olderAlerts struct{ audit.Alerts }

func (o olderAlerts) ListAlerts(ctx context.Context, in *ledgerv1.ListAlertsRequest,
	opts ...grpc.CallOption) (*ledgerv1.ListAlertsResponse, error) {
	resp, err := o.Alerts.ListAlerts(ctx, in, opts...)
	if err != nil {
		return nil, err
	}
	resp.RaisedPositionsServed = false
	for _, a := range resp.GetAlerts() {
		a.RaisedPosition = 0
	}
	return resp, nil
}

// TestVerifyCatchesForgedAlertRaised: an AlertRaised says what the alerts
// projection said when the alerter read it, and the log keeps it. One that
// does not raise the replay's next alert as the replay has it (its figures
// edited, or another alert in its place), its chain sealed again, is an
// alert divergence at its own position, found from the log alone.
func TestVerifyCatchesForgedAlertRaised(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	alertsWorkload(t, h, ledger, 11)
	recs := h.exportRecords(t, ledger)
	mustClean(t, "the export", verifyRecords(t, recs))

	var raised []int
	for i := range recs {
		if recs[i].Type == domain.TypeAlertRaised {
			raised = append(raised, i)
		}
	}
	if len(raised) < 4 {
		t.Fatalf("%d alerts raised", len(raised))
	}
	forge := func(at int, edit func(e domain.Event) domain.Event) []eventstore.Record {
		forged := append([]eventstore.Record(nil), recs...)
		e, err := domain.UnmarshalEvent(forged[at].Type, forged[at].SchemaVersion, forged[at].Payload)
		testenv.NoError(t, err)
		forged[at].Payload, err = domain.MarshalEvent(edit(e))
		testenv.NoError(t, err)
		for i := at; i < len(forged); i++ {
			forged[i].Seal(forged[i-1].Hash)
		}
		return forged
	}
	// A client's hold made a rule's (which no rule counts, so a way to
	// move money unseen), with no AlertRaised asking for it.
	hold := slices.IndexFunc(recs, func(r eventstore.Record) bool { return r.Type == domain.TypeTransferPending })
	if hold < 1 {
		t.Fatal("the workload placed no hold")
	}
	checkDivergence(t, verifyRecords(t, forge(hold, func(e domain.Event) domain.Event {
		p := e.(domain.TransferPending)
		p.Alert = ledger + ":1:big:usd:1"
		return p
	})), audit.Divergence{Kind: audit.KindInvariant, Position: recs[hold].Position})

	at := raised[len(raised)/2]
	rep := verifyRecords(t, forge(at, func(e domain.Event) domain.Event {
		a := e.(domain.AlertRaised)
		a.Figures["amount"] = "0.01"
		return a
	}))
	checkDivergence(t, rep, audit.Divergence{Kind: audit.KindAlert, Position: recs[at].Position, Field: "figures"})

	// The next alert's event raising the one after it: the writer would
	// take it (it is after the last raised), the replay does not.
	next := recs[raised[len(raised)/2+1]].Payload
	rep = verifyRecords(t, forge(at, func(domain.Event) domain.Event {
		var a domain.AlertRaised
		testenv.NoError(t, json.Unmarshal(next, &a))
		return a
	}))
	checkDivergence(t, rep, audit.Divergence{Kind: audit.KindAlert, Position: recs[at].Position, Field: "id"})
}

// TestVerifyCatchesForgedAlertFreeze: a freeze for an alert (AccountFrozen
// with its alert) says what the alerts read model said; the writer cannot
// check it. One edited to freeze another account, its chain sealed again,
// is an alert divergence (field freeze) found from the log alone.
func TestVerifyCatchesForgedAlertFreeze(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	newWorkload(t, h, ledger, 3).run(30)
	resp, err := h.mon.DefineRules(ctx(t), &ledgerv1.DefineRulesRequest{Ledger: ledger, Rules: []*ledgerv1.Rule{
		{Id: "big", Asset: "USD", AccountPattern: "usd:1", Actions: []ledgerv1.RuleAction{ledgerv1.RuleAction_RULE_ACTION_FREEZE},
			Kind: &ledgerv1.Rule_Threshold{Threshold: &ledgerv1.ThresholdRule{Amount: "1.00", Side: ledgerv1.Side_SIDE_CREDIT}}}}})
	testenv.NoError(t, err)
	mustCreated(t, resp.GetResults()...)
	tr, err := h.cmd.CreateTransfers(ctx(t), &ledgerv1.CreateTransfersRequest{Ledger: ledger, Transfers: []*ledgerv1.Transfer{
		{Id: "freeze-me", Postings: []*ledgerv1.Posting{{DebitAccount: "usd:0", CreditAccount: "usd:1", Amount: "5.00", Asset: "USD"}}}}})
	testenv.NoError(t, err)
	mustCreated(t, tr.GetResults()...)
	testenv.Eventually(t, 30*time.Second, func() error {
		var n int
		testenv.NoError(t, h.pool.QueryRow(ctx(t), `SELECT count(*) FROM events WHERE ledger = $1 AND type = $2 AND payload->>'alert' IS NOT NULL`,
			ledger, domain.TypeAccountFrozen).Scan(&n))
		if n != 1 {
			return fmt.Errorf("%d freezes for alerts, want 1", n)
		}
		return nil
	})
	recs := h.exportRecords(t, ledger)
	mustClean(t, "the export", verifyRecords(t, recs))
	at := slices.IndexFunc(recs, func(r eventstore.Record) bool {
		return r.Type == domain.TypeAccountFrozen && bytes.Contains(r.Payload, []byte(`"alert":`))
	})
	forged := append([]eventstore.Record(nil), recs...)
	e, err := domain.UnmarshalEvent(forged[at].Type, forged[at].SchemaVersion, forged[at].Payload)
	testenv.NoError(t, err)
	f := e.(domain.AccountFrozen)
	f.ID = "usd:0"
	forged[at].Payload, err = domain.MarshalEvent(f)
	testenv.NoError(t, err)
	for i := at; i < len(forged); i++ {
		forged[i].Seal(forged[i-1].Hash)
	}
	checkDivergence(t, verifyRecords(t, forged), audit.Divergence{Kind: audit.KindAlert, Position: recs[at].Position, Field: "freeze"})
}
