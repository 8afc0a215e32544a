package domain

import (
	"fmt"
	"strings"
)

// Freezing: an account frozen (by FreezeAccounts, or by a monitoring rule's
// freeze action) is refused as the debit of any posting that moves money out
// of it (a transfer, a hold, the post of a hold, a reversal), with
// ACCOUNT_FROZEN naming the posting's debit account, until it is unfrozen.
// Credits still pass, and so do voids and expiries: they return money.

// Event types of freezing.
const (
	TypeAccountFrozen   = "AccountFrozen"
	TypeAccountUnfrozen = "AccountUnfrozen"
)

// Limits of freezing: wire contracts, documented in the proto.
const (
	// FreezeReasonLenMax bounds a freeze's or an unfreeze's reason, in bytes.
	FreezeReasonLenMax = 1024
	// FreezesPerRequestMax bounds the accounts of one FreezeAccounts.
	FreezesPerRequestMax = 1000
	// AlertIDLenMax bounds an alert's id (<ledger>:<position>:<rule>:<account>).
	AlertIDLenMax = 512
)

// ErrAccountFrozen refuses a debit of a frozen account.
var ErrAccountFrozen error = NewOutcome("ACCOUNT_FROZEN", "account frozen")

// AccountFrozen freezes an account. Alert is the monitoring alert whose
// rule's freeze action asked for it (absent for a freeze by hand): a freeze
// for an alert is recorded even when the account is frozen already, so that
// AlertFreezeMark moves past that alert (see FreezeAccount).
type AccountFrozen struct {
	ID     string     `json:"id"`
	Reason string     `json:"reason,omitempty"`
	Alert  *AlertMark `json:"alert,omitempty"`
}

// AccountUnfrozen lifts an account's freeze.
type AccountUnfrozen struct {
	ID     string `json:"id"`
	Reason string `json:"reason,omitempty"`
}

// AlertMark is an alert's place in the order alerts are raised: by position,
// then by id after the ledger's name (AlertKey).
type AlertMark struct {
	Position uint64 `json:"position"`
	ID       string `json:"id"`
}

// After reports whether m comes after o.
func (m AlertMark) After(o AlertMark) bool { return m.after(o) }

// after reports whether m comes after o.
func (m AlertMark) after(o AlertMark) bool {
	return m.Position > o.Position || m.Position == o.Position && AlertKey(m.ID) > AlertKey(o.ID)
}

// AlertKey is an alert id less its ledger's name: <position>:<rule>:<account>.
// A log imported under another name keeps the ids its events name (they are
// its payloads'), while its evaluator names alerts after the new ledger: the
// same alert, by its key. A ledger's name holds no ':'.
func AlertKey(id string) string {
	_, key, _ := strings.Cut(id, ":")
	return key
}

func (AccountFrozen) EventType() string   { return TypeAccountFrozen }
func (AccountUnfrozen) EventType() string { return TypeAccountUnfrozen }

// FreezeAccount freezes an account. With Alert set it is a rule's freeze
// action: acted on at most once, whatever retries or restarts repeat it
// (an alert at or before the state's AlertFreezeMark answers EXISTS, even
// after the account was unfrozen since).
type FreezeAccount struct {
	AccountID string
	Reason    string
	Alert     *AlertMark

	validated bool
}

// CommandID is the account's id (an alert's freeze: the alert's id).
func (c *FreezeAccount) CommandID() string {
	if c.Alert != nil {
		return c.Alert.ID
	}
	return c.AccountID
}

func (c *FreezeAccount) Validate() error {
	if err := checkID("account_ids", c.AccountID); err != nil {
		return err
	}
	if err := checkFreezeReason(c.Reason); err != nil {
		return err
	}
	if c.Alert != nil && (c.Alert.Position == 0 || c.Alert.ID == "" || len(c.Alert.ID) > AlertIDLenMax) {
		return fieldErrf("alert", ErrInvalidField, "an alert needs a position and an id of 1..%d bytes", AlertIDLenMax)
	}
	c.validated = true
	return nil
}

// UnfreezeAccount lifts an account's freeze.
type UnfreezeAccount struct {
	AccountID string
	Reason    string

	validated bool
}

func (c *UnfreezeAccount) CommandID() string { return c.AccountID }

