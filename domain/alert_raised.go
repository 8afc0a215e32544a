package domain

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Raising alerts: an after-commit rule's alert is computed from the log by
// an Evaluator (the alerts projection's), and then written into the log as
// an AlertRaised event by ledgerd's alerter, through the writer. So every
// alert is on the stream, reaches webhooks and the Go consumer like any
// event, in position order and under the hash chain; audit verify checks
// each AlertRaised against its own replay of the evaluator, so what the
// event says is not taken from a read model on trust.
//
// Alerts are raised in the order the evaluator raises them (AlertMark: by
// position, then id), each at most once: the ledger keeps the last one
// raised (AlertRaiseMark), and a RaiseAlert at or before it answers EXISTS.

// TypeAlertRaised is the type of an AlertRaised event in the log.
const TypeAlertRaised = "AlertRaised"

// Limits of an alert as the log records it: the evaluator's alerts are far
// inside them (one counterparty, three or four figures).
const (
	// AlertCounterpartiesMax bounds an alert's counterparties.
	AlertCounterpartiesMax = 16
	// AlertFiguresMax bounds an alert's figures; AlertFigureLenMax each
	// figure's name and value, in bytes.
	AlertFiguresMax   = 16
	AlertFigureLenMax = 256
)

// AlertRaised is an after-commit rule's alert, raised by the event at
// Position (before this one). RecordedAt is that event's recorded time,
// EffectiveAt its effective time (none for an event without one); Freeze
// says whether the rule freezes (the freeze is an AccountFrozen of its own).
// HoldAccount is set when the rule holds the triggering amount: the hold
// (AlertHold) is the event right after this one, unless HoldRefused says
// why the writer refused it.
type AlertRaised struct {
	ID             string            `json:"id"`
	Rule           string            `json:"rule"`
	RuleVersion    uint32            `json:"rule_version"`
	Position       uint64            `json:"position"`
	TransferID     string            `json:"transfer_id,omitempty"`
	Account        string            `json:"account"`
	Counterparties []string          `json:"counterparties,omitempty"`
	Asset          string            `json:"asset"`
	Figures        map[string]string `json:"figures,omitempty"`
	Freeze         bool              `json:"freeze,omitempty"`
	HoldAccount    string            `json:"hold_account,omitempty"`
	HoldRefused    string            `json:"hold_refused,omitempty"`
	RecordedAt     time.Time         `json:"recorded_at"`
	EffectiveAt    *time.Time        `json:"effective_at,omitempty"`
}

func (AlertRaised) EventType() string { return TypeAlertRaised }

// AlertRaisedOf is the event that raises a.
func AlertRaisedOf(a *Alert) AlertRaised {
	e := AlertRaised{ID: a.ID, Rule: a.RuleID, RuleVersion: a.RuleVersion, Position: a.Position, TransferID: a.TransferID,
		Account: a.Account, Counterparties: a.Counterparties, Asset: a.Asset, Figures: a.Figures, Freeze: a.Freeze,
		HoldAccount: a.HoldAccount, RecordedAt: a.RecordedAt.UTC()}
	if !a.EffectiveAt.IsZero() {
		at := a.EffectiveAt.UTC()
		e.EffectiveAt = &at
	}
	return e
}

// Alert is the alert e raises.
func (e *AlertRaised) Alert() Alert {
	a := Alert{ID: e.ID, RuleID: e.Rule, RuleVersion: e.RuleVersion, Position: e.Position, TransferID: e.TransferID,
		Account: e.Account, Counterparties: e.Counterparties, Asset: e.Asset, Figures: e.Figures, Freeze: e.Freeze,
		HoldAccount: e.HoldAccount, RecordedAt: e.RecordedAt}
	if e.EffectiveAt != nil {
		a.EffectiveAt = *e.EffectiveAt
	}
	return a
}

