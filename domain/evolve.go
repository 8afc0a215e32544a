package domain

import (
	"container/heap"
	"fmt"
)

// Evolve applies the event at position pos. It never fails: events were decided
// against this state, or read from a log that was. A broken invariant is a bug
// or a corrupt log, and it panics rather than carry on with wrong balances.
// While the state records (Begin), every change can be undone.
func (s *State) Evolve(pos uint64, e Event) {
	if pos != s.position+1 {
		panic(fmt.Sprintf("domain: event at position %d after %d: positions must be gapless", pos, s.position))
	}
	switch e := e.(type) {
	case AssetDefined:
		s.evolveAsset(pos, e)
	case AccountOpened:
		s.evolveAccount(pos, e)
	case AccountBoundsChanged:
		a := s.mustAccount(e.ID, pos)
		s.saveAccount(a)
		a.Min, a.Max, a.Amended = unitsOf(e.MinBalance), unitsOf(e.MaxBalance), true
	case AccountMetadataSet:
		a := s.mustAccount(e.ID, pos)
		s.saveAccount(a)
		a.Metadata, a.Amended = e.Metadata, true
	case AccountClosed:
		a := s.mustAccount(e.ID, pos)
		if a.Closed || !a.DebitsPending.IsZero() || !a.CreditsPending.IsZero() {
			panic(fmt.Sprintf("domain: account %s closed while closed or with pending amounts (position %d)", e.ID, pos))
		}
		s.saveAccount(a)
		a.Closed, a.ClosedAt = true, pos
	case TransferCommitted:
		s.evolvePostings(pos, e.ID, e.Postings, false)
		s.indexID(e.ID, pos, idDone)
	case TransferPending:
		s.evolvePending(pos, &e)
	case PendingPosted:
		s.evolvePost(pos, &e)
	case PendingVoided:
		s.checkReleased(pos, e.PendingID, e.Postings)
		s.release(pos, e.PendingID, idPendingResolved)
		s.indexID(e.ID, pos, idDone)
	case PendingExpired:
		s.checkReleased(pos, e.PendingID, e.Postings)
		s.release(pos, e.PendingID, idPendingExpired)
	case TransferReversed:
		s.evolveReversal(pos, &e)
	case StatementImported:
		s.mustAccount(e.Account, pos)
		s.indexID(lineKey(e.Account, e.Source, e.ExternalID), pos, idDone)
	case MatchingRulesSet:
		s.mustAccount(e.Account, pos)
	case MatchedManually:
		s.mustAccount(e.Account, pos)
		s.indexID(matchKey(e.Account, e.ID), pos, idDone)
	case Unmatched:
		s.mustAccount(e.Account, pos)
	default:
		panic(fmt.Sprintf("domain: cannot apply %T", e))
	}
	prev := s.position
	s.position = pos
	s.undo(func() { s.position = prev })
}

func (s *State) evolveAsset(pos uint64, e AssetDefined) {
	if _, ok := s.assets[e.Code]; ok {
		panic(fmt.Sprintf("domain: asset %s defined twice (position %d)", e.Code, pos))
	}
	if e.Scale > ScaleMax {
		panic(fmt.Sprintf("domain: asset %s scale %d (position %d)", e.Code, e.Scale, pos))
	}
	s.assets[e.Code] = Asset{Code: e.Code, Scale: e.Scale, Position: pos}
	s.undo(func() { delete(s.assets, e.Code) })
}

func (s *State) evolveAccount(pos uint64, e AccountOpened) {
	asset, ok := s.assets[e.Asset]
	if !ok {
		panic(fmt.Sprintf("domain: account %s in undefined asset %s (position %d)", e.ID, e.Asset, pos))
	}
	if _, ok := s.accounts[e.ID]; ok {
		panic(fmt.Sprintf("domain: account %s opened twice (position %d)", e.ID, pos))
	}
	s.accounts[e.ID] = &Account{ID: e.ID, Asset: asset.Code, Scale: asset.Scale, Normal: e.Normal, Metadata: e.Metadata,
		Position: pos, Min: unitsOf(e.MinBalance), Max: unitsOf(e.MaxBalance)}
	s.undo(func() { delete(s.accounts, e.ID) })
}

func unitsOf(a *Amount) *Units {
	if a == nil {
		return nil
	}
	u := a.Units
	return &u
}

func (s *State) mustAccount(id string, pos uint64) *Account {
	a, ok := s.accounts[id]
	if !ok {
		panic(fmt.Sprintf("domain: event at %d names missing account %s", pos, id))
	}
	return a
}

// saveAccount records the undo of changes about to be made to a.
func (s *State) saveAccount(a *Account) {
	if s.recording {
		old := *a
		s.undo(func() { *a = old })
	}
}

// move changes an account's balances by signed deltas, asserting that every
// field stays non-negative and within DigitsMax digits.
func (s *State) move(a *Account, dp, cp, dq, cq Units, pos uint64) {
	next, ok := applied(a, dp, cp, dq, cq)
	if !ok {
		panic(fmt.Sprintf("domain: event at %d takes account %s out of range", pos, a.ID))
	}
	s.saveAccount(a)
	*a = next
}

