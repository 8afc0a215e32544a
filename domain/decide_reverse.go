package domain

import (
	"fmt"
	"maps"
	"time"
)

// decideReverse undoes all or part of a posted transfer. Reversals add up per
// posting and never exceed the original; a reversal is checked against the
// accounts' bounds and status like any transfer (money already spent cannot
// be taken back past a min_balance).
func decideReverse(s *State, c *ReverseTransfer, now time.Time) (Event, error) {
	if !c.validated {
		panic("domain: Decide on an unvalidated ReverseTransfer")
	}
	if err := checkRetry(s, c.ID, &c.priors, func(prior Event) string {
		p, ok := prior.(TransferReversed)
		switch {
		case !ok:
			return "id"
		case p.TransferID != c.TransferID:
			return "transfer_id"
		case p.Reference != c.Reference:
			return "reference"
		case !maps.Equal(p.Metadata, c.Metadata):
			return "metadata"
		case !c.EffectiveAt.IsZero() && !c.EffectiveAt.Equal(p.EffectiveAt):
			return "effective_at"
		}
		return amountsDiff(p.Postings, c.amounts)
	}); err != nil {
		return nil, err
	}
	if err := checkEffectiveAt(s, c.EffectiveAt, now); err != nil {
		return nil, err
	}
	effectiveAt := c.EffectiveAt
	if effectiveAt.IsZero() {
		effectiveAt = now.UTC().Truncate(time.Microsecond)
	}
	if err := checkOpenPeriod(s, effectiveAt); err != nil {
		return nil, err
	}
	pos, original, err := findReversible(s, c)
	if err != nil {
		return nil, err
	}
	if len(c.amounts) != 0 && len(c.amounts) != len(original) {
		return nil, fieldErrf("amounts", ErrInvalidField, "%d amounts for %d postings", len(c.amounts), len(original))
	}
	// Amounts first: a transfer with nothing left to reverse answers
	// ALREADY_REVERSED whatever has become of its accounts since, and
	// whatever amounts the reversal asks for.
	done := s.reversed[pos]
	if fullyReversed(original, done) {
		return nil, fieldErr("transfer_id", ErrAlreadyReversed)
	}
	back := make([]Posting, len(original))
	anything := false
	for i, p := range original {
		left := leftToReverse(original, done, i)
		amount := left
		if len(c.amounts) != 0 {
			u, err := c.amounts[i].Units(p.Amount.Scale)
			if err != nil {
				return nil, fieldErr(fmt.Sprintf("amounts[%d]", i), err)
			}
			if u.Cmp(left) > 0 {
				return nil, fieldErrf(fmt.Sprintf("amounts[%d]", i), ErrAmountExceedsRemaining, "%s asked, %s left to reverse",
					u.Format(p.Amount.Scale), left.Format(p.Amount.Scale))
			}
			amount = u
		}
		// Not a sum: 64 amounts of 38 digits do not fit 128 bits.
		anything = anything || amount.Sign() > 0
		back[i] = Posting{Debit: p.Credit, Credit: p.Debit, Asset: p.Asset, Amount: Amount{Units: amount, Scale: p.Amount.Scale}}
	}
	if !anything {
		if len(c.amounts) != 0 {
			return nil, fieldErrf("amounts", ErrInvalidAmount, "nothing to reverse")
		}
		return nil, fieldErr("transfer_id", ErrAlreadyReversed)
	}
	fx := make(effects, 0, effectsInline)
	for i, p := range back {
		accounts := postingAccounts
		if p.Amount.Units.Sign() == 0 {
			// A posting a partial reversal leaves alone moves nothing: a
			// freeze of its debit account does not stop it, as it does not
			// stop a post of a hold that leaves a posting at 0.
			accounts = unfrozenPostingAccounts
		}
		debit, credit, err := accounts(s, i, p.Debit, p.Credit, p.Asset)
		if err != nil {
			return nil, err
		}
		var okD, okC bool
		fx, okD = fx.add(debit, p.Amount.Units, Units{}, Units{}, Units{})
		fx, okC = fx.add(credit, Units{}, p.Amount.Units, Units{}, Units{})
		if !okD || !okC {
			return nil, fieldErrf("amounts", ErrBalanceOverflow, "posting %d", i)
		}
	}
	if err := fx.check(); err != nil {
		return nil, err
	}
	return TransferReversed{ID: c.ID, TransferID: c.TransferID, TransferPosition: pos, Postings: back,
		Reference: c.Reference, Metadata: maps.Clone(c.Metadata), EffectiveAt: effectiveAt}, nil
}

