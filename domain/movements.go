package domain

import "time"

// Movement is what an event does to one account's balances: one of its four
// totals (Side and Pending say which) moves by Amount, signed. Every fold of
// balances (the writer's state, the projections, the trial balance, the
// auditor) reads events through AppendMovements, so the rules of what an
// event moves are written once, here.
//
// A posting moves two accounts by the same amount, its debit account first:
// per asset, Σ debits = Σ credits holds movement pair by movement pair.
type Movement struct {
	// Account is the account moved; Counterparty the other side of its
	// posting.
	Account, Counterparty string
	Asset                 string
	// Transfer is the id of the transfer the movement belongs to: the
	// transfer, hold, post, void or reversal the event records, or for an
	// expiry the hold that expired.
	Transfer string
	// Side is the side of the account the amount moves: SideDebit moves its
	// debits, SideCredit its credits.
	Side Side
	// Pending says the amount moves the pending total (a hold, or its
	// release), not the posted one.
	Pending bool
	// Amount is signed: a release of a hold is negative. Posted amounts are
	// never negative; a post of nothing of a held posting yields no posted
	// movements, only the release.
	Amount Units
	Scale  uint8
	// Posting is the index of the posting in the event.
	Posting int
}

// MovementsPerPostingMax is the most movements one posting of an event
// yields: a post releases what was held (two movements) and posts (two).
const MovementsPerPostingMax = 4

// AppendMovements appends the movements of e to dst and returns it: none for
// an event that moves no balance. Callers on hot paths pass the same dst
// (truncated) for every event, so folding allocates nothing per event.
//
// Per posting, in order: a transfer or reversal posts its amount; a hold
// holds it (pending); a post releases what was held, then posts what it posts
// unless that is zero; a void or an expiry releases what was held.
func AppendMovements(dst []Movement, e Event) []Movement {
	for i := 0; ; i++ {
		var ok bool
		if dst, ok = appendPostingMovements(dst, e, i); !ok {
			return dst
		}
	}
}

// appendPostingMovements appends the movements of posting i of e (at most
// MovementsPerPostingMax), and false when e has no posting i.
func appendPostingMovements(dst []Movement, e Event, i int) ([]Movement, bool) {
	switch e := e.(type) {
	case TransferCommitted:
		if i < len(e.Postings) {
			return appendPosting(dst, &e.Postings[i], e.ID, i, false, false), true
		}
	case TransferReversed:
		if i < len(e.Postings) {
			return appendPosting(dst, &e.Postings[i], e.ID, i, false, false), true
		}
	case TransferPending:
		if i < len(e.Postings) {
			return appendPosting(dst, &e.Postings[i], e.ID, i, true, false), true
		}
	case PendingPosted:
		if i < len(e.Postings) {
			hp := &e.Postings[i]
			released := hp.Released()
			dst = appendPosting(dst, &released, e.ID, i, true, true)
			if hp.Amount.Units.IsZero() {
				return dst, true // posted nothing of this posting: the release is its only movement
			}
			posted := hp.Posted()
			return appendPosting(dst, &posted, e.ID, i, false, false), true
		}
	case PendingVoided:
		if i < len(e.Postings) {
			return appendPosting(dst, &e.Postings[i], e.ID, i, true, true), true
		}
	case PendingExpired:
		if i < len(e.Postings) {
			return appendPosting(dst, &e.Postings[i], e.PendingID, i, true, true), true
		}
	}
	return dst, false
}

// Movements returns the movements of e in a new slice: AppendMovements for
// callers off the hot path.
func Movements(e Event) []Movement { return AppendMovements(nil, e) }

// appendPosting appends a posting's two movements, debit then credit; a
// release moves the amount out.
func appendPosting(dst []Movement, p *Posting, transfer string, i int, pending, release bool) []Movement {
	amount := p.Amount.Units
	if release {
		amount = amount.Neg()
	}
	return append(dst,
		Movement{Account: p.Debit, Counterparty: p.Credit, Asset: p.Asset, Transfer: transfer, Side: SideDebit,
			Pending: pending, Amount: amount, Scale: p.Amount.Scale, Posting: i},
		Movement{Account: p.Credit, Counterparty: p.Debit, Asset: p.Asset, Transfer: transfer, Side: SideCredit,
			Pending: pending, Amount: amount, Scale: p.Amount.Scale, Posting: i})
}

// Deltas returns the movement as signed changes of an account's four totals:
// debits posted, credits posted, debits pending, credits pending. Three of
// them are zero.
func (m *Movement) Deltas() (dp, cp, dq, cq Units) {
	switch {
	case m.Side == SideDebit && !m.Pending:
		dp = m.Amount
	case !m.Pending:
		cp = m.Amount
	case m.Side == SideDebit:
		dq = m.Amount
	default:
		cq = m.Amount
	}
	return dp, cp, dq, cq
}

// Total returns which of an account's four totals the movement moves.
func (m *Movement) Total(a *Account) *Units {
	switch {
	case m.Side == SideDebit && !m.Pending:
		return &a.DebitsPosted
	case !m.Pending:
		return &a.CreditsPosted
	case m.Side == SideDebit:
		return &a.DebitsPending
	default:
		return &a.CreditsPending
	}
}

// BalanceEventTypes returns the types of the events that have movements: a
// reader that folds balances alone may read only these from a log.
func BalanceEventTypes() []string {
	return []string{TypeTransferCommitted, TypeTransferReversed, TypeTransferPending, TypePendingPosted,
		TypePendingVoided, TypePendingExpired}
}

// TransferHeader is what the movements of one event share, beside their
// amounts: the transfer they belong to and its labels.
type TransferHeader struct {
	// ID is Movement.Transfer.
	ID        string
	Reference string
	Metadata  map[string]string
	// EffectiveAt is the business time; zero for a void or an expiry, which
	// take effect when recorded.
	EffectiveAt time.Time
}

// Effective is the time the movements take effect: EffectiveAt, or the
// event's recorded time when it is zero. The statement lines store it, and
// the auditor compares them with it.
func (h *TransferHeader) Effective(recorded time.Time) time.Time {
	if h.EffectiveAt.IsZero() {
		return recorded
	}
	return h.EffectiveAt
}

// HeaderOf returns the header of an event that moves balances, and false for
// any other event.
func HeaderOf(e Event) (TransferHeader, bool) {
	switch e := e.(type) {
	case TransferCommitted:
		return TransferHeader{ID: e.ID, Reference: e.Reference, Metadata: e.Metadata, EffectiveAt: e.EffectiveAt}, true
	case TransferReversed:
		return TransferHeader{ID: e.ID, Reference: e.Reference, Metadata: e.Metadata, EffectiveAt: e.EffectiveAt}, true
	case TransferPending:
		return TransferHeader{ID: e.ID, Reference: e.Reference, Metadata: e.Metadata, EffectiveAt: e.EffectiveAt}, true
	case PendingPosted:
		return TransferHeader{ID: e.ID, Reference: e.Reference, Metadata: e.Metadata, EffectiveAt: e.EffectiveAt}, true
	case PendingVoided:
		return TransferHeader{ID: e.ID, Reference: e.Reference}, true
	case PendingExpired:
		return TransferHeader{ID: e.PendingID}, true
	}
	return TransferHeader{}, false
}
