package daemon_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/testenv"
)

// TestImportedSubMicrosecondEffectiveTimeAlert: an import accepts a
// transfer whose effective_at has nanoseconds (the import checker holds
// recorded_at to the microsecond, not effective_at; the statements check
// drops the nanoseconds as the read models do). The alerts projection
// stores the alert's effective_at as timestamptz (microseconds), the
// alerter writes that into the log as the AlertRaised's effective_at, and
// verify's replay, which keeps the nanoseconds, then finds the log's
// AlertRaised divergent: ledgerd's own log fails its audit.
func TestImportedSubMicrosecondEffectiveTimeAlert(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	usd := func(cents int64) domain.Amount { return domain.Amount{Units: domain.UnitsFromInt64(cents), Scale: 2} }
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var recs []eventstore.Record
	add := func(id string, e domain.Event) {
		at = at.Add(time.Millisecond)
		recs = append(recs, eventstore.Record{Ledger: ledger, Position: uint64(len(recs) + 1), Type: e.EventType(),
			SchemaVersion: domain.SchemaVersion, RecordedAt: at, CommandID: id, Payload: domain.AppendEvent(nil, e)})
	}
	add("USD", domain.AssetDefined{Code: "USD", Scale: 2})
	add("alice", domain.AccountOpened{ID: "alice", Asset: "USD", Normal: domain.SideCredit})
	add("bob", domain.AccountOpened{ID: "bob", Asset: "USD", Normal: domain.SideCredit})
	add("big", domain.RuleDefined{Version: 1, Rule: domain.Rule{ID: "big", Mode: domain.ModeAfterCommit, Asset: "USD",
		Threshold: &domain.ThresholdRule{Amount: usd(7000), Side: domain.SideCredit}}})
	add("t1", domain.TransferCommitted{ID: "t1", Postings: []domain.Posting{{Debit: "alice", Credit: "bob", Asset: "USD", Amount: usd(8000)}},
		EffectiveAt: time.Date(2026, 3, 1, 0, 0, 0, 123456789, time.UTC)})
	var prev eventstore.Hash
	for i := range recs {
		recs[i].Seal(prev)
		prev = recs[i].Hash
	}
	_, err := importStream(t, h.importClient(t), ledger, recs, 8192)
	testenv.NoError(t, err)

	// The writer runs (and its alerter beside it) once a command comes.
	h.transferOK(t, ledger, transfer("t2", "alice", "bob", "1.00", "USD"))
	testenv.Eventually(t, 30*time.Second, func() error {
		if n := len(h.raisedAlerts(t, ledger)); n != 1 {
			return fmt.Errorf("%d alerts raised, want 1", n)
		}
		return nil
	})
	if code, out, errOut := h.runCtl(t, ledger, "audit", "verify"); code != 0 || !strings.Contains(out, "clean") {
		t.Errorf("audit verify: exit %d\n%s%s", code, out, errOut)
	}
}
