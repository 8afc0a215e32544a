package domain

import (
	"fmt"
	"time"
)

// Reconciliation: an account's external statement (a bank's, a provider's)
// imported line by line into the log, the rules that match it to the ledger's
// movements, and matches made by hand. The matching itself is the
// reconciliation projection's: a pure function of the log, so a replay gives
// the same matches. The writer only keeps lines and manual matches unique and
// checks that what a command names exists.

// Limits of reconciliation commands.
const (
	SourceLenMax      = 64
	ExternalIDLenMax  = 128
	DescriptionLenMax = 1024
	ReasonLenMax      = 256
	// MatchItemsMax bounds each side of a manual match.
	MatchItemsMax = 64
	// MatchingRulesMax bounds an account's rules.
	MatchingRulesMax = 16
	// DateWindowDaysMax bounds a rule's date window.
	DateWindowDaysMax = 31
	// GroupMaxMax bounds the many side of a SPLIT rule: the search over
	// groups is exponential in it.
	GroupMaxMax     = 8
	GroupMaxDefault = 4
	// DateLayout is the layout of value dates.
	DateLayout = "2006-01-02"
)

// Matching rule kinds, as stored in the log.
const (
	RuleReference  = "reference"
	RuleAmountDate = "amount_date"
	RuleSplit      = "split"
	// RuleManual names manual matches; it is not a rule one can set.
	RuleManual = "manual"
)

// Reconciliation event type names.
const (
	TypeStatementImported = "StatementImported"
	TypeMatchingRulesSet  = "MatchingRulesSet"
	TypeMatchedManually   = "MatchedManually"
	TypeUnmatched         = "Unmatched"
)

// ErrLineNotFound and ErrMovementNotFound refuse a match or unmatch that names
// a line or a movement the account does not have.
var (
	ErrLineNotFound     error = NewOutcome("LINE_NOT_FOUND", "statement line not found")
	ErrMovementNotFound error = NewOutcome("MOVEMENT_NOT_FOUND", "movement not found")
)

// StatementImported is one line of an account's external statement.
// Direction is the statement's: credit raises the balance it shows.
type StatementImported struct {
	Account     string `json:"account"`
	Source      string `json:"source"`
	ExternalID  string `json:"external_id"`
	Amount      Amount `json:"amount"`
	Direction   Side   `json:"direction"`
	ValueDate   string `json:"value_date"`
	Reference   string `json:"reference,omitempty"`
	Description string `json:"description,omitempty"`
}

// MatchingRule is one rule of an account's ordered matching rules.
type MatchingRule struct {
	Kind            string  `json:"kind"`
	DateWindowDays  uint8   `json:"date_window_days,omitempty"`
	AmountTolerance *Amount `json:"amount_tolerance,omitempty"`
	GroupMax        uint8   `json:"group_max,omitempty"`
}

// MatchingRulesSet replaces an account's matching rules from its position on.
type MatchingRulesSet struct {
	Account string         `json:"account"`
	Rules   []MatchingRule `json:"rules"`
}

// LineRef names an external line of an account.
type LineRef struct {
	Source     string `json:"source"`
	ExternalID string `json:"external_id"`
}

// MovementRef names a ledger movement: a posting of a posted transfer, of a
// post of a pending one, or of a reversal.
type MovementRef struct {
	TransferID   string `json:"transfer_id"`
	PostingIndex uint16 `json:"posting_index"`
}

// MatchedManually matches lines to movements by hand. It dissolves the
// matches any of them were in.
type MatchedManually struct {
	ID        string        `json:"id"`
	Account   string        `json:"account"`
	Lines     []LineRef     `json:"lines"`
	Movements []MovementRef `json:"movements"`
	Reason    string        `json:"reason"`
}

// Unmatched dissolves the match of a line or a movement; its items are then
// matched by hand only.
type Unmatched struct {
	Account  string       `json:"account"`
	Line     *LineRef     `json:"line,omitempty"`
	Movement *MovementRef `json:"movement,omitempty"`
	Reason   string       `json:"reason"`
}

func (StatementImported) EventType() string { return TypeStatementImported }
func (MatchingRulesSet) EventType() string  { return TypeMatchingRulesSet }
func (MatchedManually) EventType() string   { return TypeMatchedManually }
func (Unmatched) EventType() string         { return TypeUnmatched }

// DefaultMatchingRules are an account's rules until it sets its own.
var DefaultMatchingRules = []MatchingRule{
	{Kind: RuleReference},
	{Kind: RuleAmountDate, DateWindowDays: 2},
	{Kind: RuleSplit, DateWindowDays: 2, GroupMax: GroupMaxDefault},
}

