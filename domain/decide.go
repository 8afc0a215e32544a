package domain

import (
	"fmt"
	"time"
)

// Decide checks a validated command against the state and returns the event that
// applies it. It never mutates s; apply the event with Evolve. now is the time
// the writer records the batch at (the clock is the caller's).
//
// Errors: an *ExistsError (ErrExists) for an identical retry; a
// *NeedPriorError when the command's outcome depends on an event only the log
// holds (attach it and decide again); or a sentinel of errors.go, wrapped in a
// *FieldError naming the field where there is one.
func Decide(s *State, c Command, now time.Time) (Event, error) {
	if s.foldOnly() {
		// Without the id index every retry would look new: a transfer
		// applied twice. Only a programming error gets here.
		panic("domain: Decide on a fold-only state (NewFoldState)")
	}
	switch c := c.(type) {
	case *DefineAsset:
		return decideAsset(s, c)
	case *OpenAccount:
		return decideAccount(s, c)
	case *SetAccountBounds:
		return decideBounds(s, c)
	case *SetAccountMetadata:
		return decideMetadata(s, c)
	case *CloseAccount:
		return decideClose(s, c)
	case *CreateTransfer:
		return decideTransfer(s, c, now)
	case *PostPending:
		return decidePost(s, c, now)
	case *VoidPending:
		return decideVoid(s, c, now)
	case *ExpirePending:
		return decideExpire(s, c, now)
	case *ReverseTransfer:
		return decideReverse(s, c, now)
	case *ImportStatementLine:
		return decideLine(s, c)
	case *SetMatchingRules:
		return decideRules(s, c)
	case *MatchManually:
		return decideManualMatch(s, c)
	case *Unmatch:
		return decideUnmatch(s, c)
	case *ClosePeriod:
		return decidePeriod(s, c, now)
	case *DefineCategory:
		return decideCategory(s, c)
	case *FreezeAccount:
		return decideFreeze(s, c)
	case *UnfreezeAccount:
		return decideUnfreeze(s, c)
	case *DefineRule:
		return decideRule(s, c)
	case *RaiseAlert:
		return decideRaise(s, c, now)
	}
	panic(fmt.Sprintf("domain: unknown command %T", c))
}

// PriorCandidates returns the positions whose events Decide may ask for to
// decide c: so that a writer can read them all from the log in one go.
func PriorCandidates(s *State, c Command) []uint64 {
	var ids []string
	switch c := c.(type) {
	case *OpenAccount:
		if a, ok := s.accounts.Lookup(c.ID); ok && a.Amended {
			return []uint64{a.Position}
		}
	case *CreateTransfer:
		ids = []string{c.ID}
	case *PostPending:
		ids = []string{c.ID, c.PendingID}
	case *VoidPending:
		ids = []string{c.ID, c.PendingID}
	case *ReverseTransfer:
		ids = []string{c.ID, c.TransferID}
	case *ImportStatementLine:
		ids = []string{lineKey(c.Account, c.Source, c.ExternalID)}
	case *MatchManually:
		ids = append(ids, matchKey(c.Account, c.ID))
		for _, l := range c.Lines {
			ids = append(ids, lineKey(c.Account, l.Source, l.ExternalID))
		}
		for _, m := range c.Movements {
			ids = append(ids, m.TransferID)
		}
	case *Unmatch:
		if c.Line != nil {
			ids = []string{lineKey(c.Account, c.Line.Source, c.Line.ExternalID)}
		} else {
			ids = []string{c.Movement.TransferID}
		}
	}
	var out []uint64
	for _, id := range ids {
		if pos, ok := s.TransferCandidate(id); ok {
			out = append(out, pos)
		}
	}
	return out
}

// EventID returns the id an event takes in the transfer id space (transfers,
// holds, posts, voids, reversals), and false for events that take none.
func EventID(e Event) (string, bool) {
	switch e := e.(type) {
	case TransferCommitted:
		return e.ID, true
	case TransferPending:
		return e.ID, true
	case PendingPosted:
		return e.ID, true
	case PendingVoided:
		return e.ID, true
	case TransferReversed:
		return e.ID, true
	}
	return "", false
}

// ChangedID returns the id of the earlier transfer an event changes: the
// hold a post, void or expiry resolves, the transfer a reversal reverses;
// false for events that change none.
func ChangedID(e Event) (string, bool) {
	switch e := e.(type) {
	case PendingPosted:
		return e.PendingID, true
	case PendingVoided:
		return e.PendingID, true
	case PendingExpired:
		return e.PendingID, true
	case TransferReversed:
		return e.TransferID, true
	}
	return "", false
}

// eventID is EventID's id alone ("" for events that take none).
func eventID(e Event) string {
	id, _ := EventID(e)
	return id
}

// checkRetry answers for a command whose id may be taken: nil when the id is
// free (a new command), an *ExistsError for an identical retry,
// ErrExistsWithDifferentFields naming the field diff finds, or a
// *NeedPriorError to confirm the id against the event that may hold it.
func checkRetry(s *State, id string, p *priors, diff func(prior Event) string) error {
	pos, _, exact, ok := s.lookupID(id)
	if !ok {
		return nil
	}
	prior, have := p.prior(pos)
	if !have {
		return &NeedPriorError{Position: pos}
	}
	if IndexKey(prior) != id {
		if exact {
			panic(fmt.Sprintf("domain: id %q indexed at %d, which holds %q", id, pos, IndexKey(prior)))
		}
		return nil // another id with the same hash: this command is new
	}
	if field := diff(prior); field != "" {
		return fieldErr(field, ErrExistsWithDifferentFields)
	}
	return &ExistsError{Position: pos}
}

