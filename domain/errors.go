package domain

import (
	"errors"
	"fmt"
)

// Sentinel errors: each is one outcome a command can have. Adapters branch on them
// with errors.Is and translate them to result codes in one place.
var (
	ErrInvalidField              = errors.New("invalid field")
	ErrInvalidAmount             = errors.New("invalid amount")
	ErrExists                    = errors.New("exists")
	ErrExistsWithDifferentFields = errors.New("exists with different fields")
	ErrAccountNotFound           = errors.New("account not found")
	ErrAccountClosed             = errors.New("account closed")
	ErrAssetNotFound             = errors.New("asset not found")
	ErrAssetMismatch             = errors.New("asset mismatch")
	ErrSameAccount               = errors.New("same account on both sides")
	ErrBelowMinBalance           = errors.New("below min balance")
	ErrAboveMaxBalance           = errors.New("above max balance")
	ErrBalanceOverflow           = errors.New("balance overflow")
	ErrPendingNotFound           = errors.New("pending transfer not found")
	ErrPendingAlreadyResolved    = errors.New("pending transfer already resolved")
	ErrPendingExpired            = errors.New("pending transfer expired")
	ErrAmountExceedsPending      = errors.New("amount exceeds pending")
	ErrTransferNotFound          = errors.New("transfer not found")
	ErrNotReversible             = errors.New("transfer not reversible")
	// ErrAlreadyReversed: the original was reversed in full before; nothing
	// is left to reverse.
	ErrAlreadyReversed = errors.New("already reversed")
	// ErrAmountExceedsRemaining: a reversal asks more of a posting than is
	// left of it (the original's amount less the reversals before).
	ErrAmountExceedsRemaining = errors.New("amount exceeds what is left to reverse")
	ErrAccountHasPending      = errors.New("account has pending amounts")
	ErrTooManyHolds           = errors.New("too many pending transfers open")
	ErrTooManyAccounts        = errors.New("too many accounts")
	ErrTooManyAssets          = errors.New("too many assets")
	// ErrNotDue refuses an ExpirePending before its time, or for a hold no
	// longer open: the writer's own command, never a client's.
	ErrNotDue = errors.New("pending transfer not due to expire")
)

// FieldError ties an outcome to the field that caused it, named as a client
// wrote it: "postings[2].amount".
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

// fieldErr wraps err (a sentinel or an error wrapping one) with the field.
func fieldErr(field string, err error) error { return &FieldError{Field: field, Err: err} }

// fieldErrf is fieldErr with a formatted reason in front of the sentinel.
func fieldErrf(field string, sentinel error, format string, args ...any) error {
	return &FieldError{Field: field, Err: fmt.Errorf(format+": %w", append(args, sentinel)...)}
}

// ExistsError says a command's id was applied before with identical fields, at
// Position. It wraps ErrExists.
type ExistsError struct{ Position uint64 }

func (e *ExistsError) Error() string { return fmt.Sprintf("exists at position %d", e.Position) }
func (e *ExistsError) Unwrap() error { return ErrExists }

// ErrNeedPrior means Decide needs the committed transfer at a position, which
// the state does not hold in memory; see NeedPriorError.
var ErrNeedPrior = errors.New("needs the committed transfer at a position")

// NeedPriorError asks the caller of Decide for the event at Position (one that
// took an id of the transfer id space): attach it with the command's SetPrior
// and decide again. It is how a retry (or an id-hash collision) is told apart
// from a new command, and how a reversal learns the original's postings,
// without keeping every transfer in memory.
type NeedPriorError struct{ Position uint64 }

func (e *NeedPriorError) Error() string {
	return fmt.Sprintf("needs the transfer at position %d", e.Position)
}
func (e *NeedPriorError) Unwrap() error { return ErrNeedPrior }

// FieldOf returns the field an error names, or "".
func FieldOf(err error) string {
	var fe *FieldError
	if errors.As(err, &fe) {
		return fe.Field
	}
	return ""
}
