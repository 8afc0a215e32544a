package domain

import (
	"fmt"
	"strconv"
	"time"
)

// Command is a request to change a ledger. Validate checks what needs no state
// (patterns, bounds, decimal syntax) on the caller's goroutine; Decide checks the
// rest against the ledger's state on the writer's.
type Command interface {
	// CommandID is the idempotency key: an asset code, an account id, a transfer id.
	CommandID() string
	// Validate normalises and checks the command; Decide refuses an unvalidated one.
	//
	// Errors: a *FieldError wrapping ErrInvalidField, ErrInvalidAmount or
	// ErrSameAccount.
	Validate() error
}

// Side is the side of an account on which its balance grows.
type Side uint8

const (
	SideCredit Side = 1
	SideDebit  Side = 2
)

func (s Side) String() string {
	switch s {
	case SideCredit:
		return "credit"
	case SideDebit:
		return "debit"
	}
	return fmt.Sprintf("side(%d)", uint8(s))
}

// MarshalText writes "credit" or "debit".
func (s Side) MarshalText() ([]byte, error) {
	if s != SideCredit && s != SideDebit {
		return nil, fmt.Errorf("side %d: %w", uint8(s), ErrInvalidField)
	}
	return []byte(s.String()), nil
}

// UnmarshalText reads "credit" or "debit".
func (s *Side) UnmarshalText(b []byte) error {
	switch string(b) {
	case "credit":
		*s = SideCredit
	case "debit":
		*s = SideDebit
	default:
		return fmt.Errorf("side %q: %w", b, ErrInvalidField)
	}
	return nil
}

// DefineAsset declares an asset and its scale.
type DefineAsset struct {
	Code  string
	Scale uint32

	validated bool
}

func (c *DefineAsset) CommandID() string { return c.Code }

func (c *DefineAsset) Validate() error {
	if err := checkAssetCode("code", c.Code); err != nil {
		return err
	}
	if c.Scale > ScaleMax {
		return fieldErrf("scale", ErrInvalidField, "%d is over %d", c.Scale, ScaleMax)
	}
	c.validated = true
	return nil
}

// OpenAccount opens an account in one asset. MinBalance and MaxBalance are
// decimal strings, nil for no bound. A pointer, not "" for none: an empty
// string sent by mistake must not silently open an account without its
// overdraft protection.
type OpenAccount struct {
	ID         string
	Asset      string
	Normal     Side
	MinBalance *string
	MaxBalance *string
	Metadata   map[string]string

	min, max  *Decimal
	validated bool
	priors
}

func (c *OpenAccount) CommandID() string { return c.ID }

func (c *OpenAccount) Validate() error {
	if err := checkID("id", c.ID); err != nil {
		return err
	}
	if err := checkAssetCode("asset", c.Asset); err != nil {
		return err
	}
	if c.Normal != SideCredit && c.Normal != SideDebit {
		return fieldErrf("normal_balance", ErrInvalidField, "must be credit or debit")
	}
	var err error
	if c.min, err = optionalDecimal("min_balance", c.MinBalance); err != nil {
		return err
	}
	if c.max, err = optionalDecimal("max_balance", c.MaxBalance); err != nil {
		return err
	}
	if err := checkMetadata("metadata", c.Metadata); err != nil {
		return err
	}
	c.validated = true
	return nil
}

// optionalDecimal parses an optional bound: nil is none, anything else
// (the empty string included) must be a decimal.
//
// Errors: a FieldError wrapping ErrInvalidAmount.
func optionalDecimal(field string, s *string) (*Decimal, error) {
	if s == nil {
		return nil, nil
	}
	d, err := ParseDecimal(*s)
	if err != nil {
		return nil, fieldErr(field, err)
	}
	return &d, nil
}

// CreateTransfer moves money along one or more postings, all or nothing.
// A zero EffectiveAt means "when recorded". A Pending transfer holds the
// amounts until posted, voided, or TimeoutSeconds pass (0: no timeout).
type CreateTransfer struct {
	ID             string
	Postings       []PostingInput
	Reference      string
	Metadata       map[string]string
	EffectiveAt    time.Time
	Pending        bool
	TimeoutSeconds uint32
	// Alert, on a hold only, is the alert whose rule's hold action places
	// it: ledgerd's alerter sets it, never a client (the API has no such
	// field). Monitoring rules do not count such a hold, so a hold rule
	// cannot fire on its own holds.
	Alert string

	validated bool
	priors
}