// AlertHold is the hold e's rule places (nil when it holds nothing, or the
// writer refused it): the triggering amount (figure "hold": every posting
// crediting the account above the threshold), from the alert's account to
// the rule's hold account, until posted or voided.
func (e *AlertRaised) AlertHold() *CreateTransfer {
	if !e.asksHold() {
		return nil
	}
	return &CreateTransfer{ID: AlertHoldID(e.ID), Pending: true, Alert: e.ID,
		Postings: []PostingInput{{Debit: e.Account, Credit: e.HoldAccount, Asset: e.Asset, Amount: e.Figures["hold"]}}}
}

// asksHold says a hold must follow e: its rule holds, and the writer did
// not refuse the hold.
func (e *AlertRaised) asksHold() bool { return e.HoldAccount != "" && e.HoldRefused == "" }

// Mark is e's alert's place in the order alerts are raised.
func (e *AlertRaised) Mark() AlertMark { return AlertMark{Position: e.Position, ID: e.ID} }

// RaiseAlert writes an alert into the log (ledgerd's alerter, never a
// client): EXISTS for an alert at or before the ledger's AlertRaiseMark.
type RaiseAlert struct {
	Alert AlertRaised

	validated bool
}

// CommandID is the alert's id.
func (c *RaiseAlert) CommandID() string { return c.Alert.ID }

// Validate checks the alert's form: its id names its position, rule and
// account (<ledger>:<position>:<rule>:<account>), and every size is
// within the limits above.
func (c *RaiseAlert) Validate() error {
	a := &c.Alert
	key := strconv.FormatUint(a.Position, 10) + ":" + a.Rule + ":" + a.Account
	switch {
	case a.Position == 0 || len(a.ID) > AlertIDLenMax || AlertKey(a.ID) != key || !ValidLedgerName(strings.TrimSuffix(a.ID, ":"+key)):
		return fieldErrf("alert.id", ErrInvalidField, "%.80q is not <ledger>:%d:%s:%s of at most %d bytes", a.ID, a.Position, a.Rule, a.Account, AlertIDLenMax)
	case a.RuleVersion == 0:
		return fieldErrf("alert.rule_version", ErrInvalidField, "must be 1 or more")
	case a.RecordedAt.IsZero():
		return fieldErrf("alert.recorded_at", ErrInvalidField, "missing")
	case len(a.Counterparties) > AlertCounterpartiesMax:
		return fieldErrf("alert.counterparties", ErrInvalidField, "%d, at most %d", len(a.Counterparties), AlertCounterpartiesMax)
	case len(a.Figures) > AlertFiguresMax:
		return fieldErrf("alert.figures", ErrInvalidField, "%d, at most %d", len(a.Figures), AlertFiguresMax)
	case len(a.HoldRefused) > FreezeReasonLenMax || !validText(a.HoldRefused) || a.HoldRefused != "" && a.HoldAccount == "":
		return fieldErrf("alert.hold_refused", ErrInvalidField, "UTF-8 without NUL, at most %d bytes, for a hold only", FreezeReasonLenMax)
	}
	if a.HoldAccount != "" {
		if err := checkID("alert.hold_account", a.HoldAccount); err != nil {
			return err
		}
	}
	if err := checkID("alert.account", a.Account); err != nil {
		return err
	}
	if err := checkID("alert.rule", a.Rule); err != nil {
		return err
	}
	if a.TransferID != "" {
		if err := checkID("alert.transfer_id", a.TransferID); err != nil {
			return err
		}
	}
	for _, cp := range a.Counterparties {
		if err := checkID("alert.counterparties", cp); err != nil {
			return err
		}
	}
	for k, v := range a.Figures {
		if len(k) > AlertFigureLenMax || len(v) > AlertFigureLenMax || !validText(k) || !validText(v) {
			return fieldErrf("alert.figures", ErrInvalidField, "%.40q: names and values of UTF-8 without NUL, at most %d bytes", k, AlertFigureLenMax)
		}
	}
	a.RecordedAt = a.RecordedAt.UTC()
	if a.EffectiveAt != nil {
		at := a.EffectiveAt.UTC()
		a.EffectiveAt = &at
	}
	c.validated = true
	return nil
}

