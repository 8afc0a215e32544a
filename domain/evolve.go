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
	event := e // as given: re-boxing a case's copy would allocate
	s.moved = s.moved[:0]
	if held := s.alertHold; held != nil {
		s.alertHold = nil
		s.undo(func() { s.alertHold = held })
	}
	switch e := e.(type) {
	case AssetDefined:
		s.evolveAsset(pos, e)
	case AccountOpened:
		s.evolveAccount(pos, e)
	case AccountBoundsChanged:
		a := s.mustAccount(e.ID, pos)
		s.saveAccount(a)
		t := *a.readTerms()
		t.min, t.max = unitsOf(e.MinBalance), unitsOf(e.MaxBalance)
		a.setTerms(t)
		a.Amended = true
	case AccountMetadataSet:
		a := s.mustAccount(e.ID, pos)
		s.saveAccount(a)
		t := *a.readTerms()
		t.metadata = e.Metadata
		a.setTerms(t)
		a.Amended = true
	case AccountClosed:
		a := s.mustAccount(e.ID, pos)
		if a.Closed || !a.DebitsPending.IsZero() || !a.CreditsPending.IsZero() {
			panic(fmt.Sprintf("domain: account %s closed while closed or with pending amounts (position %d)", e.ID, pos))
		}
		s.saveAccount(a)
		t := *a.readTerms()
		t.closedAt = pos
		a.setTerms(t)
		a.Closed = true
	case TransferCommitted:
		checkAmounts(pos, e.ID, e.Postings)
		s.evolveMovements(pos, event)
		s.indexID(e.ID, pos, idDone)
		s.recordVelocity(e.Postings, e.EffectiveAt)
	case TransferPending:
		s.evolvePending(pos, &e, event)
	case PendingPosted:
		s.evolvePost(pos, &e, event)
	case PendingVoided:
		s.checkReleased(pos, e.PendingID, e.Postings)
		s.evolveMovements(pos, event)
		s.closeHold(pos, e.PendingID, idPendingResolved)
		s.indexID(e.ID, pos, idDone)
	case PendingExpired:
		s.checkReleased(pos, e.PendingID, e.Postings)
		s.evolveMovements(pos, event)
		s.closeHold(pos, e.PendingID, idPendingExpired)
	case TransferReversed:
		s.evolveReversal(pos, &e, event)
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
	case PeriodClosed:
		s.evolvePeriod(pos, &e)
	case CategoryDefined:
		s.evolveCategory(pos, &e)
	case AccountFrozen:
		s.evolveFrozen(pos, &e)
	case AccountUnfrozen:
		s.evolveUnfrozen(pos, &e)
	case RuleDefined:
		s.evolveRule(pos, &e)
	case AlertRaised:
		s.evolveRaised(pos, &e)
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
	a := Account{ID: e.ID, Asset: asset.Code, Scale: asset.Scale, Normal: e.Normal, Position: pos}
	a.setTerms(accountTerms{min: unitsOf(e.MinBalance), max: unitsOf(e.MaxBalance), metadata: e.Metadata})
	if s.accounts.Add(a) == nil {
		panic(fmt.Sprintf("domain: account %s opened twice (position %d)", e.ID, pos))
	}
	s.undo(func() { s.accounts.RemoveLast(e.ID) })
	// Its id goes into the table's buffers once it stays: now, or at
	// Commit when a batch may still roll it back.
	if !s.recording {
		s.accounts.keepIDs()
	}
}

func unitsOf(a *Amount) *Units {
	if a == nil {
		return nil
	}
	u := a.Units
	return &u
}

