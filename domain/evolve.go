package domain

import "fmt"

// Evolve applies the event at position pos. It never fails: events were decided
// against this state, or read from a log that was. A broken invariant is a bug
// or a corrupt log, and it panics rather than carry on with wrong balances.
func (s *State) Evolve(pos uint64, e Event) {
	if pos != s.position+1 {
		panic(fmt.Sprintf("domain: event at position %d after %d: positions must be gapless", pos, s.position))
	}
	switch e := e.(type) {
	case AssetDefined:
		s.evolveAsset(pos, e)
	case AccountOpened:
		s.evolveAccount(pos, e)
	case TransferCommitted:
		s.evolveTransfer(pos, &e)
	default:
		panic(fmt.Sprintf("domain: cannot apply %T", e))
	}
	s.position = pos
}

func (s *State) evolveAsset(pos uint64, e AssetDefined) {
	if _, ok := s.assets[e.Code]; ok {
		panic(fmt.Sprintf("domain: asset %s defined twice (position %d)", e.Code, pos))
	}
	if e.Scale > ScaleMax {
		panic(fmt.Sprintf("domain: asset %s scale %d (position %d)", e.Code, e.Scale, pos))
	}
	s.assets[e.Code] = Asset{Code: e.Code, Scale: e.Scale, Position: pos}
}

func (s *State) evolveAccount(pos uint64, e AccountOpened) {
	asset, ok := s.assets[e.Asset]
	if !ok {
		panic(fmt.Sprintf("domain: account %s in undefined asset %s (position %d)", e.ID, e.Asset, pos))
	}
	if _, ok := s.accounts[e.ID]; ok {
		panic(fmt.Sprintf("domain: account %s opened twice (position %d)", e.ID, pos))
	}
	a := &Account{ID: e.ID, Asset: asset.Code, Scale: asset.Scale, Normal: e.Normal, Metadata: e.Metadata, Position: pos}
	if e.MinBalance != nil {
		u := e.MinBalance.Units
		a.Min = &u
	}
	if e.MaxBalance != nil {
		u := e.MaxBalance.Units
		a.Max = &u
	}
	s.accounts[e.ID] = a
}

func (s *State) evolveTransfer(pos uint64, e *TransferCommitted) {
	if p, ok := s.collided[e.ID]; ok {
		panic(fmt.Sprintf("domain: transfer %s applied twice (positions %d and %d)", e.ID, p, pos))
	}
	for _, p := range e.Postings {
		debit, credit := s.accounts[p.Debit], s.accounts[p.Credit]
		switch {
		case debit == nil || credit == nil:
			panic(fmt.Sprintf("domain: transfer %s posts to a missing account (position %d)", e.ID, pos))
		case debit == credit:
			panic(fmt.Sprintf("domain: transfer %s posts %s to itself (position %d)", e.ID, p.Debit, pos))
		case debit.Asset != p.Asset || credit.Asset != p.Asset || p.Amount.Scale != debit.Scale:
			panic(fmt.Sprintf("domain: transfer %s mixes assets (position %d)", e.ID, pos))
		case p.Amount.Units.Sign() <= 0:
			panic(fmt.Sprintf("domain: transfer %s has a non-positive amount (position %d)", e.ID, pos))
		}
		// Both sides move by the same amount: Σ debits = Σ credits per asset holds
		// by construction, posting by posting.
		var okD, okC bool
		debit.DebitsPosted, okD = debit.DebitsPosted.CheckedAdd(p.Amount.Units)
		credit.CreditsPosted, okC = credit.CreditsPosted.CheckedAdd(p.Amount.Units)
		if !okD || !okC || !sideInRange(debit) || !sideInRange(credit) {
			panic(fmt.Sprintf("domain: transfer %s overflows a balance (position %d)", e.ID, pos))
		}
	}
	s.indexTransfer(e.ID, pos)
}
