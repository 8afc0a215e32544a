package projections_test

import (
	"testing"
	"time"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/internal/testenv"
)

// TestJournalDayBeforeTheEpoch: the daily journal files a posting under its
// effective date (UTC). A transfer effective on 1969-12-30 at noon (a ledger
// with LEDGER_EFFECTIVE_PAST_MAX=0 accepts any past, and an imported log may
// hold one) belongs to 1969-12-30. The projector's day was Unix()/86400,
// which rounds toward zero for negative times and filed it a day late, and
// the reconciled movement's date with it (while the movements projection,
// read for the movements before an account is reconciled, said 1969-12-30).
func TestJournalDayBeforeTheEpoch(t *testing.T) {
	pool := reviewPool(t)
	var l reconLog
	l.setup()
	l.add(domain.MatchingRulesSet{Account: "bank", Rules: domain.DefaultMatchingRules})
	at := time.Date(1969, 12, 30, 12, 0, 0, 0, time.UTC)
	l.transfer("t-1969", 10000, "", at)
	ledger := testenv.Name(t)
	testenv.NoError(t, project(t, pool, ledger, l.recs, 1000))

	var journalDay, movementDay string
	testenv.NoError(t, pool.QueryRow(t.Context(), `SELECT day::text FROM recon_journal WHERE ledger = $1`, ledger).Scan(&journalDay))
	testenv.NoError(t, pool.QueryRow(t.Context(), `SELECT effective_date::text FROM recon_movements WHERE ledger = $1`, ledger).Scan(&movementDay))
	if journalDay != "1969-12-30" || movementDay != "1969-12-30" {
		t.Errorf("journal day %s, reconciled movement's date %s; want 1969-12-30 for a transfer effective %s",
			journalDay, movementDay, at.Format(time.RFC3339))
	}
}