// AlertRaiseMark is the last alert the ledger raised (zero: none): an
// alerter resumes after it.
func (s *State) AlertRaiseMark() AlertMark { return s.raiseMark }

// decideRaise raises an alert after the ledger's last one, of a rule the
// ledger defined (at that version or before) on an account it holds, raised
// by an event it holds.
func decideRaise(s *State, c *RaiseAlert, now time.Time) (Event, error) {
	if !c.validated {
		panic("domain: Decide on an unvalidated RaiseAlert")
	}
	a := &c.Alert
	if !a.Mark().after(s.raiseMark) {
		return nil, &ExistsError{Position: s.raiseMarkPos}
	}
	if a.Position > s.position {
		return nil, fieldErrf("alert.position", ErrInvalidField, "%d, after the ledger's head %d", a.Position, s.position)
	}
	if r, ok := s.monitor.rules[a.Rule]; !ok || r.Version < a.RuleVersion {
		return nil, fieldErrf("alert.rule", ErrInvalidField, "rule %s version %d not defined", a.Rule, a.RuleVersion)
	}
	if want := s.monitor.holdAccount(a.Rule, a.RuleVersion); a.HoldAccount != want {
		return nil, fieldErrf("alert.hold_account", ErrInvalidField, "rule %s version %d holds towards %q, not %q",
			a.Rule, a.RuleVersion, want, a.HoldAccount)
	}
	if _, ok := s.accounts.Lookup(a.Account); !ok {
		return nil, fieldErr("alert.account", ErrAccountNotFound)
	}
	if a.HoldRefused != "" && holdPlaced(s, a, now) {
		return nil, fieldErrf("alert.hold_refused", ErrHoldNotRefused, "alert %s", a.ID)
	}
	return *a, nil
}

// holdPlaced reports whether the hold of a (its refusal left out) would be
// placed on s, at now.
func holdPlaced(s *State, a *AlertRaised, now time.Time) bool {
	asked := *a
	asked.HoldRefused = ""
	c := asked.AlertHold()
	if c.Validate() != nil {
		return false
	}
	_, err := decideTransferFor(s, c, now, &asked)
	return err == nil
}

func (s *State) evolveRaised(pos uint64, e *AlertRaised) {
	if !e.Mark().after(s.raiseMark) || e.Position >= pos {
		panic(fmt.Sprintf("domain: alert %s raised at %d, not after %s or not after its event", e.ID, pos, s.raiseMark.ID))
	}
	mark, markPos := s.raiseMark, s.raiseMarkPos
	s.raiseMark, s.raiseMarkPos = e.Mark(), pos
	s.undo(func() { s.raiseMark, s.raiseMarkPos = mark, markPos })
	if e.asksHold() {
		raised := *e
		s.alertHold = &raised
		s.undo(func() { s.alertHold = nil })
	}
}

// AlertHoldPending returns the alert whose hold must be the next event
// (the last event applied raised it): a log may not end there.
func (s *State) AlertHoldPending() (string, bool) {
	if s.alertHold == nil {
		return "", false
	}
	return s.alertHold.ID, true
}

// holdShape is what makes a rule's hold that alert's: compared whole.
type holdShape struct {
	id, alert                    string
	debit, credit, asset, amount string
	plain                        bool // one posting, no timeout, no effective time of its own
}

// holdOf is c's shape; c is a hold (its alert set).
func holdOf(c *CreateTransfer) holdShape {
	h := holdShape{id: c.ID, alert: c.Alert, plain: len(c.Postings) == 1 && c.Pending && c.TimeoutSeconds == 0 && c.EffectiveAt.IsZero()}
	if len(c.Postings) == 1 {
		p := &c.Postings[0]
		h.debit, h.credit, h.asset, h.amount = p.Debit, p.Credit, p.Asset, p.Amount
	}
	return h
}

