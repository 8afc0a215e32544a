// Package grpcapi serves the ledger.v1 gRPC services and is the one place where
// errors become gRPC statuses and result codes.
package grpcapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/commands"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/queries"
	"github.com/ledgerd/ledger/workflows"
)

// resultCodes maps each domain outcome to its result code.
var resultCodes = []struct {
	err  error
	code ledgerv1.ResultCode
}{
	{domain.ErrExists, ledgerv1.ResultCode_RESULT_CODE_EXISTS},
	{domain.ErrExistsWithDifferentFields, ledgerv1.ResultCode_RESULT_CODE_EXISTS_WITH_DIFFERENT_FIELDS},
	{domain.ErrAccountNotFound, ledgerv1.ResultCode_RESULT_CODE_ACCOUNT_NOT_FOUND},
	{domain.ErrAccountClosed, ledgerv1.ResultCode_RESULT_CODE_ACCOUNT_CLOSED},
	{domain.ErrAssetNotFound, ledgerv1.ResultCode_RESULT_CODE_ASSET_NOT_FOUND},
	{domain.ErrAssetMismatch, ledgerv1.ResultCode_RESULT_CODE_ASSET_MISMATCH},
	{domain.ErrSameAccount, ledgerv1.ResultCode_RESULT_CODE_SAME_ACCOUNT},
	{domain.ErrInvalidAmount, ledgerv1.ResultCode_RESULT_CODE_INVALID_AMOUNT},
	{domain.ErrBelowMinBalance, ledgerv1.ResultCode_RESULT_CODE_BELOW_MIN_BALANCE},
	{domain.ErrAboveMaxBalance, ledgerv1.ResultCode_RESULT_CODE_ABOVE_MAX_BALANCE},
	{domain.ErrBalanceOverflow, ledgerv1.ResultCode_RESULT_CODE_BALANCE_OVERFLOW},
	{domain.ErrPendingNotFound, ledgerv1.ResultCode_RESULT_CODE_PENDING_NOT_FOUND},
	{domain.ErrPendingAlreadyResolved, ledgerv1.ResultCode_RESULT_CODE_PENDING_ALREADY_RESOLVED},
	{domain.ErrPendingExpired, ledgerv1.ResultCode_RESULT_CODE_PENDING_EXPIRED},
	{domain.ErrAmountExceedsPending, ledgerv1.ResultCode_RESULT_CODE_AMOUNT_EXCEEDS_PENDING},
	{domain.ErrTransferNotFound, ledgerv1.ResultCode_RESULT_CODE_TRANSFER_NOT_FOUND},
	{domain.ErrNotReversible, ledgerv1.ResultCode_RESULT_CODE_NOT_REVERSIBLE},
	{domain.ErrAlreadyReversed, ledgerv1.ResultCode_RESULT_CODE_ALREADY_REVERSED},
	{domain.ErrAmountExceedsRemaining, ledgerv1.ResultCode_RESULT_CODE_AMOUNT_EXCEEDS_REMAINING},
	{domain.ErrAccountHasPending, ledgerv1.ResultCode_RESULT_CODE_ACCOUNT_HAS_PENDING},
	{domain.ErrTooManyHolds, ledgerv1.ResultCode_RESULT_CODE_TOO_MANY_PENDING},
	{domain.ErrTooManyAccounts, ledgerv1.ResultCode_RESULT_CODE_TOO_MANY_ACCOUNTS},
	{domain.ErrTooManyAssets, ledgerv1.ResultCode_RESULT_CODE_TOO_MANY_ASSETS},
	{domain.ErrLineNotFound, ledgerv1.ResultCode_RESULT_CODE_LINE_NOT_FOUND},
	{domain.ErrMovementNotFound, ledgerv1.ResultCode_RESULT_CODE_MOVEMENT_NOT_FOUND},
	{commands.ErrLinkedItemFailed, ledgerv1.ResultCode_RESULT_CODE_LINKED_ITEM_FAILED},
	{domain.ErrInvalidField, ledgerv1.ResultCode_RESULT_CODE_INVALID_FIELD},
}

