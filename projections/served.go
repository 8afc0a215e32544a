package projections

import (
	"runtime"
	"sync/atomic"
	"time"

	"github.com/ledgerd/ledger/domain"
)

// ServedBalance is an account's balances as the movements projection
// committed them: what its last statement line says (its opening, zero,
// before any).
type ServedBalance struct {
	Account, Asset                                             string
	Scale                                                      uint8
	Normal                                                     domain.Side
	DebitsPosted, CreditsPosted, DebitsPending, CreditsPending domain.Units
	// Position is the account's last movement, its opening before any.
	Position uint64
}

// servedAccountsMax bounds the accounts a ledger's served balances hold
// (about 120 bytes each, no pointers): a table that would grow past it
// starts again from the batch that filled it, so that what it holds
// follows the accounts in use. An account it does not hold is read from
// PostgreSQL.
const servedAccountsMax = 1 << 16

// servedProcessMax bounds the accounts the served balances of every ledger
// of the process hold together (about 35 MB): a table that would take it
// past the bound starts again, empty, and a read's offer is let go. A
// variable for the tests.
var servedProcessMax int64 = 1 << 18

// servedHeld is how many accounts the served balances of the process hold:
// each table adds what it holds, gives it back when it is replaced, and its
// cleanup gives back what a table dropped with its projector (a runner
// stopped or restarted) held.
var servedHeld atomic.Int64

// servedIdleAfter is how long after the last GetBalances a projector keeps
// its served balances up to date: a ledger whose balances nobody reads from
// memory pays nothing for them (its table starts again, empty, at the next
// read, and fills as its accounts move). A new projector keeps none until
// the first read.
const servedIdleAfter = time.Minute

// servedTable is a ledger's balances as committed at through: those of every
// account the batches committed since the table started opened or moved
// (an account of none of them is not held). Each batch after through must
// be applied to it, or it starts again.
type servedTable struct {
	through uint64
	// ledgerNo is the number the rows it holds were written under
	// (movement_ledgers): a rebuild's swap gives the key another, whose rows
	// may say otherwise at the same position.
	ledgerNo int32
	heads    *headTable
	// held is its share of servedHeld.
	held *atomic.Int64
}

// newServedTable returns an empty table at through under ledgerNo, whose
// share of servedHeld goes back when it is collected.
func newServedTable(through uint64, ledgerNo int32) *servedTable {
	t := &servedTable{through: through, ledgerNo: ledgerNo, heads: newHeadTable(), held: new(atomic.Int64)}
	runtime.AddCleanup(t, func(held *atomic.Int64) { servedHeld.Add(-held.Swap(0)) }, t.held)
	return t
}

// replaceServed makes t key's table in place of the one it had, whose
// share of servedHeld goes back now.
func (p *Movements) replaceServed(key string, t *servedTable) {
	if old := p.served[key]; old != nil {
		servedHeld.Add(-old.held.Swap(0))
	}
	p.served[key] = t
}

// fits says n more accounts fit t's bound and the process's.
func (t *servedTable) fits(n int) bool {
	return t.heads.Len()+n <= servedAccountsMax && servedHeld.Load()+int64(n) <= servedProcessMax
}

// servedRows is what a batch commits of its accounts' balances: each account
// it opened or moved, as of the batch's end.
type servedRows struct {
	// from is the position before the batch's first record, last its last.
	from, last uint64
	// ledgerNo is the number the batch's lines were written under.
	ledgerNo int32
	rows     []ServedBalance
}

// committer is a projector that keeps what its batches committed, told so by
// its runner once the transaction has committed (Movements: the balances it
// serves from memory).
type committer interface {
	// committed says the transaction that moved key's checkpoint to last
	// committed.
	committed(key string, last uint64)
	// loaded says key's checkpoint was read at pos: what is kept may not
	// be the read model's any more.
	loaded(key string, pos uint64)
}

// balanceServer answers balances from a projector's memory.
type balanceServer interface {
	servedBalances(key string, accounts []string) ([]ServedBalance, uint64, bool)
	offer(key string, position uint64, ledgerNo int32, balances []ServedBalance)
}

// servedRows returns the balances of the accounts the fold opened or moved,
// as of its end: each account's last line in key order (order), then the
// accounts opened with no line.
func (f *movementFold) servedRows(order []int32) *servedRows {
	s := &servedRows{ledgerNo: f.ledgerNo, rows: make([]ServedBalance, 0, len(f.opened)+len(order)/2)}
	for _, a := range f.opened {
		h := f.heads.Get(a)
		if h.position != h.opened {
			continue // moved too: its last line says
		}
		s.rows = append(s.rows, ServedBalance{Account: a, Asset: f.heads.Asset(h), Scale: h.scale, Normal: h.normal,
			Position: h.position})
	}
	for n, i := range order {
		l := &f.lines[i]
		if n+1 < len(order) && f.lines[order[n+1]].accountNo == l.accountNo {
			continue
		}
		s.rows = append(s.rows, ServedBalance{Account: l.account, Asset: l.asset, Scale: l.scale, Normal: l.normal,
			DebitsPosted: l.dp, CreditsPosted: l.cp, DebitsPending: l.dq, CreditsPending: l.cq, Position: l.position})
	}
	return s
}

