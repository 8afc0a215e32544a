package domain

import (
	"fmt"
	"slices"
)

func decideLine(s *State, c *ImportStatementLine) (Event, error) {
	if !c.validated {
		panic("domain: Decide on an unvalidated ImportStatementLine")
	}
	key := lineKey(c.Account, c.Source, c.ExternalID)
	if err := checkRetry(s, key, &c.priors, func(prior Event) string { return lineDiff(prior.(StatementImported), c) }); err != nil {
		return nil, err
	}
	a, ok := s.accounts.Lookup(c.Account)
	if !ok {
		return nil, fieldErr("account", ErrAccountNotFound)
	}
	u, err := c.amount.Units(a.Scale)
	if err != nil {
		return nil, fieldErr("amount", err)
	}
	return StatementImported{Account: c.Account, Source: c.Source, ExternalID: c.ExternalID,
		Amount: Amount{Units: u, Scale: a.Scale}, Direction: c.Direction, ValueDate: c.ValueDate,
		Reference: c.Reference, Description: c.Description}, nil
}

// lineDiff names the first field in which a re-imported line differs from
// the one imported, or "".
func lineDiff(p StatementImported, c *ImportStatementLine) string {
	u, err := c.amount.Units(p.Amount.Scale)
	switch {
	case err != nil || u.Cmp(p.Amount.Units) != 0:
		return "amount"
	case p.Direction != c.Direction:
		return "direction"
	case p.ValueDate != c.ValueDate:
		return "value_date"
	case p.Reference != c.Reference:
		return "reference"
	case p.Description != c.Description:
		return "description"
	}
	return ""
}

func decideRules(s *State, c *SetMatchingRules) (Event, error) {
	if !c.validated {
		panic("domain: Decide on unvalidated SetMatchingRules")
	}
	a, ok := s.accounts.Lookup(c.Account)
	if !ok {
		return nil, fieldErr("account", ErrAccountNotFound)
	}
	rules := make([]MatchingRule, len(c.Rules))
	for i, in := range c.Rules {
		r := MatchingRule{Kind: in.Kind, DateWindowDays: uint8(in.DateWindowDays), GroupMax: uint8(in.GroupMax)}
		if in.tolerance != nil {
			u, err := in.tolerance.Units(a.Scale)
			if err != nil {
				return nil, fieldErr(fmt.Sprintf("rules[%d].amount_tolerance", i), err)
			}
			r.AmountTolerance = &Amount{Units: u, Scale: a.Scale}
		}
		rules[i] = r
	}
	return MatchingRulesSet{Account: c.Account, Rules: rules}, nil
}

func decideManualMatch(s *State, c *MatchManually) (Event, error) {
	key := matchKey(c.Account, c.ID)
	if err := checkRetry(s, key, &c.priors, func(prior Event) string { return matchDiff(prior.(MatchedManually), c) }); err != nil {
		return nil, err
	}
	if _, ok := s.accounts.Lookup(c.Account); !ok {
		return nil, fieldErr("account", ErrAccountNotFound)
	}
	for i, l := range c.Lines {
		if err := checkLine(s, c.Account, l, &c.priors, fmt.Sprintf("lines[%d]", i)); err != nil {
			return nil, err
		}
	}
	for i, m := range c.Movements {
		if err := checkMovement(s, c.Account, m, &c.priors, fmt.Sprintf("movements[%d]", i)); err != nil {
			return nil, err
		}
	}
	return MatchedManually{ID: c.ID, Account: c.Account, Lines: slices.Clone(c.Lines),
		Movements: slices.Clone(c.Movements), Reason: c.Reason}, nil
}

func matchDiff(p MatchedManually, c *MatchManually) string {
	switch {
	case !slices.Equal(p.Lines, c.Lines):
		return "lines"
	case !slices.Equal(p.Movements, c.Movements):
		return "movements"
	case p.Reason != c.Reason:
		return "reason"
	}
	return ""
}

func decideUnmatch(s *State, c *Unmatch) (Event, error) {
	if _, ok := s.accounts.Lookup(c.Account); !ok {
		return nil, fieldErr("account", ErrAccountNotFound)
	}
	e := Unmatched{Account: c.Account, Reason: c.Reason}
	if c.Line != nil {
		if err := checkLine(s, c.Account, *c.Line, &c.priors, "line"); err != nil {
			return nil, err
		}
		l := *c.Line
		e.Line = &l
	} else {
		if err := checkMovement(s, c.Account, *c.Movement, &c.priors, "movement"); err != nil {
			return nil, err
		}
		m := *c.Movement
		e.Movement = &m
	}
	return e, nil
}

// checkLine says whether the account has the line: ErrLineNotFound, or a
// *NeedPriorError to confirm it against the log.
func checkLine(s *State, account string, l LineRef, p *priors, field string) error {
	key := lineKey(account, l.Source, l.ExternalID)
	pos, _, exact, ok := s.lookupID(key)
	if !ok {
		return fieldErr(field, ErrLineNotFound)
	}
	prior, have := p.prior(pos)
	if !have {
		return &NeedPriorError{Position: pos}
	}
	if IndexKey(prior) != key {
		if exact {
			panic(fmt.Sprintf("domain: line %q indexed at %d, which holds another", key, pos))
		}
		return fieldErr(field, ErrLineNotFound)
	}
	return nil
}

// checkMovement says whether the transfer's posting moved the account's
// posted balance: ErrMovementNotFound, or a *NeedPriorError.
func checkMovement(s *State, account string, m MovementRef, p *priors, field string) error {
	pos, _, _, ok := s.lookupID(m.TransferID)
	if !ok {
		return fieldErr(field, ErrMovementNotFound)
	}
	prior, have := p.prior(pos)
	if !have {
		return &NeedPriorError{Position: pos}
	}
	if eventID(prior) != m.TransferID {
		return fieldErr(field, ErrMovementNotFound)
	}
	posting, ok := MovementPosting(prior, int(m.PostingIndex))
	if !ok || (posting.Debit != account && posting.Credit != account) {
		return fieldErrf(field, ErrMovementNotFound, "transfer %s has no posted posting %d on account %s", m.TransferID, m.PostingIndex, account)
	}
	return nil
}

// MovementPosting returns the posted part of posting i of an event that
// moves posted balances (a transfer, a post, a reversal), and false when the
// event has no such posting or it posted nothing.
func MovementPosting(e Event, i int) (Posting, bool) {
	var postings []Posting
	switch e := e.(type) {
	case TransferCommitted:
		postings = e.Postings
	case TransferReversed:
		postings = e.Postings
	case PendingPosted:
		if i >= 0 && i < len(e.Postings) && !e.Postings[i].Amount.Units.IsZero() {
			return e.Postings[i].Posted(), true
		}
		return Posting{}, false
	}
	// A posting of nothing (a partial reversal may reverse a posting by
	// 0) moved no money: the reconciliation has no item for it to match.
	if i < 0 || i >= len(postings) || postings[i].Amount.Units.IsZero() {
		return Posting{}, false
	}
	return postings[i], true
}

// Referable reports whether a later command may ask for e as a prior (a
// *NeedPriorError): the events that take a key in the id index, and account
// openings (a retried open of an amended account).
func Referable(e Event) bool {
	if _, ok := e.(AccountOpened); ok {
		return true
	}
	return IndexKey(e) != ""
}

// indexKey is the key an event takes in the id index, or "".
func IndexKey(e Event) string {
	switch e := e.(type) {
	case StatementImported:
		return lineKey(e.Account, e.Source, e.ExternalID)
	case MatchedManually:
		return matchKey(e.Account, e.ID)
	}
	return eventID(e)
}