// checkEffectiveAt applies the ledger's policy to a business time.
func checkEffectiveAt(s *State, t, now time.Time) error {
	if t.IsZero() {
		return nil
	}
	if max := s.policy.EffectivePastMax; max > 0 && t.Before(now.Add(-max)) {
		return fieldErrf("effective_at", ErrInvalidField, "%s is more than %s in the past", t.Format(time.RFC3339), max)
	}
	if t.After(now.Add(s.policy.EffectiveFutureMax)) {
		return fieldErrf("effective_at", ErrInvalidField, "%s is in the future", t.Format(time.RFC3339))
	}
	return nil
}

// effect is one account's net movement within a command: signed deltas.
type effect struct {
	acc                                                        *Account
	debitsPosted, creditsPosted, debitsPending, creditsPending Units
}

// effects accumulates a command's movements, account by account.
type effects []effect

// effectsInline is the accounts a command's effects hold before they
// grow: a transfer of one posting moves two. Returned by value, not
// appended through a pointer, the effects of so few stay on the stack of
// the decision (an allocation a command otherwise, and a second one to grow).
const effectsInline = 4

// add adds a movement to its account's effect and returns the effects,
// which the caller keeps (fx, ok = fx.add(...)): past the capacity, a
// result dropped would drop the account's effect and its bounds' check.
// false when a delta would exceed DigitsMax digits.
func (fx effects) add(acc *Account, dp, cp, dq, cq Units) (effects, bool) {
	i := 0
	for i < len(fx) && fx[i].acc != acc {
		i++
	}
	if i == len(fx) {
		fx = append(fx, effect{acc: acc})
	}
	e := &fx[i]
	var ok [4]bool
	e.debitsPosted, ok[0] = e.debitsPosted.CheckedAdd(dp)
	e.creditsPosted, ok[1] = e.creditsPosted.CheckedAdd(cp)
	e.debitsPending, ok[2] = e.debitsPending.CheckedAdd(dq)
	e.creditsPending, ok[3] = e.creditsPending.CheckedAdd(cq)
	return fx, ok[0] && ok[1] && ok[2] && ok[3]
}

// check refuses the movements if a balance would overflow or go negative, or
// an account would cross a bound in the direction it moves: min_balance when
// its available balance falls, max_balance when its balance plus pending
// inflows rises. An account already outside a bound may always move back
// toward it, and a new bound never rewrites the past.
func (fx effects) check() error {
	for _, ef := range fx {
		a := ef.acc
		next, ok := applied(a, ef.debitsPosted, ef.creditsPosted, ef.debitsPending, ef.creditsPending)
		if !ok {
			return fieldErrf("postings", ErrBalanceOverflow, "account %s", a.ID)
		}
		t := a.readTerms()
		if m := t.min; m != nil && next.Available().Cmp(a.Available()) < 0 && next.Available().Cmp(*m) < 0 {
			return fieldErrf("postings", ErrBelowMinBalance, "account %s would have %s available, min %s",
				a.ID, next.Available().Format(a.Scale), m.Format(a.Scale))
		}
		if m := t.max; m != nil && next.Ceiling().Cmp(a.Ceiling()) > 0 && next.Ceiling().Cmp(*m) > 0 {
			return fieldErrf("postings", ErrAboveMaxBalance, "account %s would reach %s, max %s",
				a.ID, next.Ceiling().Format(a.Scale), m.Format(a.Scale))
		}
	}
	return nil
}

// applied returns a copy of a moved by the deltas, and false when a field
// would overflow or go negative.
func applied(a *Account, dp, cp, dq, cq Units) (Account, bool) {
	next := *a
	var ok [4]bool
	next.DebitsPosted, ok[0] = a.DebitsPosted.CheckedAdd(dp)
	next.CreditsPosted, ok[1] = a.CreditsPosted.CheckedAdd(cp)
	next.DebitsPending, ok[2] = a.DebitsPending.CheckedAdd(dq)
	next.CreditsPending, ok[3] = a.CreditsPending.CheckedAdd(cq)
	return next, ok[0] && ok[1] && ok[2] && ok[3] && sideInRange(&next)
}

// postingAccounts checks a posting's accounts: they exist, are open, and are
// in the posting's asset, and the debit account is not frozen.
func postingAccounts(s *State, i int, debit, credit, asset string) (*Account, *Account, error) {
	d, c, err := unfrozenPostingAccounts(s, i, debit, credit, asset)
	if err != nil {
		return nil, nil, err
	}
	if d.FrozenAt() != 0 {
		return nil, nil, checkNotFrozen(s, postingField(i, "debit_account"), debit)
	}
	return d, c, nil
}

// unfrozenPostingAccounts is postingAccounts without the freeze check, for a
// posting that moves nothing.
func unfrozenPostingAccounts(s *State, i int, debit, credit, asset string) (*Account, *Account, error) {
	d, err := postingAccount(s, debit, asset)
	if err != nil {
		return nil, nil, fieldErr(postingField(i, "debit_account"), err)
	}
	c, err := postingAccount(s, credit, asset)
	if err != nil {
		return nil, nil, fieldErr(postingField(i, "credit_account"), err)
	}
	return d, c, nil
}

func postingAccount(s *State, id, asset string) (*Account, error) {
	acc, ok := s.accounts.Lookup(id)
	switch {
	case !ok:
		return nil, ErrAccountNotFound
	case acc.Closed:
		return nil, ErrAccountClosed
	case acc.Asset != asset:
		return nil, fmt.Errorf("account is in %s, posting in %s: %w", acc.Asset, asset, ErrAssetMismatch)
	}
	return acc, nil
}
