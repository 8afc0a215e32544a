package domain

import (
	"errors"
	"fmt"
)

// Sentinel errors: each is one outcome a command can have, and carries its
// result code (Error.Code), which adapters turn into their wire's enum.
var (
	ErrInvalidField              error = NewOutcome("INVALID_FIELD", "invalid field")
	ErrInvalidAmount             error = NewOutcome("INVALID_AMOUNT", "invalid amount")
	ErrExists                    error = NewOutcome("EXISTS", "exists")
	ErrExistsWithDifferentFields error = NewOutcome("EXISTS_WITH_DIFFERENT_FIELDS", "exists with different fields")
	ErrAccountNotFound           error = NewOutcome("ACCOUNT_NOT_FOUND", "account not found")
	ErrAccountClosed             error = NewOutcome("ACCOUNT_CLOSED", "account closed")
	ErrAssetNotFound             error = NewOutcome("ASSET_NOT_FOUND", "asset not found")
	ErrAssetMismatch             error = NewOutcome("ASSET_MISMATCH", "asset mismatch")
	ErrSameAccount               error = NewOutcome("SAME_ACCOUNT", "same account on both sides")
	ErrBelowMinBalance           error = NewOutcome("BELOW_MIN_BALANCE", "below min balance")
	ErrAboveMaxBalance           error = NewOutcome("ABOVE_MAX_BALANCE", "above max balance")
	ErrBalanceOverflow           error = NewOutcome("BALANCE_OVERFLOW", "balance overflow")
	ErrPendingNotFound           error = NewOutcome("PENDING_NOT_FOUND", "pending transfer not found")
	ErrPendingAlreadyResolved    error = NewOutcome("PENDING_ALREADY_RESOLVED", "pending transfer already resolved")
	ErrPendingExpired            error = NewOutcome("PENDING_EXPIRED", "pending transfer expired")
	ErrAmountExceedsPending      error = NewOutcome("AMOUNT_EXCEEDS_PENDING", "amount exceeds pending")
	ErrTransferNotFound          error = NewOutcome("TRANSFER_NOT_FOUND", "transfer not found")
	ErrNotReversible             error = NewOutcome("NOT_REVERSIBLE", "transfer not reversible")
	// ErrAlreadyReversed: the original was reversed in full before; nothing
	// is left to reverse.
	ErrAlreadyReversed error = NewOutcome("ALREADY_REVERSED", "already reversed")
	// ErrAmountExceedsRemaining: a reversal asks more of a posting than is
	// left of it (the original's amount less the reversals before).
	ErrAmountExceedsRemaining error = NewOutcome("AMOUNT_EXCEEDS_REMAINING", "amount exceeds what is left to reverse")
	ErrAccountHasPending      error = NewOutcome("ACCOUNT_HAS_PENDING", "account has pending amounts")
	ErrTooManyHolds           error = NewOutcome("TOO_MANY_PENDING", "too many pending transfers open")
	ErrTooManyAccounts        error = NewOutcome("TOO_MANY_ACCOUNTS", "too many accounts")
	ErrTooManyAssets          error = NewOutcome("TOO_MANY_ASSETS", "too many assets")
	// ErrNotDue refuses an ExpirePending before its time, or for a hold no
	// longer open: the writer's own command, never a client's.
	ErrNotDue = errors.New("pending transfer not due to expire")
	// ErrHoldNotRefused refuses an AlertRaised saying its hold was refused
	// when the hold would be placed now: an INVALID_FIELD on
	// alert.hold_refused, which the alerter answers by raising the alert
	// again with its hold.
	ErrHoldNotRefused = fmt.Errorf("the hold would be placed: %w", ErrInvalidField)
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