func (c *UnfreezeAccount) Validate() error {
	if err := checkID("account_ids", c.AccountID); err != nil {
		return err
	}
	if err := checkFreezeReason(c.Reason); err != nil {
		return err
	}
	c.validated = true
	return nil
}

func checkFreezeReason(r string) error {
	if n := len(r); n > FreezeReasonLenMax {
		return fieldErrf("reason", ErrInvalidField, "%d bytes, at most %d", n, FreezeReasonLenMax)
	}
	if !validText(r) {
		return fieldErrf("reason", ErrInvalidField, "must be UTF-8 without NUL")
	}
	return nil
}

// AlertFreezeMark is the last alert whose freeze action the ledger recorded
// (zero: none): the alerter's freeze pass resumes after it.
func (s *State) AlertFreezeMark() AlertMark { return s.alertMark }

// decideFreeze freezes an open account: EXISTS at the freeze in force when it
// is frozen already, or for an alert acted on already.
func decideFreeze(s *State, c *FreezeAccount) (Event, error) {
	if !c.validated {
		panic("domain: Decide on an unvalidated FreezeAccount")
	}
	a, err := openAccount(s, c.AccountID)
	if err != nil {
		return nil, fieldErr("account_ids", err)
	}
	if c.Alert != nil {
		if !c.Alert.after(s.alertMark) {
			return nil, &ExistsError{Position: s.alertMarkPos}
		}
		mark := *c.Alert
		return AccountFrozen{ID: a.ID, Reason: c.Reason, Alert: &mark}, nil
	}
	if at := a.FrozenAt(); at != 0 {
		return nil, &ExistsError{Position: at}
	}
	return AccountFrozen{ID: a.ID, Reason: c.Reason}, nil
}

// decideUnfreeze lifts a freeze: EXISTS (at the last unfreeze, 0 if none)
// when the account is not frozen.
func decideUnfreeze(s *State, c *UnfreezeAccount) (Event, error) {
	if !c.validated {
		panic("domain: Decide on an unvalidated UnfreezeAccount")
	}
	a, ok := s.accounts.Lookup(c.AccountID)
	switch {
	case !ok:
		return nil, fieldErr("account_ids", ErrAccountNotFound)
	case a.FrozenAt() == 0:
		return nil, &ExistsError{Position: a.UnfrozenAt()}
	}
	return AccountUnfrozen{ID: a.ID, Reason: c.Reason}, nil
}

func (s *State) evolveFrozen(pos uint64, e *AccountFrozen) {
	a := s.mustAccount(e.ID, pos)
	if a.Closed {
		panic(fmt.Sprintf("domain: account %s frozen while closed (position %d)", e.ID, pos))
	}
	if e.Alert != nil {
		if !e.Alert.after(s.alertMark) {
			panic(fmt.Sprintf("domain: freeze at %d for alert %s, not after %s", pos, e.Alert.ID, s.alertMark.ID))
		}
		mark, markPos := s.alertMark, s.alertMarkPos
		s.alertMark, s.alertMarkPos = *e.Alert, pos
		s.undo(func() { s.alertMark, s.alertMarkPos = mark, markPos })
	} else if a.FrozenAt() != 0 {
		panic(fmt.Sprintf("domain: account %s frozen twice (position %d)", e.ID, pos))
	}
	if a.FrozenAt() == 0 {
		s.saveAccount(a)
		t := *a.readTerms()
		t.frozenAt = pos
		a.setTerms(t)
	}
}

func (s *State) evolveUnfrozen(pos uint64, e *AccountUnfrozen) {
	a := s.mustAccount(e.ID, pos)
	if a.FrozenAt() == 0 {
		panic(fmt.Sprintf("domain: account %s unfrozen while not frozen (position %d)", e.ID, pos))
	}
	s.saveAccount(a)
	t := *a.readTerms()
	t.frozenAt, t.unfrozenAt = 0, pos
	a.setTerms(t)
}

// checkNotFrozen refuses a posting whose debit account is frozen.
func checkNotFrozen(s *State, field, debit string) error {
	if a, ok := s.accounts.Lookup(debit); ok && a.FrozenAt() != 0 {
		return fieldErrf(field, ErrAccountFrozen, "account %s frozen at position %d", debit, a.FrozenAt())
	}
	return nil
}