// lineKey and matchKey place lines and manual matches in the id index beside
// transfer ids, which never contain NUL.
func lineKey(account, source, externalID string) string {
	return "\x00line\x00" + account + "\x00" + source + "\x00" + externalID
}

func matchKey(account, id string) string { return "\x00match\x00" + account + "\x00" + id }

// ImportStatementLine records one line of an account's external statement.
type ImportStatementLine struct {
	Account, Source, ExternalID string
	Amount                      string
	Direction                   Side
	ValueDate                   string
	Reference, Description      string

	amount    Decimal
	validated bool
	priors
}

func (c *ImportStatementLine) CommandID() string { return c.ExternalID }

// Validate checks the line on its own.
//
// Errors: ErrInvalidField or ErrInvalidAmount in a *FieldError.
func (c *ImportStatementLine) Validate() error {
	if err := checkID("account", c.Account); err != nil {
		return err
	}
	if err := checkSource("source", c.Source); err != nil {
		return err
	}
	if !ValidExternalID(c.ExternalID) {
		return fieldErrf("external_id", ErrInvalidField, "%q must match [A-Za-z0-9:_.@/-]{1,%d}", truncate(c.ExternalID), ExternalIDLenMax)
	}
	d, err := ParseDecimal(c.Amount)
	if err != nil {
		return fieldErr("amount", err)
	}
	if d.Sign() <= 0 {
		return fieldErrf("amount", ErrInvalidAmount, "%s is not positive", d)
	}
	c.amount = d
	if c.Direction != SideCredit && c.Direction != SideDebit {
		return fieldErrf("direction", ErrInvalidField, "must be credit or debit")
	}
	if _, err := ParseValueDate(c.ValueDate); err != nil {
		return fieldErr("value_date", err)
	}
	if err := checkText("reference", c.Reference, ReferenceLenMax); err != nil {
		return err
	}
	if err := checkText("description", c.Description, DescriptionLenMax); err != nil {
		return err
	}
	c.validated = true
	return nil
}

// ParseValueDate parses a YYYY-MM-DD date between 1970 and 9999.
//
// Errors: ErrInvalidField.
func ParseValueDate(s string) (time.Time, error) {
	t, err := time.Parse(DateLayout, s)
	if err != nil || len(s) != len(DateLayout) {
		return time.Time{}, fmt.Errorf("%q is not a YYYY-MM-DD date: %w", truncate(s), ErrInvalidField)
	}
	if t.Year() < 1970 {
		return time.Time{}, fmt.Errorf("%s is before 1970: %w", s, ErrInvalidField)
	}
	return t, nil
}

// ValidExternalID reports whether s matches [A-Za-z0-9:_.@/-]{1,128}.
func ValidExternalID(s string) bool { return slashedID(s, ExternalIDLenMax) }

func checkSource(field, s string) error {
	if len(s) > SourceLenMax || !ValidID(s) {
		return fieldErrf(field, ErrInvalidField, "%q must match [A-Za-z0-9:_.@-]{1,%d}", truncate(s), SourceLenMax)
	}
	return nil
}

func checkText(field, s string, max int) error {
	if len(s) > max {
		return fieldErrf(field, ErrInvalidField, "%d bytes, at most %d", len(s), max)
	}
	if !validText(s) {
		return fieldErrf(field, ErrInvalidField, "must be UTF-8 without NUL")
	}
	return nil
}

// checkReason requires a reason: manual changes are explained to auditors.
func checkReason(s string) error {
	if s == "" {
		return fieldErrf("reason", ErrInvalidField, "required")
	}
	return checkText("reason", s, ReasonLenMax)
}

// MatchingRuleInput is a rule as a client wrote it.
type MatchingRuleInput struct {
	Kind            string
	DateWindowDays  uint32
	AmountTolerance string
	GroupMax        uint32

	tolerance *Decimal
}

// SetMatchingRules replaces an account's matching rules.
type SetMatchingRules struct {
	Account string
	Rules   []MatchingRuleInput

	validated bool
}

func (c *SetMatchingRules) CommandID() string { return c.Account }

// Validate checks the rules on their own.
//
// Errors: ErrInvalidField or ErrInvalidAmount in a *FieldError.
func (c *SetMatchingRules) Validate() error {
	if err := checkID("account", c.Account); err != nil {
		return err
	}
	if n := len(c.Rules); n == 0 || n > MatchingRulesMax {
		return fieldErrf("rules", ErrInvalidField, "%d rules, want 1..%d", n, MatchingRulesMax)
	}
	for i := range c.Rules {
		if err := c.Rules[i].validate(fmt.Sprintf("rules[%d].", i)); err != nil {
			return err
		}
	}
	c.validated = true
	return nil
}