// evolvePostings applies postings as posted (or pending) movements. Both sides
// move by the same amount: Σ debits = Σ credits per asset holds by
// construction, posting by posting.
func (s *State) evolvePostings(pos uint64, id string, postings []Posting, pending bool) {
	for _, p := range postings {
		debit, credit := s.mustAccount(p.Debit, pos), s.mustAccount(p.Credit, pos)
		switch {
		case debit == credit:
			panic(fmt.Sprintf("domain: %s posts %s to itself (position %d)", id, p.Debit, pos))
		case debit.Asset != p.Asset || credit.Asset != p.Asset || p.Amount.Scale != debit.Scale:
			panic(fmt.Sprintf("domain: %s mixes assets (position %d)", id, pos))
		case p.Amount.Units.Sign() < 0:
			panic(fmt.Sprintf("domain: %s has a negative amount (position %d)", id, pos))
		}
		var zero Units
		if pending {
			s.move(debit, zero, zero, p.Amount.Units, zero, pos)
			s.move(credit, zero, zero, zero, p.Amount.Units, pos)
		} else {
			s.move(debit, p.Amount.Units, zero, zero, zero, pos)
			s.move(credit, zero, p.Amount.Units, zero, zero, pos)
		}
	}
}

func (s *State) evolvePending(pos uint64, e *TransferPending) {
	if _, ok := s.holds[e.ID]; ok {
		panic(fmt.Sprintf("domain: hold %s opened twice (position %d)", e.ID, pos))
	}
	s.evolvePostings(pos, e.ID, e.Postings, true)
	h := &Hold{ID: e.ID, Postings: e.Postings, Position: pos}
	if e.ExpiresAt != nil {
		s.expirySeq++
		h.ExpiresAt, h.expirySeq = *e.ExpiresAt, s.expirySeq
		// Not undone: once the hold is undone, the entry is stale (no hold
		// carries its number) and is dropped when it reaches the top.
		heap.Push(&s.expiries, expiry{at: h.ExpiresAt, id: h.ID, seq: h.expirySeq})
	}
	s.holds[e.ID] = h
	s.undo(func() { delete(s.holds, e.ID) })
	s.indexID(e.ID, pos, idPending)
}

// release takes a hold's amounts out of the pending fields and closes it.
func (s *State) release(pos uint64, id string, status uint8) *Hold {
	h, ok := s.holds[id]
	if !ok {
		panic(fmt.Sprintf("domain: hold %s resolved but not open (position %d)", id, pos))
	}
	var zero Units
	for _, p := range h.Postings {
		s.move(s.mustAccount(p.Debit, pos), zero, zero, p.Amount.Units.Neg(), zero, pos)
		s.move(s.mustAccount(p.Credit, pos), zero, zero, zero, p.Amount.Units.Neg(), pos)
	}
	delete(s.holds, id)
	s.undo(func() { s.holds[id] = h })
	s.setIDStatus(id, status)
	return h
}

// checkReleased asserts that an event releases exactly what the hold holds.
func (s *State) checkReleased(pos uint64, id string, released []Posting) {
	h, ok := s.holds[id]
	if !ok || len(released) != len(h.Postings) {
		panic(fmt.Sprintf("domain: event at %d releases hold %s, which is not open as recorded", pos, id))
	}
	for i, p := range released {
		if p != h.Postings[i] {
			panic(fmt.Sprintf("domain: event at %d releases %v from hold %s, which holds %v", pos, p, id, h.Postings[i]))
		}
	}
}

func (s *State) evolvePost(pos uint64, e *PendingPosted) {
	held := make([]Posting, len(e.Postings))
	posted := make([]Posting, len(e.Postings))
	for i, hp := range e.Postings {
		if hp.Amount.Units.Cmp(hp.Held.Units) > 0 {
			panic(fmt.Sprintf("domain: post %s posts more than held (position %d)", e.ID, pos))
		}
		held[i] = hp.Released()
		posted[i] = hp.Posted()
	}
	s.checkReleased(pos, e.PendingID, held)
	s.release(pos, e.PendingID, idPendingResolved)
	s.evolvePostings(pos, e.ID, posted, false)
	s.indexID(e.ID, pos, idDone)
}

func (s *State) evolveReversal(pos uint64, e *TransferReversed) {
	s.evolvePostings(pos, e.ID, e.Postings, false)
	done, had := s.reversed[e.TransferPosition]
	next := make([]Units, len(e.Postings))
	for i, p := range e.Postings {
		if had {
			next[i] = done[i]
		}
		next[i] = next[i].Add(p.Amount.Units)
	}
	s.reversed[e.TransferPosition] = next
	s.undo(func() {
		if had {
			s.reversed[e.TransferPosition] = done
		} else {
			delete(s.reversed, e.TransferPosition)
		}
	})
	s.indexID(e.ID, pos, idDone)
}