func (s *State) mustAccount(id string, pos uint64) *Account {
	a, ok := s.accounts.Lookup(id)
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

// evolveMovements applies an event's movements (AppendMovements), asserting
// that each moves an account of its asset and scale, never the account
// itself, and that no posted total moves back. Both sides of a posting move
// by the same amount: Σ debits = Σ credits per asset holds by construction.
func (s *State) evolveMovements(pos uint64, e Event) {
	// Posting by posting, into a buffer on the stack: applying an event
	// allocates nothing for its movements, however many postings it has.
	var buf [MovementsPerPostingMax]Movement
	for i := 0; ; i++ {
		moves, ok := appendPostingMovements(buf[:0], e, i)
		if !ok {
			return
		}
		for k := range moves {
			s.applyMovement(pos, &moves[k])
		}
	}
}

func (s *State) applyMovement(pos uint64, m *Movement) {
	n, ok := s.accounts.number(m.Account)
	if !ok {
		panic(fmt.Sprintf("domain: event at %d names missing account %s", pos, m.Account))
	}
	a := s.accounts.at(n)
	s.moved = append(s.moved, n)
	switch {
	case m.Account == m.Counterparty:
		panic(fmt.Sprintf("domain: %s posts %s to itself (position %d)", m.Transfer, m.Account, pos))
	case a.Asset != m.Asset || a.Scale != m.Scale:
		panic(fmt.Sprintf("domain: %s mixes assets (position %d)", m.Transfer, pos))
	case !m.Pending && m.Amount.Sign() < 0:
		panic(fmt.Sprintf("domain: %s has a negative amount (position %d)", m.Transfer, pos))
	}
	dp, cp, dq, cq := m.Deltas()
	s.move(a, dp, cp, dq, cq, pos)
}

// checkAmounts asserts that postings that place money (a transfer, a hold, a
// reversal) place none negative: releases are negative movements, so the
// sign of a pending movement alone cannot tell.
func checkAmounts(pos uint64, id string, postings []Posting) {
	for i := range postings {
		if postings[i].Amount.Units.Sign() < 0 {
			panic(fmt.Sprintf("domain: %s has a negative amount (position %d)", id, pos))
		}
	}
}

func (s *State) evolvePending(pos uint64, e *TransferPending, event Event) {
	if _, ok := s.holds[e.ID]; ok {
		panic(fmt.Sprintf("domain: hold %s opened twice (position %d)", e.ID, pos))
	}
	checkAmounts(pos, e.ID, e.Postings)
	s.evolveMovements(pos, event)
	if e.Alert == "" { // a rule's own hold is not counted (CreateTransfer.Alert)
		s.recordVelocity(e.Postings, e.EffectiveAt)
	}
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

// closeHold closes a hold whose amounts the event's movements released.
func (s *State) closeHold(pos uint64, id string, status uint8) {
	h, ok := s.holds[id]
	if !ok {
		panic(fmt.Sprintf("domain: hold %s resolved but not open (position %d)", id, pos))
	}
	delete(s.holds, id)
	s.undo(func() { s.holds[id] = h })
	s.setIDStatus(id, status)
}

// checkReleased asserts that an event releases exactly what the hold holds.
func (s *State) checkReleased(pos uint64, id string, released []Posting) {
	h := s.openHold(pos, id, len(released))
	for i, p := range released {
		if p != h.Postings[i] {
			panic(fmt.Sprintf("domain: event at %d releases %v from hold %s, which holds %v", pos, p, id, h.Postings[i]))
		}
	}
}

// openHold returns the open hold id, asserting it has n postings.
func (s *State) openHold(pos uint64, id string, n int) *Hold {
	h, ok := s.holds[id]
	if !ok || n != len(h.Postings) {
		panic(fmt.Sprintf("domain: event at %d releases hold %s, which is not open as recorded", pos, id))
	}
	return h
}

// evolvePost asserts that a post releases exactly what the hold holds and
// posts at most that; its movements then release and post.
func (s *State) evolvePost(pos uint64, e *PendingPosted, event Event) {
	h := s.openHold(pos, e.PendingID, len(e.Postings))
	for i := range e.Postings {
		hp := &e.Postings[i]
		if hp.Amount.Units.Cmp(hp.Held.Units) > 0 {
			panic(fmt.Sprintf("domain: post %s posts more than held (position %d)", e.ID, pos))
		}
		if released := hp.Released(); released != h.Postings[i] {
			panic(fmt.Sprintf("domain: event at %d releases %v from hold %s, which holds %v", pos, released, e.PendingID, h.Postings[i]))
		}
	}
	s.evolveMovements(pos, event)
	s.closeHold(pos, e.PendingID, idPendingResolved)
	s.indexID(e.ID, pos, idDone)
}

func (s *State) evolveReversal(pos uint64, e *TransferReversed, event Event) {
	checkAmounts(pos, e.ID, e.Postings)
	s.evolveMovements(pos, event)
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
