package audit_test

import (
	"testing"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/audit"
	"github.com/ledgerd/ledger/internal/testenv"
)

// TestVerifyCatchesEditedAlert: with after-commit rules in the log, verify
// compares the alerts served with a replay; an alert's figures edited, or
// an alert deleted, is a divergence at its position naming it.
func TestVerifyCatchesEditedAlert(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	w := newWorkload(t, h, ledger, 7)
	resp, err := h.mon.DefineRules(ctx(t), &ledgerv1.DefineRulesRequest{Ledger: ledger, Rules: []*ledgerv1.Rule{
		{Id: "big", Asset: "USD", Kind: &ledgerv1.Rule_Threshold{Threshold: &ledgerv1.ThresholdRule{Amount: "1.00"}}},
		{Id: "new", Asset: "EUR", Kind: &ledgerv1.Rule_NewCounterparty{NewCounterparty: &ledgerv1.NewCounterpartyRule{}}},
	}})
	testenv.NoError(t, err)
	mustCreated(t, resp.GetResults()...)
	w.run(90)
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