// checkAlertHold checks a rule's hold, of shape got, against the
// AlertRaised that asks for it (nil: none just before): it must be exactly
// that alert's hold.
func checkAlertHold(raised *AlertRaised, got holdShape) error {
	if raised == nil || !raised.asksHold() || got != holdOf(raised.AlertHold()) {
		return fieldErrf("alert", ErrInvalidField, "a rule's hold is the one the AlertRaised just before asks for, and only that")
	}
	return nil
}

// CheckAlertHolds reports what a writer would have refused of e on state s
// (before e), as to rules' holds: a hold of an alert that is not the one
// the AlertRaised just before asks for, or no hold where one asks for it,
// or an id with AlertHoldIDPrefix that is not a rule's hold. An import and
// an audit check it with this first.
//
// Errors: ErrInvalidField, as a *FieldError.
func CheckAlertHolds(s *State, e Event) error {
	p, pending := e.(TransferPending)
	switch {
	case pending && p.Alert != "":
		// Its effective time is the writer's clock's, as the alerter's hold
		// leaves it: not compared.
		got := holdShape{id: p.ID, alert: p.Alert, plain: len(p.Postings) == 1 && p.TimeoutSeconds == 0 && p.ExpiresAt == nil}
		if len(p.Postings) == 1 {
			q := &p.Postings[0]
			got.debit, got.credit, got.asset, got.amount = q.Debit, q.Credit, q.Asset, q.Amount.String()
		}
		return checkAlertHold(s.alertHold, got)
	case s.alertHold != nil:
		return fieldErrf("alert", ErrInvalidField, "the hold of alert %s does not follow its AlertRaised", s.alertHold.ID)
	}
	if _, expiry := e.(PendingExpired); !expiry {
		if h, ok := HeaderOf(e); ok && strings.HasPrefix(h.ID, AlertHoldIDPrefix) {
			return fieldErrf("id", ErrInvalidField, "%s: ids beginning %q are those of monitoring rules' holds", h.ID, AlertHoldIDPrefix)
		}
	}
	return nil
}

// CheckRaised reports what a writer would have refused of e, an
// AlertRaised, on state s (before e), recorded at now: its form, an alert
// not after the last one raised, after the head, of a rule or version not
// defined, on no account, or a hold said refused that would be placed.
// Evolve trusts the log; an import and an audit check it with this first
// (what the alert says, only an audit's replay can check).
//
// Errors: ErrInvalidField or ErrAccountNotFound, as a *FieldError.
func CheckRaised(s *State, e *AlertRaised, now time.Time) error {
	c := &RaiseAlert{Alert: *e}
	if err := c.Validate(); err != nil {
		return err
	}
	if _, err := decideRaise(s, c, now); err != nil {
		if errors.Is(err, ErrExists) {
			return fieldErrf("alert.id", ErrInvalidField, "alert %s not after the last raised, %s", e.ID, s.raiseMark.ID)
		}
		return err
	}
	return nil
}

// AlertHoldIDPrefix begins the id of every hold a rule's hold action places
// (AlertHoldID), and of no transfer, post, void or reversal of a client's:
// an id a client took first would keep the alert's hold from being placed.
const AlertHoldIDPrefix = "alert-hold:"

// AlertHoldID is the id of the hold the alert's rule places: the same for
// every retry of it, and not an id a client may take.
func AlertHoldID(alertID string) string {
	sum := sha256.Sum256([]byte(alertID))
	return AlertHoldIDPrefix + hex.EncodeToString(sum[:20])
}

// checkTransferID checks the id of a transfer, post, void or reversal: an
// id, and one with AlertHoldIDPrefix only for a rule's hold (alert set).
func checkTransferID(id, alert string) error {
	if err := checkID("id", id); err != nil {
		return err
	}
	if hasPrefix := strings.HasPrefix(id, AlertHoldIDPrefix); hasPrefix != (alert != "") || hasPrefix && id != AlertHoldID(alert) {
		return fieldErrf("id", ErrInvalidField, "ids beginning %q are those of monitoring rules' holds", AlertHoldIDPrefix)
	}
	return nil
}
