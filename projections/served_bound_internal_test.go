package projections

import (
	"fmt"
	"runtime"
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

// TestServedBalancesProcessBound: the served balances of every ledger of the
// process hold at most servedProcessMax accounts together. A ledger's batch
// that would take them past it holds nothing; a table replaced gives its
// accounts back at once, and one dropped with its projector when it is
// collected.
func TestServedBalancesProcessBound(t *testing.T) {
	defer func(max int64) { servedProcessMax = max }(servedProcessMax)
	runtime.GC() // what earlier tests dropped goes back first
	time.Sleep(20 * time.Millisecond)
	start := servedHeld.Load()
	servedProcessMax = start + 150
	rows := func(from, last uint64, prefix string) *servedRows {
		s := &servedRows{from: from, last: last, ledgerNo: 1}
		for i := range 100 {
			s.rows = append(s.rows, ServedBalance{Account: fmt.Sprint(prefix, i), Asset: "USD", Scale: 2, Position: last})
		}
		return s
	}
	commit := func(p *Movements, key string, r *servedRows) {
		p.setPending(key, r)
		p.committed(key, r.last)
	}
	held := func(p *Movements, key, account string) bool {
		_, _, ok := p.servedBalances(key, []string{account})
		return ok
	}
	a, b := NewMovements(), NewMovements()
	a.loaded("a", 0)
	b.loaded("b", 0)
	commit(a, "a", rows(0, 10, "a-"))
	commit(b, "b", rows(0, 10, "b-"))
	if !held(a, "a", "a-0") || held(b, "b", "b-0") {
		t.Fatalf("a holds a-0: %v, b holds b-0: %v; want a's 100 held and b's not (150 in all)", held(a, "a", "a-0"), held(b, "b", "b-0"))
	}
	if got := servedHeld.Load() - start; got != 100 {
		t.Fatalf("%d accounts counted, want a's 100", got)
	}
	a.loaded("a", 10) // a's table replaced: its accounts go back
	if got := servedHeld.Load() - start; got != 0 {
		t.Fatalf("%d accounts counted after a's table was replaced, want 0", got)
	}
	commit(b, "b", rows(10, 20, "b-"))
	if !held(b, "b", "b-0") {
		t.Fatal("b's next batch not held with room for it")
	}
	b = nil // dropped with its projector: collected, its accounts go back
	deadline := time.Now().Add(10 * time.Second)
	for servedHeld.Load() != start {
		if time.Now().After(deadline) {
			t.Fatalf("%d accounts still counted after b was collected, want 0", servedHeld.Load()-start)
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}
