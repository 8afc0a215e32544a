package domain

import (
	"fmt"
	"maps"
	"time"
)

func decideTransfer(s *State, c *CreateTransfer, now time.Time) (Event, error) {
	return decideTransferFor(s, c, now, s.alertHold)
}

// decideTransferFor decides c where raised is the AlertRaised just before
// (nil: none), whose hold alone may carry an alert (c.Alert).
func decideTransferFor(s *State, c *CreateTransfer, now time.Time, raised *AlertRaised) (Event, error) {
	if !c.validated {
		panic("domain: Decide on an unvalidated CreateTransfer")
	}
	if err := checkRetry(s, c.ID, &c.priors, func(prior Event) string { return transferDiff(prior, c) }); err != nil {
		return nil, err
	}
	if err := checkEffectiveAt(s, c.EffectiveAt, now); err != nil {
		return nil, err
	}
	if c.Alert != "" {
		if err := checkAlertHold(raised, holdOf(c)); err != nil {
			return nil, err
		}
	}
	if c.Pending && len(s.holds) >= HoldsMax {
		return nil, fieldErrf("pending", ErrTooManyHolds, "%d open", len(s.holds))
	}
	effectiveAt := c.EffectiveAt
	if effectiveAt.IsZero() {
		effectiveAt = now.UTC().Truncate(time.Microsecond)
	}
	if err := checkOpenPeriod(s, effectiveAt); err != nil {
		return nil, err
	}
	postings := make([]Posting, len(c.Postings))
	fx := make(effects, 0, effectsInline)
	for i := range c.Postings {
		p, err := decidePosting(s, i, &c.Postings[i])
		if err != nil {
			return nil, err
		}
		postings[i] = p
		debit, credit := s.accounts.Get(p.Debit), s.accounts.Get(p.Credit)
		var okD, okC bool
		if c.Pending {
			fx, okD = fx.add(debit, Units{}, Units{}, p.Amount.Units, Units{})
			fx, okC = fx.add(credit, Units{}, Units{}, Units{}, p.Amount.Units)
		} else {
			fx, okD = fx.add(debit, p.Amount.Units, Units{}, Units{}, Units{})
			fx, okC = fx.add(credit, Units{}, p.Amount.Units, Units{}, Units{})
		}
		if !okD || !okC {
			return nil, fieldErrf("postings", ErrBalanceOverflow, "postings to one account exceed %d digits", DigitsMax)
		}
	}
	if err := fx.check(); err != nil {
		return nil, err
	}
	// A rule's own hold is not the monitoring's to judge (CreateTransfer.Alert).
	if c.Alert == "" {
		if err := s.checkBeforeRules(postings, effectiveAt, fx); err != nil {
			return nil, err
		}
	}
	if !c.Pending {
		return TransferCommitted{ID: c.ID, Postings: postings, Reference: c.Reference, Metadata: maps.Clone(c.Metadata), EffectiveAt: effectiveAt}, nil
	}
	e := TransferPending{ID: c.ID, Postings: postings, Reference: c.Reference, Metadata: maps.Clone(c.Metadata),
		EffectiveAt: effectiveAt, TimeoutSeconds: c.TimeoutSeconds, Alert: c.Alert}
	if c.TimeoutSeconds > 0 {
		at := now.UTC().Truncate(time.Microsecond).Add(time.Duration(c.TimeoutSeconds) * time.Second)
		e.ExpiresAt = &at
	}
	return e, nil
}

func decidePosting(s *State, i int, in *PostingInput) (Posting, error) {
	asset, ok := s.assets[in.Asset]
	if !ok {
		return Posting{}, fieldErr(fmt.Sprintf("postings[%d].asset", i), ErrAssetNotFound)
	}
	if _, _, err := postingAccounts(s, i, in.Debit, in.Credit, in.Asset); err != nil {
		return Posting{}, err
	}
	u, err := in.amount.Units(asset.Scale)
	if err != nil {
		return Posting{}, fieldErr(fmt.Sprintf("postings[%d].amount", i), err)
	}
	return Posting{Debit: in.Debit, Credit: in.Credit, Asset: in.Asset, Amount: Amount{Units: u, Scale: asset.Scale}}, nil
}

// transferDiff names the first field in which a retried transfer differs from
// the event that took its id, or "". An omitted effective_at matches any.
func transferDiff(prior Event, c *CreateTransfer) string {
	var (
		postings    []Posting
		reference   string
		metadata    map[string]string
		effectiveAt time.Time
		timeout     uint32
		pending     bool
		alert       string
	)
	switch p := prior.(type) {
	case TransferCommitted:
		postings, reference, metadata, effectiveAt = p.Postings, p.Reference, p.Metadata, p.EffectiveAt
	case TransferPending:
		postings, reference, metadata, effectiveAt, timeout, pending, alert = p.Postings, p.Reference, p.Metadata, p.EffectiveAt, p.TimeoutSeconds, true, p.Alert
	default:
		return "id" // taken by a post, a void or a reversal
	}
	if field := postingsDiff(postings, c.Postings); field != "" {
		return field
	}
	switch {
	case pending != c.Pending:
		return "pending"
	case timeout != c.TimeoutSeconds:
		return "timeout"
	case alert != c.Alert:
		return "alert"
	case reference != c.Reference:
		return "reference"
	case !maps.Equal(metadata, c.Metadata):
		return "metadata"
	case !c.EffectiveAt.IsZero() && !c.EffectiveAt.Equal(effectiveAt):
		return "effective_at"
	}
	return ""
}

func postingsDiff(prior []Posting, in []PostingInput) string {
	if len(prior) != len(in) {
		return "postings"
	}
	for i, p := range prior {
		q := &in[i]
		prefix := fmt.Sprintf("postings[%d].", i)
		switch {
		case p.Debit != q.Debit:
			return prefix + "debit_account"
		case p.Credit != q.Credit:
			return prefix + "credit_account"
		case p.Asset != q.Asset:
			return prefix + "asset"
		}
		u, err := q.amount.Units(p.Amount.Scale)
		if err != nil || u.Cmp(p.Amount.Units) != 0 {
			return prefix + "amount"
		}
	}
	return ""
}

// amountsDiff compares optional per-posting amounts with those recorded; an
// omitted list matches any.
func amountsDiff(recorded []Posting, in []Decimal) string {
	if len(in) == 0 {
		return ""
	}
	if len(in) != len(recorded) {
		return "amounts"
	}
	for i, p := range recorded {
		u, err := in[i].Units(p.Amount.Scale)
		if err != nil || u.Cmp(p.Amount.Units) != 0 {
			return fmt.Sprintf("amounts[%d]", i)
		}
	}
	return ""
}
