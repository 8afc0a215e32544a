package projections

import (
	"fmt"
	"testing"
	"time"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
)

// TestServedBalancesBoundedByOneBatch: servedAccountsMax bounds the
// accounts a ledger's served balances hold (docs/architecture.md: "at most
// 65,536 accounts a ledger"). One batch well within the runner's bound
// (BatchMaxDefault records) of transfers of PostingsPerTransfer postings
// moves more accounts than that: the table that starts again for it takes
// every one of them, past the bound.
func TestServedBalancesBoundedByOneBatch(t *testing.T) {
	const (
		ledger   = "bound"
		through  = uint64(1_000_000)
		postings = domain.PostingsPerTransfer
	)
	transfers := servedAccountsMax/(2*postings) + 8 // 520 records
	accounts := 2 * postings * transfers
	if transfers > BatchMaxDefault {
		t.Fatalf("%d records, over a batch's %d", transfers, BatchMaxDefault)
	}
	p := NewMovements()
	p.servedIdle = time.Hour
	p.servedReadAt.Store(time.Now().UnixNano()) // read: batches keep them
	// The ledger's cache after through: every account opened, as a runner
	// that has projected the ledger holds it.
	c := &movementCache{through: through, ledgerNo: 1, clockKnown: true, heads: newHeadTable(), scales: map[string]uint8{"USD": 2}}
	for i := range accounts {
		h, _ := c.heads.Add(fmt.Sprint("acct-", i), "USD")
		h.scale, h.normal, h.position, h.opened = 2, domain.SideDebit, uint64(i+1), uint64(i+1)
	}
	p.keep(ledger, c)
	p.loaded(ledger, through)

	at := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	recs := make([]eventstore.Record, transfers)
	events := make([]domain.Event, transfers)
	for n := range transfers {
		e := domain.TransferCommitted{ID: fmt.Sprint("t-", n), EffectiveAt: at}
		for i := range postings {
			a := 2 * (n*postings + i)
			e.Postings = append(e.Postings, domain.Posting{Debit: fmt.Sprint("acct-", a), Credit: fmt.Sprint("acct-", a+1),
				Asset: "USD", Amount: domain.Amount{Units: domain.UnitsFromInt64(1), Scale: 2}})
		}
		recs[n] = eventstore.Record{Ledger: ledger, Position: through + uint64(n) + 1, Type: "TransferCommitted", RecordedAt: at}
		events[n] = e
	}
	s, err := p.stage(ledger, recs, events)
	if err != nil || s == nil {
		t.Fatalf("stage: %v, %v", s, err)
	}
	b := s.(*movementBatch)
	// What write and the runner do once the transaction has committed.
	p.setPending(ledger, b.served)
	p.committed(ledger, recs[len(recs)-1].Position)
	if n := p.served[ledger].heads.Len(); n > servedAccountsMax {
		t.Fatalf("one batch of %d records (%d postings each) left %d accounts in the served balances, over servedAccountsMax %d",
			transfers, postings, n, servedAccountsMax)
	}
}
