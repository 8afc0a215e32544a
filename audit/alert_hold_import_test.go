package audit_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/ledgerd/ledger/audit"
	"github.com/ledgerd/ledger/audit/filelog"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/testenv"
)

// TestImportRefusesAHoldNoAlertAsksFor: a client's hold in an exported
// log made a rule's (alert set: no rule counts it), its chain sealed
// again, is refused by the import's checker (which ledgerd's ImportEvents
// and ledgerctl import run) and is an invariant divergence for verify,
// which runs the same checks (domain.CheckAlertHolds).
func TestImportRefusesAHoldNoAlertAsksFor(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	alertsWorkload(t, h, ledger, 11)
	recs := h.exportRecords(t, ledger)
	at := slices.IndexFunc(recs, func(r eventstore.Record) bool { return r.Type == domain.TypeTransferPending })
	if at < 1 {
		t.Fatal("the workload placed no hold")
	}
	forged := append([]eventstore.Record(nil), recs...)
	e, err := domain.UnmarshalEvent(forged[at].Type, forged[at].SchemaVersion, forged[at].Payload)
	testenv.NoError(t, err)
	p := e.(domain.TransferPending)
	p.Alert = ledger + ":1:big:usd:1"
	forged[at].Payload, err = domain.MarshalEvent(p)
	testenv.NoError(t, err)
	for i := at; i < len(forged); i++ {
		forged[i].Seal(forged[i-1].Hash)
	}

	out, err := audit.AppendExport(nil, forged)
	testenv.NoError(t, err)
	rep, err := audit.Verify(ctx(t), &filelog.Log{Path: writeFile(t, out)}, nil, audit.Options{})
	testenv.NoError(t, err)
	checkDivergence(t, rep, audit.Divergence{Kind: audit.KindInvariant, Position: forged[at].Position})

	c := audit.NewImportChecker(func(pos uint64) (eventstore.Record, error) { return forged[pos-1], nil })
	for i := range forged {
		if err := c.Check(&forged[i]); err != nil {
			var ie *audit.ImportError
			if !errors.As(err, &ie) || ie.Position != forged[at].Position {
				t.Fatalf("import refused %v, want a refusal at %d", err, forged[at].Position)
			}
			return
		}
	}
	t.Fatalf("the import takes a log whose hold at %d claims alert %s, which no AlertRaised asks for (verify: %v)",
		forged[at].Position, p.Alert, rep.Divergence)
}