// fullyReversed reports whether reversals before took back every posting of
// the original in full (done holds what each posting had reversed). A post
// of nothing has nothing to reverse from the start.
func fullyReversed(original []Posting, done []Units) bool {
	for i := range original {
		if leftToReverse(original, done, i).Sign() > 0 {
			return false
		}
	}
	return true
}

// leftToReverse is what is left to reverse of posting i of original, given
// what each posting had reversed before (done; nil: nothing). Reversals of a
// transfer add up per posting and never exceed the original: this is the
// one place that says how much is left.
func leftToReverse(original []Posting, done []Units, i int) Units {
	left := original[i].Amount.Units
	if done != nil {
		left = left.Sub(done[i])
	}
	return left
}

// ReversiblePostings returns the postings of a posted transfer as a reversal
// undoes them: a TransferCommitted's, or what a PendingPosted posted (a new
// slice); false for any other event.
func ReversiblePostings(e Event) ([]Posting, bool) {
	switch p := e.(type) {
	case TransferCommitted:
		return p.Postings, true
	case PendingPosted:
		posted := make([]Posting, len(p.Postings))
		for i, hp := range p.Postings {
			posted[i] = hp.Posted()
		}
		return posted, true
	}
	return nil, false
}

// CheckReversal checks the postings of a reversal (back) against those of
// its original and what each of them had reversed before (done; nil:
// nothing): each posting undoes the original's (credit to debit, in its
// asset and scale) by at most what is left of it, and something is reversed.
// Decide never yields a reversal that fails it; a log may hold one. It
// returns what each posting will have had reversed once back applies, in a
// new slice.
//
// Errors: ErrInvalidField (postings that do not undo the original's),
// ErrAmountExceedsRemaining, ErrInvalidAmount (a negative amount, or nothing
// reversed); each names the posting.
func CheckReversal(original []Posting, done []Units, back []Posting) ([]Units, error) {
	if len(back) != len(original) {
		return nil, fmt.Errorf("%d postings, the original has %d: %w", len(back), len(original), ErrInvalidField)
	}
	if done != nil && len(done) != len(original) {
		panic(fmt.Sprintf("domain: %d reversed amounts for %d postings", len(done), len(original)))
	}
	next := make([]Units, len(original))
	some := false
	for i, o := range original {
		b := back[i]
		if b.Debit != o.Credit || b.Credit != o.Debit || b.Asset != o.Asset || b.Amount.Scale != o.Amount.Scale {
			return nil, fmt.Errorf("posting %d does not undo the original's: %w", i, ErrInvalidField)
		}
		if b.Amount.Units.Sign() < 0 {
			return nil, fmt.Errorf("posting %d reverses %s: %w", i, b.Amount, ErrInvalidAmount)
		}
		left := leftToReverse(original, done, i)
		if b.Amount.Units.Cmp(left) > 0 {
			return nil, fmt.Errorf("posting %d reverses %s, %s is left: %w", i, b.Amount, left.Format(o.Amount.Scale),
				ErrAmountExceedsRemaining)
		}
		if done != nil {
			next[i] = done[i]
		}
		next[i] = next[i].Add(b.Amount.Units)
		some = some || !b.Amount.Units.IsZero()
	}
	if !some {
		return nil, fmt.Errorf("nothing reversed: %w", ErrInvalidAmount)
	}
	return next, nil
}

// findReversible returns the position and postings of the posted transfer a
// reversal names: a transfer committed as posted, or the post of a hold.
func findReversible(s *State, c *ReverseTransfer) (uint64, []Posting, error) {
	pos, _, exact, ok := s.lookupID(c.TransferID)
	if !ok {
		return 0, nil, fieldErr("transfer_id", ErrTransferNotFound)
	}
	prior, have := c.prior(pos)
	if !have {
		return 0, nil, &NeedPriorError{Position: pos}
	}
	if eventID(prior) != c.TransferID {
		if exact {
			panic(fmt.Sprintf("domain: id %s indexed at %d, which holds %s", c.TransferID, pos, eventID(prior)))
		}
		return 0, nil, fieldErr("transfer_id", ErrTransferNotFound)
	}
	if original, ok := ReversiblePostings(prior); ok {
		return pos, original, nil
	}
	return 0, nil, fieldErrf("transfer_id", ErrNotReversible, "a %s cannot be reversed", prior.EventType())
}
