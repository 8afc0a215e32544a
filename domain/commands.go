package domain

import (
	"fmt"
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
// decimal strings, "" for no bound.
type OpenAccount struct {
	ID         string
	Asset      string
	Normal     Side
	MinBalance string
	MaxBalance string
	Metadata   map[string]string

	min, max  *Decimal
	validated bool
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

func optionalDecimal(field, s string) (*Decimal, error) {
	if s == "" {
		return nil, nil
	}
	d, err := ParseDecimal(s)
	if err != nil {
		return nil, fieldErr(field, err)
	}
	return &d, nil
}

// CreateTransfer moves money along one or more postings, all or nothing.
// A zero EffectiveAt means "when recorded".
type CreateTransfer struct {
	ID          string
	Postings    []PostingInput
	Reference   string
	Metadata    map[string]string
	EffectiveAt time.Time

	validated bool
	// prior is the committed transfer at priorPos, attached in answer to a
	// NeedPriorError.
	prior    *TransferCommitted
	priorPos uint64
}

// SetPrior attaches the transfer committed at pos, as asked by a
// NeedPriorError.
func (c *CreateTransfer) SetPrior(pos uint64, prior *TransferCommitted) {
	c.prior, c.priorPos = prior, pos
}

// PostingInput is one leg of a transfer as a client wrote it.
type PostingInput struct {
	Debit, Credit, Asset, Amount string

	amount Decimal
}

func (c *CreateTransfer) CommandID() string { return c.ID }

func (c *CreateTransfer) Validate() error {
	if err := checkID("id", c.ID); err != nil {
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
	if len(c.Reference) > ReferenceLenMax {
		return fieldErrf("reference", ErrInvalidField, "%d bytes, at most %d", len(c.Reference), ReferenceLenMax)
	}
	if err := checkMetadata("metadata", c.Metadata); err != nil {
		return err
	}
	// The log and the read models keep microseconds (Postgres timestamptz).
	if !c.EffectiveAt.IsZero() {
		c.EffectiveAt = c.EffectiveAt.Truncate(time.Microsecond).UTC()
	}
	c.validated = true
	return nil
}

func (p *PostingInput) validate(i int) error {
	prefix := fmt.Sprintf("postings[%d].", i)
	if err := checkID(prefix+"debit_account", p.Debit); err != nil {
		return err
	}
	if err := checkID(prefix+"credit_account", p.Credit); err != nil {
		return err
	}
	if p.Debit == p.Credit {
		return fieldErr(prefix+"credit_account", ErrSameAccount)
	}
	if err := checkAssetCode(prefix+"asset", p.Asset); err != nil {
		return err
	}
	d, err := ParseDecimal(p.Amount)
	if err != nil {
		return fieldErr(prefix+"amount", err)
	}
	if d.Sign() <= 0 {
		return fieldErrf(prefix+"amount", ErrInvalidAmount, "%s is not positive", d)
	}
	p.amount = d
	return nil
}