// priors are the events at positions a command's Decide asked for. They hold
// for one decision only: a command submitted again (a retry after a failed
// append or a rolled back atomic request) may find other events at those
// positions by then, so the writer resets them before each decision.
type priors struct{ byPos map[uint64]Event }

// ResetPriors forgets the events attached by SetPrior.
func (p *priors) ResetPriors() { clear(p.byPos) }

// SetPrior attaches the event at pos, as asked by a NeedPriorError.
func (p *priors) SetPrior(pos uint64, e Event) {
	if p.byPos == nil {
		p.byPos = make(map[uint64]Event, 2)
	}
	p.byPos[pos] = e
}

func (p *priors) prior(pos uint64) (Event, bool) {
	e, ok := p.byPos[pos]
	return e, ok
}

// PriorSetter is a command that may need prior events to be decided.
type PriorSetter interface {
	SetPrior(pos uint64, e Event)
	ResetPriors()
}

// PostingInput is one leg of a transfer as a client wrote it.
type PostingInput struct {
	Debit, Credit, Asset, Amount string

	amount Decimal
}

func (c *CreateTransfer) CommandID() string { return c.ID }

func (c *CreateTransfer) Validate() error {
	if err := checkTransferID(c.ID, c.Alert); err != nil {
		return err
	}
	if n := len(c.Postings); n == 0 || n > PostingsPerTransfer {
		return fieldErrf("postings", ErrInvalidField, "%d postings, want 1..%d", n, PostingsPerTransfer)
	}
	for i := range c.Postings {
		if err := c.Postings[i].validate(i); err != nil {
			return err
		}
	}
	if err := checkLabels(c.Reference, c.Metadata); err != nil {
		return err
	}
	if !c.Pending && c.TimeoutSeconds != 0 {
		return fieldErrf("timeout", ErrInvalidField, "only a pending transfer has a timeout")
	}
	if c.Alert != "" && (!c.Pending || len(c.Alert) > AlertIDLenMax) {
		return fieldErrf("alert", ErrInvalidField, "only a hold names an alert, of at most %d bytes", AlertIDLenMax)
	}
	if time.Duration(c.TimeoutSeconds)*time.Second > TimeoutMax {
		return fieldErrf("timeout", ErrInvalidField, "%ds is over %s", c.TimeoutSeconds, TimeoutMax)
	}
	c.EffectiveAt = canonicalTime(c.EffectiveAt)
	c.validated = true
	return nil
}

// canonicalTime keeps microseconds in UTC, as the log and the read models do
// (Postgres timestamptz); the zero time stays zero.
func canonicalTime(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.Truncate(time.Microsecond).UTC()
}

func checkLabels(reference string, metadata map[string]string) error {
	if len(reference) > ReferenceLenMax {
		return fieldErrf("reference", ErrInvalidField, "%d bytes, at most %d", len(reference), ReferenceLenMax)
	}
	if !validText(reference) {
		return fieldErrf("reference", ErrInvalidField, "must be UTF-8 without NUL")
	}
	return checkMetadata("metadata", metadata)
}

// parseAmounts parses optional per-posting amounts: zero allowed, negative not.
func parseAmounts(in []string) ([]Decimal, error) {
	if len(in) > PostingsPerTransfer {
		return nil, fieldErrf("amounts", ErrInvalidField, "%d amounts, at most %d", len(in), PostingsPerTransfer)
	}
	out := make([]Decimal, len(in))
	for i, a := range in {
		d, err := ParseDecimal(a)
		if err != nil {
			return nil, fieldErr(fmt.Sprintf("amounts[%d]", i), err)
		}
		if d.Sign() < 0 {
			return nil, fieldErrf(fmt.Sprintf("amounts[%d]", i), ErrInvalidAmount, "%s is negative", d)
		}
		out[i] = d
	}
	return out, nil
}

func (p *PostingInput) validate(i int) error {
	// The field's name is built for an error only: every transfer of a
	// batch passes here.
	switch {
	case !ValidID(p.Debit):
		return checkID(postingField(i, "debit_account"), p.Debit)
	case !ValidID(p.Credit):
		return checkID(postingField(i, "credit_account"), p.Credit)
	case p.Debit == p.Credit:
		return fieldErr(postingField(i, "credit_account"), ErrSameAccount)
	case !ValidAssetCode(p.Asset):
		return checkAssetCode(postingField(i, "asset"), p.Asset)
	}
	d, err := ParseDecimal(p.Amount)
	if err != nil {
		return fieldErr(postingField(i, "amount"), err)
	}
	if d.Sign() <= 0 {
		return fieldErrf(postingField(i, "amount"), ErrInvalidAmount, "%s is not positive", d)
	}
	p.amount = d
	return nil
}

