package domain

import (
	"fmt"
	"maps"
	"time"
)

// Decide checks a validated command against the state and returns the event that
// applies it. It never mutates s; apply the event with Evolve. now is the time
// the writer records the batch at (the clock is the caller's).
//
// Errors: an *ExistsError (ErrExists) for an identical retry, or a sentinel of
// errors.go, wrapped in a *FieldError naming the field where there is one.
func Decide(s *State, c Command, now time.Time) (Event, error) {
	switch c := c.(type) {
	case *DefineAsset:
		return decideAsset(s, c)
	case *OpenAccount:
		return decideAccount(s, c)
	case *CreateTransfer:
		return decideTransfer(s, c, now)
	}
	panic(fmt.Sprintf("domain: unknown command %T", c))
}

func decideAsset(s *State, c *DefineAsset) (Event, error) {
	if !c.validated {
		panic("domain: Decide on an unvalidated DefineAsset")
	}
	if prior, ok := s.assets[c.Code]; ok {
		if uint32(prior.Scale) != c.Scale {
			return nil, fieldErrf("scale", ErrExistsWithDifferentFields, "defined with scale %d", prior.Scale)
		}
		return nil, &ExistsError{Position: prior.Position}
	}
	return AssetDefined{Code: c.Code, Scale: uint8(c.Scale)}, nil
}

func decideAccount(s *State, c *OpenAccount) (Event, error) {
	if !c.validated {
		panic("domain: Decide on an unvalidated OpenAccount")
	}
	asset, ok := s.assets[c.Asset]
	if !ok {
		return nil, fieldErr("asset", ErrAssetNotFound)
	}
	e := AccountOpened{ID: c.ID, Asset: c.Asset, Normal: c.Normal, Metadata: c.Metadata}
	var err error
	if e.MinBalance, err = boundAmount("min_balance", c.min, asset.Scale); err != nil {
		return nil, err
	}
	if e.MaxBalance, err = boundAmount("max_balance", c.max, asset.Scale); err != nil {
		return nil, err
	}
	if e.MinBalance != nil && e.MaxBalance != nil && e.MinBalance.Units.Cmp(e.MaxBalance.Units) > 0 {
		return nil, fieldErrf("max_balance", ErrInvalidField, "%s is below min_balance %s", e.MaxBalance, e.MinBalance)
	}
	if prior, ok := s.accounts[c.ID]; ok {
		if field := accountDiff(prior, &e); field != "" {
			return nil, fieldErr(field, ErrExistsWithDifferentFields)
		}
		return nil, &ExistsError{Position: prior.Position}
	}
	return e, nil
}

func boundAmount(field string, d *Decimal, scale uint8) (*Amount, error) {
	if d == nil {
		return nil, nil
	}
	u, err := d.Units(scale)
	if err != nil {
		return nil, fieldErr(field, err)
	}
	return &Amount{Units: u, Scale: scale}, nil
}

// accountDiff names the first field in which an open request differs from the
// account already opened under that id, or "".
func accountDiff(a *Account, e *AccountOpened) string {
	switch {
	case a.Asset != e.Asset:
		return "asset"
	case a.Normal != e.Normal:
		return "normal_balance"
	case !sameBound(a.Min, e.MinBalance):
		return "min_balance"
	case !sameBound(a.Max, e.MaxBalance):
		return "max_balance"
	case !maps.Equal(a.Metadata, e.Metadata):
		return "metadata"
	}
	return ""
}

func sameBound(u *Units, a *Amount) bool {
	if u == nil || a == nil {
		return u == nil && a == nil
	}
	return u.Cmp(a.Units) == 0
}

// effect is one account's net movement within a transfer.
type effect struct {
	acc           *Account
	debit, credit Units
}

func decideTransfer(s *State, c *CreateTransfer, now time.Time) (Event, error) {
	if !c.validated {
		panic("domain: Decide on an unvalidated CreateTransfer")
	}
	if pos, ok := s.TransferCandidate(c.ID); ok {
		if c.prior == nil || c.priorPos != pos {
			return nil, &NeedPriorError{Position: pos}
		}
		if c.prior.ID == c.ID {
			if field := transferDiff(c.prior, c); field != "" {
				return nil, fieldErr(field, ErrExistsWithDifferentFields)
			}
			return nil, &ExistsError{Position: pos}
		}
		// Another id with the same hash: this transfer is new.
	}
	e := TransferCommitted{
		ID:          c.ID,
		Postings:    make([]Posting, len(c.Postings)),
		Reference:   c.Reference,
		Metadata:    c.Metadata,
		EffectiveAt: c.EffectiveAt,
	}
	if e.EffectiveAt.IsZero() {
		e.EffectiveAt = now.UTC().Truncate(time.Microsecond)
	}
	effects := make([]effect, 0, 2*len(c.Postings))
	for i := range c.Postings {
		p, err := decidePosting(s, i, &c.Postings[i])
		if err != nil {
			return nil, err
		}
		e.Postings[i] = p
		var okD, okC bool
		effects, okD = addEffect(effects, s.accounts[p.Debit], p.Amount.Units, Units{})
		effects, okC = addEffect(effects, s.accounts[p.Credit], Units{}, p.Amount.Units)
		if !okD || !okC {
			return nil, fieldErrf("postings", ErrBalanceOverflow, "postings to one account exceed %d digits", DigitsMax)
		}
	}
	for _, ef := range effects {
		if err := checkEffect(ef); err != nil {
			return nil, err
		}
	}
	return e, nil
}