// itemResult turns one command's outcome into its result.
func itemResult(i int, id string, r commands.Result) *ledgerv1.ItemResult {
	out := &ledgerv1.ItemResult{Index: uint32(i), Id: id, Position: r.Position}
	if r.Err == nil {
		out.Code = ledgerv1.ResultCode_RESULT_CODE_CREATED
		for _, b := range r.Balances {
			out.Balances = append(out.Balances, balanceOf(b))
		}
		return out
	}
	out.Field, out.Detail = domain.FieldOf(r.Err), r.Err.Error()
	for _, rc := range resultCodes {
		if errors.Is(r.Err, rc.err) {
			out.Code = rc.code
			return out
		}
	}
	// Every outcome the domain can produce is in the table: anything else is a
	// bug, and saying INVALID_FIELD would hide it.
	panic("grpcapi: no result code for " + r.Err.Error())
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

// requestErrors maps each request-level error to its status: a field and a
// reason for InvalidArgument, or another code. The one table every query and
// command error passes through (statusOf).
var requestErrors = []struct {
	err    error
	code   codes.Code
	field  string // InvalidArgument: the field it names
	reason string // said before the error's own text
}{
	{commands.ErrInvalidLedger, codes.InvalidArgument, "ledger", "must match [a-z0-9][a-z0-9-]{0,62}"},
	{commands.ErrUnknownLedger, codes.InvalidArgument, "ledger", "unknown ledger: an admin creates it (AdminService.CreateLedger)"},
	// Before ErrUnavailable: a writer whose append the log refused wraps both.
	{eventstore.ErrLedgerArchived, codes.FailedPrecondition, "", ""},
	{eventstore.ErrLedgerImporting, codes.FailedPrecondition, "", "send the same log again to complete the import"},
	{eventstore.ErrLedgerNotImportable, codes.FailedPrecondition, "", "import into a new ledger"},
	{eventstore.ErrLedgerNotFound, codes.NotFound, "", ""},
	{workflows.ErrImportBadLog, codes.InvalidArgument, "events", ""},
	{workflows.ErrImportArchived, codes.FailedPrecondition, "", ""},
	{workflows.ErrImportExists, codes.FailedPrecondition, "", ""},
	{workflows.ErrImportDone, codes.FailedPrecondition, "", ""},
	{workflows.ErrImportInterrupted, codes.Aborted, "", ""},
	{workflows.ErrImportStopped, codes.Unavailable, "", ""},
	{workflows.ErrUnknownProjection, codes.InvalidArgument, "projection", ""},
	{workflows.ErrRebuildRunning, codes.AlreadyExists, "", ""},
	{workflows.ErrStatementLines, codes.InvalidArgument, "lines", ""},
	{queries.ErrLedgerNotFound, codes.InvalidArgument, "ledger", "unknown ledger"},
	{queries.ErrTransfersLedgerUnknown, codes.InvalidArgument, "ledger", "unknown ledger"},
	{commands.ErrTooManyItems, codes.InvalidArgument, "", ""},
	{queries.ErrTooManyAccounts, codes.InvalidArgument, "accounts", fmt.Sprintf("at most %d", queries.AccountsPerRequestMax)},
	{queries.ErrStatementLimit, codes.InvalidArgument, "limit", "at most 1000 lines"},
	{queries.ErrStatementCursor, codes.InvalidArgument, "cursor", "not a cursor of this statement"},
	{queries.ErrStatementPositionRange, codes.InvalidArgument, "from_position", "after to_position"},
	{queries.ErrStatementTimeRange, codes.InvalidArgument, "from_time", "after to_time"},
	{queries.ErrBeyondHead, codes.InvalidArgument, "as_of_position", "beyond the ledger's head"},
	{queries.ErrMinPositionBeyondHead, codes.InvalidArgument, "min_position", "beyond the ledger's head"},
	{queries.ErrTooManyTransferIDs, codes.InvalidArgument, "ids", fmt.Sprintf("want 1..%d transfer ids", queries.TransferIDsPerRequestMax)},
	{queries.ErrTransfersPageTooLarge, codes.InvalidArgument, "limit", fmt.Sprintf("at most %d", queries.TransfersPageMax)},
	{queries.ErrBadTransfersCursor, codes.InvalidArgument, "cursor", "not a cursor from ListTransfers"},
	{queries.ErrTransfersTimeRange, codes.InvalidArgument, "from_time", "after to_time"},
	{queries.ErrDateRange, codes.InvalidArgument, "from_date", "after to_date"},
	{queries.ErrReconCursor, codes.InvalidArgument, "page_token", "not a page token of this listing"},
	{queries.ErrTooManyJournalLines, codes.InvalidArgument, "to_date", "narrow the dates or name the asset"},
	{queries.ErrAccountNotFound, codes.NotFound, "", ""},
	{queries.ErrNotReconciled, codes.NotFound, "", "import a statement line or set matching rules first"},
	{queries.ErrHistoryUnavailable, codes.FailedPrecondition, "", ""},
	{queries.ErrTooManyAssets, codes.ResourceExhausted, "", ""},
	{queries.ErrTooManyProjections, codes.ResourceExhausted, "", ""},
	{commands.ErrTooManyLedgers, codes.ResourceExhausted, "", ""},
	{commands.ErrClosed, codes.Unavailable, "", ""},
	{commands.ErrUnavailable, codes.Unavailable, "", ""},
	{queries.ErrNotReached, codes.DeadlineExceeded, "", ""},
	{context.DeadlineExceeded, codes.DeadlineExceeded, "", ""},
	{context.Canceled, codes.Canceled, "", ""},
}

// statusOf translates a request-level error by requestErrors; PostgreSQL
// unreachable is Unavailable (databaseUnreachable); anything else is Internal.
func statusOf(err error) error {
	if databaseUnreachable(err) {
		return unavailableStatus(err)
	}
	for _, re := range requestErrors {
		if !errors.Is(err, re.err) {
			continue
		}
		msg := err.Error()
		if re.reason != "" {
			msg = re.reason + ": " + msg
		}
		if re.code == codes.InvalidArgument && re.field != "" {
			return invalidArgument(re.field, msg)
		}
		return status.Error(re.code, msg)
	}
	// The cause stays in the server's log, not in the client's answer; it is
	// logged here, the one place every request error passes.
	slog.Error("request failed", "err", err)
	return status.Error(codes.Internal, "internal error")
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
