// Package grpcapi serves the ledger.v1 gRPC services and is the one place where
// errors become gRPC statuses and result codes.
package grpcapi

import (
	"cmp"
	"context"
	"errors"
	"log/slog"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/commands"
	"github.com/ledgerd/ledger/domain"
)

// resultCodeOf returns the result code of a command's outcome: the one its
// sentinel carries (domain.Error.Code), as the wire's enum. ok is false for
// an error that carries none, or a code the enum lacks: a bug, which
// itemResults answers Internal.
func resultCodeOf(err error) (code ledgerv1.ResultCode, ok bool) {
	e, found := domain.SentinelOf(err)
	if !found || e.Code() == "" {
		return ledgerv1.ResultCode_RESULT_CODE_UNSPECIFIED, false
	}
	v, ok := ledgerv1.ResultCode_value["RESULT_CODE_"+e.Code()]
	return ledgerv1.ResultCode(v), ok
}

// itemResults turns each command's outcome into its result.
//
// Errors: Internal, logged, when an outcome has no result code: a domain
// error that is not an outcome, or an outcome the wire does not know. The
// request then fails whole rather than say a wrong code for an item (or
// crash the server); what committed answers EXISTS on a retry.
func itemResults(cmds []domain.Command, results []commands.Result) ([]*ledgerv1.ItemResult, error) {
	out := make([]*ledgerv1.ItemResult, len(results))
	for i, r := range results {
		res, err := itemResult(i, cmds[i].CommandID(), r)
		if err != nil {
			return nil, err
		}
		out[i] = res
	}
	return out, nil
}

// itemResult turns one command's outcome into its result.
//
// Errors: as itemResults.
func itemResult(i int, id string, r commands.Result) (*ledgerv1.ItemResult, error) {
	out := &ledgerv1.ItemResult{Index: uint32(i), Id: id, Position: r.Position}
	if r.Err == nil {
		out.Code = ledgerv1.ResultCode_RESULT_CODE_CREATED
		for _, b := range r.Balances {
			out.Balances = append(out.Balances, balanceOf(b))
		}
		return out, nil
	}
	code, ok := resultCodeOf(r.Err)
	if !ok {
		slog.Error("no result code for a command's outcome", "item", i, "id", id, "err", r.Err)
		return nil, status.Error(codes.Internal, "internal error")
	}
	out.Code, out.Field, out.Detail = code, domain.FieldOf(r.Err), r.Err.Error()
	return out, nil
}

// InvalidArgument is a request-level refusal naming the field: the status
// every bad field of a request answers with, InvalidArgument and a
// google.rpc.BadRequest, its message "field: reason". The REST gateway
// gives its own decoding faults the same shape through it.
func InvalidArgument(field, reason string) error { return invalidArgument(field, reason) }

// invalidArgument is InvalidArgument.
func invalidArgument(field, reason string) error {
	st := status.New(codes.InvalidArgument, field+": "+reason)
	if d, err := st.WithDetails(&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
		{Field: field, Description: reason},
	}}); err == nil {
		st = d
	}
	return st.Err()
}

// kindCodes is the one table of request-level errors: each kind's status.
// The error itself (a domain.Error found by domain.SentinelOf) says the
// rest: the field an InvalidArgument names and a hint.
var kindCodes = map[domain.Kind]codes.Code{
	domain.KindInvalid:     codes.InvalidArgument,
	domain.KindNotFound:    codes.NotFound,
	domain.KindConflict:    codes.FailedPrecondition,
	domain.KindExhausted:   codes.ResourceExhausted,
	domain.KindUnavailable: codes.Unavailable,
	domain.KindTimeout:     codes.DeadlineExceeded,
	domain.KindAborted:     codes.Aborted,
	domain.KindExists:      codes.AlreadyExists,
}

// ReasonWriterElsewhere is the ErrorInfo reason of an Unavailable that
// decided nothing because another process writes, or may write, the
// ledger: a client (or a ledgerd, forwarding) sends the call to another node.
const ReasonWriterElsewhere = "WRITER_ELSEWHERE"

// writerElsewhere is Unavailable with ReasonWriterElsewhere.
func writerElsewhere(msg string) error {
	st, err := status.New(codes.Unavailable, msg).WithDetails(&errdetails.ErrorInfo{Reason: ReasonWriterElsewhere, Domain: "ledger.v1"})
	if err != nil {
		return status.Error(codes.Unavailable, msg)
	}
	return st.Err()
}

// IsWriterElsewhere says whether a status error carries ReasonWriterElsewhere.
func IsWriterElsewhere(err error) bool {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetReason() == ReasonWriterElsewhere {
			return true
		}
	}
	return false
}

// StatusOf is statusOf, for the interceptors of the process that serves
// (internal/daemon): errors are translated here, once.
func StatusOf(err error) error { return statusOf(err) }

// statusOf translates a request-level error: PostgreSQL unreachable is
// Unavailable (databaseUnreachable); an error of a kind gets its kind's code
// (kindCodes), its hint before its text, and for InvalidArgument a
// BadRequest naming its field; the call's own deadline or cancel is said as
// such; anything else is Internal.
func statusOf(err error) error {
	if databaseUnreachable(err) {
		return unavailableStatus(err)
	}
	if e, ok := domain.SentinelOf(err); ok {
		if code, ok := kindCodes[e.Kind()]; ok {
			msg := err.Error()
			if e.Hint() != "" {
				msg = e.Hint() + ": " + msg
			}
			field := cmp.Or(e.Field(), domain.FieldOf(err))
			if code == codes.InvalidArgument && field != "" {
				return invalidArgument(field, msg)
			}
			if commands.WriterElsewhere(err) {
				return writerElsewhere(msg)
			}
			return status.Error(code, msg)
		}
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	// The cause stays in the server's log, not in the client's answer; it is
	// logged here, the one place every request error passes.
	slog.Error("request failed", "err", err)
	return status.Error(codes.Internal, "internal error")
}

// resourceStatusOf is statusOf for a call about a ledger itself (GetLedger,
// ArchiveLedger, ...): there, an unknown ledger is the thing not found, not a
// bad field of a request about something else.
func resourceStatusOf(err error) error {
	if errors.Is(err, domain.ErrUnknownLedger) {
		return notFound("ledger", err.Error())
	}
	return statusOf(err)
}

// balanceOf converts a writer's balance to its wire form.
func balanceOf(b commands.Balance) *ledgerv1.Balance {
	a := domain.Account{Normal: b.Normal, DebitsPosted: b.DebitsPosted, CreditsPosted: b.CreditsPosted,
		DebitsPending: b.DebitsPending, CreditsPending: b.CreditsPending}
	return &ledgerv1.Balance{Account: b.Account, Asset: b.Asset, NormalBalance: normalBalance(b.Normal.String()),
		DebitsPosted: b.DebitsPosted.Format(b.Scale), CreditsPosted: b.CreditsPosted.Format(b.Scale),
		DebitsPending: b.DebitsPending.Format(b.Scale), CreditsPending: b.CreditsPending.Format(b.Scale),
		Balance: a.Balance().Format(b.Scale), Available: a.Available().Format(b.Scale), Position: b.Position}
}