// postingField names field name of posting i, for an error.
func postingField(i int, name string) string {
	return "postings[" + strconv.Itoa(i) + "]." + name
}

// PostPending posts a pending transfer: in full, or per posting the Amounts
// given (each at most what is held; the rest is released).
type PostPending struct {
	ID        string
	PendingID string
	Amounts   []string
	Reference string
	Metadata  map[string]string

	amounts   []Decimal
	validated bool
	priors
}

func (c *PostPending) CommandID() string { return c.ID }

func (c *PostPending) Validate() error {
	if err := checkTransferID(c.ID, ""); err != nil {
		return err
	}
	if err := checkID("pending_id", c.PendingID); err != nil {
		return err
	}
	var err error
	if c.amounts, err = parseAmounts(c.Amounts); err != nil {
		return err
	}
	if err := checkLabels(c.Reference, c.Metadata); err != nil {
		return err
	}
	c.validated = true
	return nil
}

// VoidPending releases a pending transfer in full.
type VoidPending struct {
	ID        string
	PendingID string
	Reference string

	validated bool
	priors
}

func (c *VoidPending) CommandID() string { return c.ID }

func (c *VoidPending) Validate() error {
	if err := checkTransferID(c.ID, ""); err != nil {
		return err
	}
	if err := checkID("pending_id", c.PendingID); err != nil {
		return err
	}
	if err := checkLabels(c.Reference, nil); err != nil {
		return err
	}
	c.validated = true
	return nil
}

// ExpirePending expires a pending transfer whose timeout has passed. Only the
// writer issues it, from its clock.
type ExpirePending struct {
	PendingID string
}

func (c *ExpirePending) CommandID() string { return c.PendingID }
func (c *ExpirePending) Validate() error   { return nil }

// ReverseTransfer undoes a posted transfer (TransferID) with a new one (ID):
// in full (what is not reversed yet), or per posting the Amounts given.
type ReverseTransfer struct {
	ID          string
	TransferID  string
	Amounts     []string
	Reference   string
	Metadata    map[string]string
	EffectiveAt time.Time

	amounts   []Decimal
	validated bool
	priors
}

func (c *ReverseTransfer) CommandID() string { return c.ID }

func (c *ReverseTransfer) Validate() error {
	if err := checkTransferID(c.ID, ""); err != nil {
		return err
	}
	if err := checkID("transfer_id", c.TransferID); err != nil {
		return err
	}
	if c.ID == c.TransferID {
		return fieldErrf("id", ErrInvalidField, "a reversal needs an id of its own")
	}
	var err error
	if c.amounts, err = parseAmounts(c.Amounts); err != nil {
		return err
	}
	if err := checkLabels(c.Reference, c.Metadata); err != nil {
		return err
	}
	c.EffectiveAt = canonicalTime(c.EffectiveAt)
	c.validated = true
	return nil
}

// SetAccountBounds replaces an account's bounds from now on; nil is no bound
// (how a bound is removed), and "" is refused like any malformed amount.
type SetAccountBounds struct {
	AccountID  string
	MinBalance *string
	MaxBalance *string

	min, max  *Decimal
	validated bool
}

func (c *SetAccountBounds) CommandID() string { return c.AccountID }

func (c *SetAccountBounds) Validate() error {
	if err := checkID("account_id", c.AccountID); err != nil {
		return err
	}
	var err error
	if c.min, err = optionalDecimal("min_balance", c.MinBalance); err != nil {
		return err
	}
	if c.max, err = optionalDecimal("max_balance", c.MaxBalance); err != nil {
		return err
	}
	c.validated = true
	return nil
}

// SetAccountMetadata replaces an account's metadata.
type SetAccountMetadata struct {
	AccountID string
	Metadata  map[string]string

	validated bool
}

func (c *SetAccountMetadata) CommandID() string { return c.AccountID }

func (c *SetAccountMetadata) Validate() error {
	if err := checkID("account_id", c.AccountID); err != nil {
		return err
	}
	if err := checkMetadata("metadata", c.Metadata); err != nil {
		return err
	}
	c.validated = true
	return nil
}

// CloseAccount closes an account that holds no pending amounts.
type CloseAccount struct {
	AccountID string

	validated bool
}

func (c *CloseAccount) CommandID() string { return c.AccountID }

func (c *CloseAccount) Validate() error {
	if err := checkID("account_id", c.AccountID); err != nil {
		return err
	}
	c.validated = true
	return nil
}
