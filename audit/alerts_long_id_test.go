package audit_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/audit"
	"github.com/ledgerd/ledger/audit/filelog"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/internal/testenv"
)

// longAlertLedger sets up ledger with an account whose id (valid: 120
// bytes) makes its alert ids longer than an id (IDLenMax), defines an
// after-commit rule on it, makes it fire, and waits until ledgerd's alerter
// raised the alert in the log.
func longAlertLedger(t *testing.T, h *harness, ledger string) string {
	t.Helper()
	long := "users:" + strings.Repeat("x", 114)
	if !domain.ValidID(long) {
		t.Fatalf("%q is not a valid account id", long)
	}
	a, err := h.cmd.DefineAsset(ctx(t), &ledgerv1.DefineAssetRequest{Ledger: ledger, Code: "USD", Scale: 2})
	testenv.NoError(t, err)
	mustCreated(t, a.GetResult())
	o, err := h.cmd.OpenAccounts(ctx(t), &ledgerv1.OpenAccountsRequest{Ledger: ledger, Accounts: []*ledgerv1.Account{
		{Id: "world", Asset: "USD", NormalBalance: ledgerv1.NormalBalance_NORMAL_BALANCE_DEBIT},
		{Id: long, Asset: "USD", NormalBalance: ledgerv1.NormalBalance_NORMAL_BALANCE_CREDIT}}})
	testenv.NoError(t, err)
	mustCreated(t, o.GetResults()...)
	r, err := h.mon.DefineRules(ctx(t), &ledgerv1.DefineRulesRequest{Ledger: ledger, Rules: []*ledgerv1.Rule{
		{Id: "big", Asset: "USD", Kind: &ledgerv1.Rule_Threshold{Threshold: &ledgerv1.ThresholdRule{Amount: "1.00"}}}}})
	testenv.NoError(t, err)
	mustCreated(t, r.GetResults()...)
	tr, err := h.cmd.CreateTransfers(ctx(t), &ledgerv1.CreateTransfersRequest{Ledger: ledger, Transfers: []*ledgerv1.Transfer{
		{Id: "t1", Postings: []*ledgerv1.Posting{{DebitAccount: "world", CreditAccount: long, Amount: "5.00", Asset: "USD"}}}}})
	testenv.NoError(t, err)
	mustCreated(t, tr.GetResults()...)
	testenv.Eventually(t, 30*time.Second, func() error {
		var raised int
		testenv.NoError(t, h.pool.QueryRow(ctx(t), `SELECT count(*) FROM events WHERE ledger = $1 AND type = $2`,
			ledger, domain.TypeAlertRaised).Scan(&raised))
		if raised != 2 { // on world and on the long account
			return fmt.Errorf("%d alerts raised, want 2", raised)
		}
		return nil
	})
	h.caughtUp(t, ledger)
	return long
}

// TestVerifyCleanWithALongAlertID: an alert id is
// <ledger>:<position>:<rule>:<account>, up to AlertIDLenMax (512) bytes, and
// the writer records the AlertRaised with the alert id as its command id
// (RaiseAlert.CommandID). An import, and verify through the import checker,
// hold every command id to an id's pattern of at most IDLenMax (128)
// bytes: a log ledgerd wrote by itself, with valid ids only, is then a
// divergence for verify and refused by an import.
func TestVerifyCleanWithALongAlertID(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	longAlertLedger(t, h, ledger)
	mustClean(t, "verify through ledgerd", h.verify(t, ledger, audit.Options{}))

	out := h.export(t, ledger)
	rep, err := audit.Verify(ctx(t), &filelog.Log{Path: writeFile(t, out)}, nil, audit.Options{})
	testenv.NoError(t, err)
	mustClean(t, "verify of the export", rep)

	recs := h.exportRecords(t, ledger)
	if _, err := importCheck(recs); err != nil {
		t.Fatalf("import check of ledgerd's own log: %v", err)
	}
}
