package domain

import "maps"

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
	if n := len(s.assets); n >= s.policy.assetsMax() {
		return nil, fieldErrf("code", ErrTooManyAssets, "%d defined", n)
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
	min, max, err := bounds(c.min, c.max, asset.Scale)
	if err != nil {
		return nil, err
	}
	e := AccountOpened{ID: c.ID, Asset: c.Asset, Normal: c.Normal, MinBalance: min, MaxBalance: max, Metadata: maps.Clone(c.Metadata)}
	if a, ok := s.accounts.Lookup(c.ID); ok {
		opened := accountAsOpened(a)
		if a.Amended {
			// Bounds or metadata changed since: compare with the request
			// that opened it, which only the log still holds.
			prior, have := c.prior(a.Position)
			if !have {
				return nil, &NeedPriorError{Position: a.Position}
			}
			if p, ok := prior.(AccountOpened); ok && p.ID == c.ID {
				opened = p
			}
		}
		if field := accountDiff(&opened, &e); field != "" {
			return nil, fieldErr(field, ErrExistsWithDifferentFields)
		}
		return nil, &ExistsError{Position: a.Position}
	}
	if n := s.accounts.Len(); n >= s.policy.accountsMax() {
		return nil, fieldErrf("id", ErrTooManyAccounts, "%d open or closed", n)
	}
	return e, nil
}

// accountAsOpened is the AccountOpened of an account never amended.
func accountAsOpened(a *Account) AccountOpened {
	o := AccountOpened{ID: a.ID, Asset: a.Asset, Normal: a.Normal, Metadata: a.Metadata()}
	if m := a.Min(); m != nil {
		o.MinBalance = &Amount{Units: *m, Scale: a.Scale}
	}
	if m := a.Max(); m != nil {
		o.MaxBalance = &Amount{Units: *m, Scale: a.Scale}
	}
	return o
}

// bounds turns optional decimal bounds into amounts at scale, min <= max.
func bounds(min, max *Decimal, scale uint8) (*Amount, *Amount, error) {
	lo, err := boundAmount("min_balance", min, scale)
	if err != nil {
		return nil, nil, err
	}
	hi, err := boundAmount("max_balance", max, scale)
	if err != nil {
		return nil, nil, err
	}
	if lo != nil && hi != nil && lo.Units.Cmp(hi.Units) > 0 {
		return nil, nil, fieldErrf("max_balance", ErrInvalidField, "%s is below min_balance %s", hi, lo)
	}
	return lo, hi, nil
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
// one that opened the account, or "".
func accountDiff(opened, e *AccountOpened) string {
	switch {
	case opened.Asset != e.Asset:
		return "asset"
	case opened.Normal != e.Normal:
		return "normal_balance"
	case !sameBound(opened.MinBalance, e.MinBalance):
		return "min_balance"
	case !sameBound(opened.MaxBalance, e.MaxBalance):
		return "max_balance"
	case !maps.Equal(opened.Metadata, e.Metadata):
		return "metadata"
	}
	return ""
}

func sameBound(a, b *Amount) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Units.Cmp(b.Units) == 0
}

// openAccount returns the account, refusing a missing or closed one.
func openAccount(s *State, id string) (*Account, error) {
	a, ok := s.accounts.Lookup(id)
	switch {
	case !ok:
		return nil, fieldErr("account_id", ErrAccountNotFound)
	case a.Closed:
		return nil, fieldErr("account_id", ErrAccountClosed)
	}
	return a, nil
}

func decideBounds(s *State, c *SetAccountBounds) (Event, error) {
	if !c.validated {
		panic("domain: Decide on an unvalidated SetAccountBounds")
	}
	a, err := openAccount(s, c.AccountID)
	if err != nil {
		return nil, err
	}
	min, max, err := bounds(c.min, c.max, a.Scale)
	if err != nil {
		return nil, err
	}
	return AccountBoundsChanged{ID: a.ID, MinBalance: min, MaxBalance: max}, nil
}

func decideMetadata(s *State, c *SetAccountMetadata) (Event, error) {
	if !c.validated {
		panic("domain: Decide on an unvalidated SetAccountMetadata")
	}
	a, err := openAccount(s, c.AccountID)
	if err != nil {
		return nil, err
	}
	return AccountMetadataSet{ID: a.ID, Metadata: maps.Clone(c.Metadata)}, nil
}

// decideClose closes an account. Closing a closed account answers EXISTS at
// the close; an account with pending amounts cannot close (a hold could not
// resolve into it).
func decideClose(s *State, c *CloseAccount) (Event, error) {
	if !c.validated {
		panic("domain: Decide on an unvalidated CloseAccount")
	}
	a, ok := s.accounts.Lookup(c.AccountID)
	switch {
	case !ok:
		return nil, fieldErr("account_id", ErrAccountNotFound)
	case a.Closed:
		return nil, &ExistsError{Position: a.ClosedAt()}
	case !a.DebitsPending.IsZero() || !a.CreditsPending.IsZero():
		return nil, fieldErrf("account_id", ErrAccountHasPending, "%s debit, %s credit pending",
			a.DebitsPending.Format(a.Scale), a.CreditsPending.Format(a.Scale))
	}
	return AccountClosed{ID: a.ID}, nil
}
