package domain

import (
	"fmt"
	"maps"
	"time"
)

// findHold returns the open hold with id, or why there is none:
// ErrPendingNotFound, ErrPendingAlreadyResolved, ErrPendingExpired (also for a
// hold whose timeout has passed but whose expiry is not applied yet), or a
// *NeedPriorError to confirm the id of a resolved one.
func findHold(s *State, id string, p *priors, now time.Time) (*Hold, error) {
	field := "pending_id"
	if h, ok := s.holds[id]; ok {
		if !h.ExpiresAt.IsZero() && !now.Before(h.ExpiresAt) {
			return nil, fieldErr(field, ErrPendingExpired)
		}
		return h, nil
	}
	pos, status, exact, ok := s.lookupID(id)
	if !ok || status == idDone || status == idPending {
		// Not an id at all; a transfer that was never pending; or another id's
		// hash (an open hold is always in s.holds by its exact id).
		return nil, fieldErr(field, ErrPendingNotFound)
	}
	if !exact {
		prior, have := p.prior(pos)
		if !have {
			return nil, &NeedPriorError{Position: pos}
		}
		if eventID(prior) != id {
			return nil, fieldErr(field, ErrPendingNotFound)
		}
	}
	if status == idPendingExpired {
		return nil, fieldErr(field, ErrPendingExpired)
	}
	return nil, fieldErr(field, ErrPendingAlreadyResolved)
}

func decidePost(s *State, c *PostPending, now time.Time) (Event, error) {
	if !c.validated {
		panic("domain: Decide on an unvalidated PostPending")
	}
	if err := checkRetry(s, c.ID, &c.priors, func(prior Event) string {
		p, ok := prior.(PendingPosted)
		switch {
		case !ok:
			return "id"
		case p.PendingID != c.PendingID:
			return "pending_id"
		case p.Reference != c.Reference:
			return "reference"
		case !maps.Equal(p.Metadata, c.Metadata):
			return "metadata"
		}
		posted := make([]Posting, len(p.Postings))
		for i, hp := range p.Postings {
			posted[i] = hp.Posted()
		}
		return amountsDiff(posted, c.amounts)
	}); err != nil {
		return nil, err
	}
	h, err := findHold(s, c.PendingID, &c.priors, now)
	if err != nil {
		return nil, err
	}
	effectiveAt := now.UTC().Truncate(time.Microsecond)
	if err := checkOpenPeriod(s, effectiveAt); err != nil {
		return nil, err
	}
	if len(c.amounts) != 0 && len(c.amounts) != len(h.Postings) {
		return nil, fieldErrf("amounts", ErrInvalidField, "%d amounts for %d postings", len(c.amounts), len(h.Postings))
	}
	posted := make([]HeldPosting, len(h.Postings))
	fx := make(effects, 0, effectsInline)
	for i, held := range h.Postings {
		amount := held.Amount.Units
		if len(c.amounts) != 0 {
			u, err := c.amounts[i].Units(held.Amount.Scale)
			if err != nil {
				return nil, fieldErr(fmt.Sprintf("amounts[%d]", i), err)
			}
			if u.Cmp(held.Amount.Units) > 0 {
				return nil, fieldErrf(fmt.Sprintf("amounts[%d]", i), ErrAmountExceedsPending, "%s held",
					held.Amount)
			}
			amount = u
		}
		posted[i] = HeldPosting{Debit: held.Debit, Credit: held.Credit, Asset: held.Asset,
			Amount: Amount{Units: amount, Scale: held.Amount.Scale}, Held: held.Amount}
		if amount.Sign() > 0 {
			if err := checkNotFrozen(s, "pending_id", held.Debit); err != nil {
				return nil, err
			}
		}
		debit, credit := s.accounts.Get(held.Debit), s.accounts.Get(held.Credit)
		var okD, okC bool
		fx, okD = fx.add(debit, amount, Units{}, held.Amount.Units.Neg(), Units{})
		fx, okC = fx.add(credit, Units{}, amount, Units{}, held.Amount.Units.Neg())
		if !okD || !okC {
			return nil, fieldErrf("amounts", ErrBalanceOverflow, "posting %d", i)
		}
	}
	if err := fx.check(); err != nil {
		return nil, err
	}
	return PendingPosted{ID: c.ID, PendingID: h.ID, Postings: posted, Reference: c.Reference, Metadata: maps.Clone(c.Metadata),
		EffectiveAt: effectiveAt}, nil
}

func decideVoid(s *State, c *VoidPending, now time.Time) (Event, error) {
	if !c.validated {
		panic("domain: Decide on an unvalidated VoidPending")
	}
	if err := checkRetry(s, c.ID, &c.priors, func(prior Event) string {
		p, ok := prior.(PendingVoided)
		switch {
		case !ok:
			return "id"
		case p.PendingID != c.PendingID:
			return "pending_id"
		case p.Reference != c.Reference:
			return "reference"
		}
		return ""
	}); err != nil {
		return nil, err
	}
	h, err := findHold(s, c.PendingID, &c.priors, now)
	if err != nil {
		return nil, err
	}
	return PendingVoided{ID: c.ID, PendingID: h.ID, Postings: h.Postings, Reference: c.Reference}, nil
}

func decideExpire(s *State, c *ExpirePending, now time.Time) (Event, error) {
	h, ok := s.holds[c.PendingID]
	if !ok || h.ExpiresAt.IsZero() || now.Before(h.ExpiresAt) {
		return nil, ErrNotDue
	}
	return PendingExpired{PendingID: h.ID, Postings: h.Postings}, nil
}
