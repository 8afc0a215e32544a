package domain

import "strconv"

// Kind is what a request-level error means to the caller, whatever the
// transport: each adapter maps a kind to its status once (adapters/grpcapi:
// a handful of rows), and the error itself says the rest (field, hint).
type Kind uint8

// Kinds of errors. The zero Kind is none: an error of no kind is a fault of
// the server (Internal), its cause logged, never sent.
const (
	// KindInvalid: the request is malformed, or names a field that does not
	// hold (a bad cursor, an unknown ledger): fix the request.
	KindInvalid Kind = iota + 1
	// KindNotFound: what the request reads does not exist.
	KindNotFound
	// KindConflict: the request is sound, but the state refuses it now (an
	// archived ledger, one being imported).
	KindConflict
	// KindExhausted: a bound is reached (ledgers, assets, projections).
	KindExhausted
	// KindUnavailable: nothing was applied, or it is unknown; retrying the
	// same request is safe, here later or on another node.
	KindUnavailable
	// KindTimeout: what the request waits for was not reached in time.
	KindTimeout
	// KindAborted: the request was cut short by a concurrent change (another
	// writer appended during a log import): retry the whole sequence.
	KindAborted
	// KindExists: the same work runs already (a rebuild): wait for it.
	KindExists
)

var kindNames = [...]string{"", "invalid", "not found", "conflict", "exhausted", "unavailable", "timeout", "aborted", "exists"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Error is a sentinel error that carries what an adapter needs to answer it:
// its kind and, for a request, the field it names and a hint said before its
// text; for a command's outcome, its result code (the wire enum's name
// without its prefix: "ACCOUNT_NOT_FOUND"). Compare with errors.Is, as any
// sentinel; an adapter finds it in a chain with SentinelOf.
type Error struct {
	msg   string
	kind  Kind
	field string
	hint  string
	code  string
}

func (e *Error) Error() string { return e.msg }

// Kind is the error's kind.
func (e *Error) Kind() Kind { return e.kind }

// Field is the request field the error names, or "".
func (e *Error) Field() string { return e.field }

// Hint is what to tell the caller before the error's text, or "".
func (e *Error) Hint() string { return e.hint }

// Code is the result code of a command's outcome, or "" for a request error.
func (e *Error) Code() string { return e.code }

// NewError returns a sentinel of a kind, with a hint ("" for none).
func NewError(kind Kind, msg, hint string) *Error {
	return &Error{msg: msg, kind: kind, hint: hint}
}

// NewInvalid returns a KindInvalid sentinel naming a request field, with a
// hint ("" for none).
func NewInvalid(field, msg, hint string) *Error {
	return &Error{msg: msg, kind: KindInvalid, field: field, hint: hint}
}

// NewOutcome returns the sentinel of a command's outcome with its result
// code. Met at the request level (outside a command's result), it is the
// request's fault: KindInvalid.
func NewOutcome(code, msg string) *Error {
	return &Error{msg: msg, kind: KindInvalid, code: code}
}

// SentinelOf returns the *Error that err is or wraps. A chain may hold two: a
// writer's ErrUnavailable wraps the cause of its failed append, such as an
// archived ledger; the cause says more, so a KindUnavailable one gives way
// to any other found in the chain.
func SentinelOf(err error) (*Error, bool) {
	var unavailable *Error
	var walk func(error) *Error
	walk = func(err error) *Error {
		for err != nil {
			if e, ok := err.(*Error); ok {
				if e.kind != KindUnavailable {
					return e
				}
				if unavailable == nil {
					unavailable = e
				}
			}
			switch u := err.(type) {
			case interface{ Unwrap() error }:
				err = u.Unwrap()
			case interface{ Unwrap() []error }:
				for _, e := range u.Unwrap() {
					if found := walk(e); found != nil {
						return found
					}
				}
				return nil
			default:
				return nil
			}
		}
		return nil
	}
	if e := walk(err); e != nil {
		return e, true
	}
	return unavailable, unavailable != nil
}

// ErrUnknownLedger means no ledger has the name: the one answer of the log,
// the writers and the queries. It names the request's ledger field.
var ErrUnknownLedger error = NewInvalid("ledger", "unknown ledger", "an admin creates it (AdminService.CreateLedger)")