func decidePosting(s *State, i int, in *PostingInput) (Posting, error) {
	// Field names are built only on failure: this runs for every posting.
	field := func(name string) string { return fmt.Sprintf("postings[%d].%s", i, name) }
	asset, ok := s.assets[in.Asset]
	if !ok {
		return Posting{}, fieldErr(field("asset"), ErrAssetNotFound)
	}
	if err := checkPostingAccount(s, in.Debit, in.Asset); err != nil {
		return Posting{}, fieldErr(field("debit_account"), err)
	}
	if err := checkPostingAccount(s, in.Credit, in.Asset); err != nil {
		return Posting{}, fieldErr(field("credit_account"), err)
	}
	u, err := in.amount.Units(asset.Scale)
	if err != nil {
		return Posting{}, fieldErr(field("amount"), err)
	}
	return Posting{Debit: in.Debit, Credit: in.Credit, Asset: in.Asset, Amount: Amount{Units: u, Scale: asset.Scale}}, nil
}

func checkPostingAccount(s *State, id, asset string) error {
	acc, ok := s.accounts[id]
	switch {
	case !ok:
		return ErrAccountNotFound
	case acc.Closed:
		return ErrAccountClosed
	case acc.Asset != asset:
		return fmt.Errorf("account is in %s, posting in %s: %w", acc.Asset, asset, ErrAssetMismatch)
	}
	return nil
}

// addEffect adds a posting's movement to its account's effect. It reports
// false when the account's total in this transfer has more than DigitsMax digits.
func addEffect(effects []effect, acc *Account, debit, credit Units) ([]effect, bool) {
	for i := range effects {
		if effects[i].acc == acc {
			var okD, okC bool
			effects[i].debit, okD = effects[i].debit.CheckedAdd(debit)
			effects[i].credit, okC = effects[i].credit.CheckedAdd(credit)
			return effects, okD && okC
		}
	}
	return append(effects, effect{acc: acc, debit: debit, credit: credit}), true
}

// checkEffect refuses a movement that would overflow a balance field or cross a
// bound. A bound is checked only in the direction the transfer moves the account,
// so an account already outside a bound can always be brought back toward it.
func checkEffect(ef effect) error {
	a := ef.acc
	field := "postings"
	next := *a
	var okD, okC bool
	next.DebitsPosted, okD = a.DebitsPosted.CheckedAdd(ef.debit)
	next.CreditsPosted, okC = a.CreditsPosted.CheckedAdd(ef.credit)
	if !okD || !okC || !sideInRange(&next) {
		return fieldErrf(field, ErrBalanceOverflow, "account %s", a.ID)
	}
	delta := next.Balance().Sub(a.Balance())
	if a.Min != nil && delta.Sign() < 0 && next.Available().Cmp(*a.Min) < 0 {
		return fieldErrf(field, ErrBelowMinBalance, "account %s would have %s available, min %s",
			a.ID, next.Available().Format(a.Scale), a.Min.Format(a.Scale))
	}
	if a.Max != nil && delta.Sign() > 0 && next.Ceiling().Cmp(*a.Max) > 0 {
		return fieldErrf(field, ErrAboveMaxBalance, "account %s would reach %s, max %s",
			a.ID, next.Ceiling().Format(a.Scale), a.Max.Format(a.Scale))
	}
	return nil
}

// transferDiff names the first field in which a retried transfer differs from
// the committed one, or "". An omitted effective_at matches any.
func transferDiff(prior *TransferCommitted, c *CreateTransfer) string {
	if len(prior.Postings) != len(c.Postings) {
		return "postings"
	}
	for i, p := range prior.Postings {
		in := &c.Postings[i]
		prefix := fmt.Sprintf("postings[%d].", i)
		switch {
		case p.Debit != in.Debit:
			return prefix + "debit_account"
		case p.Credit != in.Credit:
			return prefix + "credit_account"
		case p.Asset != in.Asset:
			return prefix + "asset"
		}
		u, err := in.amount.Units(p.Amount.Scale)
		if err != nil || u.Cmp(p.Amount.Units) != 0 {
			return prefix + "amount"
		}
	}
	switch {
	case prior.Reference != c.Reference:
		return "reference"
	case !maps.Equal(prior.Metadata, c.Metadata):
		return "metadata"
	case !c.EffectiveAt.IsZero() && !c.EffectiveAt.Equal(prior.EffectiveAt):
		return "effective_at"
	}
	return ""
}