func (r *MatchingRuleInput) validate(prefix string) error {
	switch r.Kind {
	case RuleReference, RuleAmountDate, RuleSplit:
	default:
		return fieldErrf(prefix+"kind", ErrInvalidField, "%q is not reference, amount_date or split", truncate(r.Kind))
	}
	if r.DateWindowDays > DateWindowDaysMax {
		return fieldErrf(prefix+"date_window_days", ErrInvalidField, "%d days, at most %d", r.DateWindowDays, DateWindowDaysMax)
	}
	switch {
	case r.Kind != RuleSplit && r.GroupMax != 0:
		return fieldErrf(prefix+"group_max", ErrInvalidField, "only a split rule has groups")
	case r.Kind == RuleSplit && r.GroupMax == 0:
		r.GroupMax = GroupMaxDefault
	case r.Kind == RuleSplit && (r.GroupMax < 2 || r.GroupMax > GroupMaxMax):
		return fieldErrf(prefix+"group_max", ErrInvalidField, "%d, want 2..%d", r.GroupMax, GroupMaxMax)
	}
	if r.AmountTolerance != "" {
		d, err := ParseDecimal(r.AmountTolerance)
		if err != nil {
			return fieldErr(prefix+"amount_tolerance", err)
		}
		if d.Sign() < 0 {
			return fieldErrf(prefix+"amount_tolerance", ErrInvalidAmount, "%s is negative", d)
		}
		if d.Sign() > 0 {
			r.tolerance = &d
		}
	}
	return nil
}

// MatchManually matches lines to movements of an account by hand.
type MatchManually struct {
	ID, Account string
	Lines       []LineRef
	Movements   []MovementRef
	Reason      string

	priors
}

func (c *MatchManually) CommandID() string { return c.ID }

// Validate checks the match on its own.
//
// Errors: ErrInvalidField in a *FieldError.
func (c *MatchManually) Validate() error {
	if err := checkID("id", c.ID); err != nil {
		return err
	}
	if err := checkID("account", c.Account); err != nil {
		return err
	}
	if n := len(c.Lines); n == 0 || n > MatchItemsMax {
		return fieldErrf("lines", ErrInvalidField, "%d lines, want 1..%d", n, MatchItemsMax)
	}
	if n := len(c.Movements); n == 0 || n > MatchItemsMax {
		return fieldErrf("movements", ErrInvalidField, "%d movements, want 1..%d", n, MatchItemsMax)
	}
	lines := make(map[LineRef]bool, len(c.Lines))
	for i, l := range c.Lines {
		if err := l.validate(fmt.Sprintf("lines[%d].", i)); err != nil {
			return err
		}
		if lines[l] {
			return fieldErrf(fmt.Sprintf("lines[%d]", i), ErrInvalidField, "named twice")
		}
		lines[l] = true
	}
	movements := make(map[MovementRef]bool, len(c.Movements))
	for i, m := range c.Movements {
		if err := m.validate(fmt.Sprintf("movements[%d].", i)); err != nil {
			return err
		}
		if movements[m] {
			return fieldErrf(fmt.Sprintf("movements[%d]", i), ErrInvalidField, "named twice")
		}
		movements[m] = true
	}
	return checkReason(c.Reason)
}

func (l LineRef) validate(prefix string) error {
	if err := checkSource(prefix+"source", l.Source); err != nil {
		return err
	}
	if !ValidExternalID(l.ExternalID) {
		return fieldErrf(prefix+"external_id", ErrInvalidField, "%q must match [A-Za-z0-9:_.@/-]{1,%d}", truncate(l.ExternalID), ExternalIDLenMax)
	}
	return nil
}

func (m MovementRef) validate(prefix string) error {
	if err := checkID(prefix+"transfer_id", m.TransferID); err != nil {
		return err
	}
	if m.PostingIndex >= PostingsPerTransfer {
		return fieldErrf(prefix+"posting_index", ErrInvalidField, "%d, at most %d", m.PostingIndex, PostingsPerTransfer-1)
	}
	return nil
}

// Unmatch dissolves the match of one line or one movement of an account.
type Unmatch struct {
	Account  string
	Line     *LineRef
	Movement *MovementRef
	Reason   string

	priors
}

func (c *Unmatch) CommandID() string { return c.Account }

// Validate checks the command on its own.
//
// Errors: ErrInvalidField in a *FieldError.
func (c *Unmatch) Validate() error {
	if err := checkID("account", c.Account); err != nil {
		return err
	}
	switch {
	case (c.Line == nil) == (c.Movement == nil):
		return fieldErrf("line", ErrInvalidField, "give exactly one of line and movement")
	case c.Line != nil:
		if err := c.Line.validate("line."); err != nil {
			return err
		}
	default:
		if err := c.Movement.validate("movement."); err != nil {
			return err
		}
	}
	return checkReason(c.Reason)
}
