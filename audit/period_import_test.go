package audit_test

import (
	"errors"
	"testing"
	"time"

	"github.com/ledgerd/ledger/audit"
	"github.com/ledgerd/ledger/domain"
)

// TestImportCheckerRefusesABackdatedTransferIntoAClosedPeriod: a log in which
// a transfer recorded after a PeriodClosed takes effect before the close's
// end is one no writer can write (Decide refuses it with PERIOD_CLOSED), and
// it changes the figures of a closed period (DESIGN §11: closed periods are
// immutable). The import checker must refuse it like any other event a writer
// would not have written.
func TestImportCheckerRefusesABackdatedTransferIntoAClosedPeriod(t *testing.T) {
	t.Parallel()
	recs := importSampleLog()
	// The close, as the writer would decide it on the sample's state.
	s := domain.NewState()
	for i := range recs {
		e, err := domain.UnmarshalEvent(recs[i].Type, recs[i].SchemaVersion, recs[i].Payload)
		if err != nil {
			t.Fatal(err)
		}
		s.Evolve(recs[i].Position, e)
	}
	end := time.Date(2025, 3, 2, 0, 0, 0, 0, time.UTC)
	cmd := &domain.ClosePeriod{End: end}
	if err := cmd.Validate(); err != nil {
		t.Fatal(err)
	}
	closeEvent, err := domain.Decide(s, cmd, end.Add(time.Hour))
	if err != nil {
		t.Fatalf("close: %v", err)
	}
	l := &importLog{ledger: "books", at: recs[len(recs)-1].RecordedAt, recs: recs}
	l.add(cmd.CommandID(), closeEvent)
	// Recorded after the close, effective inside the closed period.
	l.add("late", domain.TransferCommitted{ID: "late", Postings: []domain.Posting{importPosting("alice", "bob", 5000)},
		EffectiveAt: end.Add(-12 * time.Hour)})
	importReseal(l.recs)
	_, err = importCheck(l.recs)
	var ie *audit.ImportError
	if !errors.As(err, &ie) || ie.Position != uint64(len(l.recs)) {
		t.Fatalf("got %v, want the transfer at position %d refused: it takes effect in the period closed at %d",
			err, len(l.recs), len(l.recs)-1)
	}
}

// TestImportCheckerRefusesAForgedClosingDigest: a PeriodClosed records the
// trial balance and the closing digest of the state at its position; a log
// whose close states other figures (here, the trial balance and digest of a
// different state) is not one a writer wrote, and ListPeriods would serve the
// forged figures as the period's. The checker holds the state: it must refuse
// the close.
func TestImportCheckerRefusesAForgedClosingDigest(t *testing.T) {
	t.Parallel()
	recs := importSampleLog()
	end := time.Date(2025, 3, 2, 0, 0, 0, 0, time.UTC)
	forged := domain.PeriodClosed{End: end,
		TrialBalance:  []domain.PeriodAssetTotal{{Asset: "USD", DebitsPosted: "999.00", CreditsPosted: "999.00"}},
		Accounts:      2,
		ClosingDigest: "0000000000000000000000000000000000000000000000000000000000000000"}
	l := &importLog{ledger: "books", at: recs[len(recs)-1].RecordedAt, recs: recs}
	l.add(end.Format(time.RFC3339Nano), forged)
	importReseal(l.recs)
	_, err := importCheck(l.recs)
	var ie *audit.ImportError
	if !errors.As(err, &ie) || ie.Position != uint64(len(l.recs)) {
		t.Fatalf("got %v, want the close at position %d refused: its trial balance and digest are not the state's", err, len(l.recs))
	}
}