// servedWanted says a GetBalances read the served balances within
// servedIdleAfter: batches keep them up to date.
func (p *Movements) servedWanted() bool {
	return time.Since(time.Unix(0, p.servedReadAt.Load())) < p.servedIdle
}

// setPending holds rows as what key's transaction writing them commits.
func (p *Movements) setPending(key string, rows *servedRows) {
	p.servedMu.Lock()
	defer p.servedMu.Unlock()
	p.pending[key] = rows
}

// dropPending forgets rows, written in a transaction that did not commit.
func (p *Movements) dropPending(key string, rows *servedRows) {
	p.servedMu.Lock()
	defer p.servedMu.Unlock()
	if p.pending[key] == rows {
		delete(p.pending, key)
	}
}

// committed applies the rows the committed transaction wrote to key's served
// balances, which continue from the batch's start or start again at it.
func (p *Movements) committed(key string, last uint64) {
	p.servedMu.Lock()
	defer p.servedMu.Unlock()
	rows := p.pending[key]
	delete(p.pending, key)
	t := p.served[key]
	switch {
	case rows == nil || rows.last != last:
		// Not known what the transaction wrote (or not kept: nobody
		// reads): nothing is held.
		p.emptyServed(key, last)
		return
	case t == nil || t.through != rows.from || t.ledgerNo != rows.ledgerNo || !t.fits(len(rows.rows)):
		t = newServedTable(last, rows.ledgerNo)
		p.replaceServed(key, t)
		if !t.fits(len(rows.rows)) {
			// More than the bounds take, even alone: nothing is held.
			t.ledgerNo = 0
			return
		}
	}
	for i := range rows.rows {
		t.put(&rows.rows[i])
	}
	t.through = last
}

// emptyServed makes key's table an empty one at through (under no number,
// which no offer has).
func (p *Movements) emptyServed(key string, through uint64) {
	if t := p.served[key]; t != nil && t.heads.Len() == 0 {
		t.through, t.ledgerNo = through, 0
		return
	}
	p.replaceServed(key, newServedTable(through, 0))
}

// loaded starts key's served balances again, empty, at pos: the checkpoint
// was read because the runner starts or starts again, after a batch that
// failed (another runner moved the checkpoint, or a rebuild's swap
// renumbered the lines at the same position: what is held may be the rows
// replaced).
func (p *Movements) loaded(key string, pos uint64) {
	p.servedMu.Lock()
	defer p.servedMu.Unlock()
	delete(p.pending, key)
	p.replaceServed(key, newServedTable(pos, 0))
}

// servedBalances returns the balances of accounts as key's last committed
// transaction left them, in order, and its position; ok is false unless
// every one of accounts is held.
func (p *Movements) servedBalances(key string, accounts []string) (balances []ServedBalance, position uint64, ok bool) {
	p.servedReadAt.Store(time.Now().UnixNano())
	p.servedMu.RLock()
	defer p.servedMu.RUnlock()
	t := p.served[key]
	if t == nil {
		return nil, 0, false
	}
	for _, a := range accounts {
		if t.heads.Get(a) == nil {
			return nil, 0, false // before allocating: a miss is common
		}
	}
	out := make([]ServedBalance, len(accounts))
	for i, a := range accounts {
		h := t.heads.Get(a)
		out[i] = ServedBalance{Account: a, Asset: t.heads.Asset(h), Scale: h.scale, Normal: h.normal,
			DebitsPosted: h.dp, CreditsPosted: h.cp, DebitsPending: h.dq, CreditsPending: h.cq, Position: h.position}
	}
	return out, t.through, true
}

// offer adds balances, read from the read model at position (a query's)
// from its lines numbered ledgerNo, to key's served balances if they are at
// that position under that number and read: an account no batch has moved
// since they started is then held from its first read on. Offered at another
// position or number (a read from before a rebuild's swap, which keeps the
// position), before a batch has said the number, or past the bound, they
// are let go.
func (p *Movements) offer(key string, position uint64, ledgerNo int32, balances []ServedBalance) {
	if !p.servedWanted() {
		return
	}
	p.servedMu.Lock()
	defer p.servedMu.Unlock()
	t := p.served[key]
	if t == nil || t.through != position || t.ledgerNo == 0 || t.ledgerNo != ledgerNo || !t.fits(len(balances)) {
		return
	}
	for i := range balances {
		t.put(&balances[i])
	}
}

// put holds b, in place of what t held of its account.
func (t *servedTable) put(b *ServedBalance) {
	h, added := t.heads.Add(b.Account, b.Asset)
	if added {
		t.held.Add(1)
		servedHeld.Add(1)
	}
	h.scale, h.normal, h.position = b.Scale, b.Normal, b.Position
	h.dp, h.cp, h.dq, h.cq = b.DebitsPosted, b.CreditsPosted, b.DebitsPending, b.CreditsPending
}
