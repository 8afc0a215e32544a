package audit_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/audit"
	"github.com/ledgerd/ledger/internal/testenv"
)

// BenchmarkReplay replays, as `ledgerctl audit replay` does, a ledger of
// 200,000 single-posting transfers over 1,000 accounts read back through
// AuditService.ReadEvents: the hash chain checked and every event folded.
func BenchmarkReplay(b *testing.B) {
	h := start(b)
	ledger, events := loadBenchLedger(b, h)
	b.ResetTimer()
	for b.Loop() {
		s, err := audit.Replay(context.Background(), h.serviceLog(ledger), audit.At{})
		testenv.NoError(b, err)
		if s.Position != events {
			b.Fatalf("replayed to %d, want %d", s.Position, events)
		}
	}
	b.ReportMetric(float64(events*uint64(b.N))/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkVerify verifies, as `ledgerctl audit verify` does, the ledger of
// BenchmarkReplay: the log read through ReadEvents (chain, fold, the import
// checks) and every projection compared through the QueryService, the
// statement lines read at once (lines=bulk, as ledgerctl does) or account
// by account (lines=accounts, as from a ledgerd without ReadStatementLines).
func BenchmarkVerify(b *testing.B) {
	h := start(b)
	ledger, events := loadBenchLedger(b, h)
	for _, lines := range []struct {
		name string
		from audit.StatementLines
	}{{"bulk", h.audit}, {"accounts", nil}} {
		b.Run("lines="+lines.name, func(b *testing.B) {
			for b.Loop() {
				rep, err := audit.Verify(context.Background(), h.serviceLog(ledger), h.query, audit.Options{Lines: lines.from})
				testenv.NoError(b, err)
				if rep.Divergence != nil || rep.To != events {
					b.Fatalf("verified to %d: %+v", rep.To, rep.Divergence)
				}
			}
			b.ReportMetric(float64(events*uint64(b.N))/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// loadBenchLedger writes 200,000 single-posting transfers over 1,000
// accounts in batches of 1,000 and waits for every projection: the
// projectors would otherwise share the cores with what is measured.
func loadBenchLedger(b *testing.B, h *harness) (string, uint64) {
	b.Helper()
	const transfers, accounts = 200_000, 1000
	ledger := testenv.Name(b)
	c := context.Background()
	d, err := h.cmd.DefineAsset(c, &ledgerv1.DefineAssetRequest{Ledger: ledger, Code: "USD", Scale: 2})
	testenv.NoError(b, err)
	if d.GetResult().GetCode() != ledgerv1.ResultCode_RESULT_CODE_CREATED {
		b.Fatal(d.GetResult())
	}
	var open []*ledgerv1.Account
	for i := range accounts {
		open = append(open, &ledgerv1.Account{Id: fmt.Sprintf("acc-%d", i), Asset: "USD", NormalBalance: ledgerv1.NormalBalance_NORMAL_BALANCE_CREDIT})
	}
	_, err = h.cmd.OpenAccounts(c, &ledgerv1.OpenAccountsRequest{Ledger: ledger, Accounts: open})
	testenv.NoError(b, err)
	for i := 0; i < transfers; i += 1000 {
		var ts []*ledgerv1.Transfer
		for j := i; j < i+1000; j++ {
			ts = append(ts, &ledgerv1.Transfer{Id: fmt.Sprintf("t-%d", j), Postings: []*ledgerv1.Posting{{
				DebitAccount: fmt.Sprintf("acc-%d", j%accounts), CreditAccount: fmt.Sprintf("acc-%d", (j*7+1)%accounts),
				Amount: fmt.Sprintf("%d.%02d", 1+j%500, j%100), Asset: "USD"}}})
		}
		_, err := h.cmd.CreateTransfers(c, &ledgerv1.CreateTransfersRequest{Ledger: ledger, Transfers: ts})
		testenv.NoError(b, err)
	}
	events := transfers + accounts + 1
	// The projectors catch up first: they would share the two cores.
	testenv.Eventually(b, 5*time.Minute, func() error {
		st, err := h.query.GetProjectionStatus(c, &ledgerv1.GetProjectionStatusRequest{Ledger: ledger})
		if err != nil {
			return err
		}
		for _, p := range st.GetProjections() {
			if p.GetPosition() != uint64(events) {
				return fmt.Errorf("%s at %d of %d", p.GetName(), p.GetPosition(), events)
			}
		}
		return nil
	})
	return ledger, uint64(events)
}
