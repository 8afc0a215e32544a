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
		left := p.Amount.Units
		if done != nil {
			left = left.Sub(done[i])
		}
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
	var fx effects
	for i, p := range back {
		debit, credit, err := postingAccounts(s, i, p.Debit, p.Credit, p.Asset)
		if err != nil {
			return nil, err
		}
		if !fx.add(debit, p.Amount.Units, Units{}, Units{}, Units{}) || !fx.add(credit, Units{}, p.Amount.Units, Units{}, Units{}) {
			return nil, fieldErrf("amounts", ErrBalanceOverflow, "posting %d", i)
		}
	}
	if err := fx.check(); err != nil {
		return nil, err
	}
	effectiveAt := c.EffectiveAt
	if effectiveAt.IsZero() {
		effectiveAt = now.UTC().Truncate(time.Microsecond)
	}
	return TransferReversed{ID: c.ID, TransferID: c.TransferID, TransferPosition: pos, Postings: back,
		Reference: c.Reference, Metadata: c.Metadata, EffectiveAt: effectiveAt}, nil
}

// fullyReversed reports whether reversals before took back every posting of
// the original in full (done holds what each posting had reversed).
func fullyReversed(original []Posting, done []Units) bool {
	if done == nil {
		return false
	}
	for i, p := range original {
		if done[i].Cmp(p.Amount.Units) < 0 {
			return false
		}
	}
	return true
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
	switch p := prior.(type) {
	case TransferCommitted:
		return pos, p.Postings, nil
	case PendingPosted:
		posted := make([]Posting, len(p.Postings))
		for i, hp := range p.Postings {
			posted[i] = hp.Posted()
		}
		return pos, posted, nil
	}
	return 0, nil, fieldErrf("transfer_id", ErrNotReversible, "a %s cannot be reversed", prior.EventType())
}
