package grpcapi

import (
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/commands"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/queries"
	"github.com/ledgerd/ledger/workflows"
)

// sentinelAnswer is what a sentinel must be answered with: a result code
// (a command's outcome), a status code (a request error), or internal: it
// never reaches a client as itself, and if it did, Internal is right.
type sentinelAnswer struct {
	err      error
	result   ledgerv1.ResultCode // outcome
	code     codes.Code          // request error
	internal string              // why it is no client's answer
}

func outcome(err error, rc ledgerv1.ResultCode) sentinelAnswer {
	return sentinelAnswer{err: err, result: rc}
}
func request(err error, c codes.Code) sentinelAnswer { return sentinelAnswer{err: err, code: c} }
func internal(err error, why string) sentinelAnswer  { return sentinelAnswer{err: err, internal: why} }

// sentinels holds every exported Err... of the packages whose errors reach
// grpcapi. TestEverySentinelIsListed keeps it complete: a sentinel added
// without its answer fails the test, not a request in production.
var sentinels = map[string]sentinelAnswer{
	"workflows.ErrImportBadLog":           request(workflows.ErrImportBadLog, codes.InvalidArgument),
	"workflows.ErrImportArchived":         request(workflows.ErrImportArchived, codes.FailedPrecondition),
	"workflows.ErrImportExists":           request(workflows.ErrImportExists, codes.FailedPrecondition),
	"workflows.ErrImportDone":             request(workflows.ErrImportDone, codes.FailedPrecondition),
	"workflows.ErrImportInterrupted":      request(workflows.ErrImportInterrupted, codes.Aborted),
	"workflows.ErrImportStopped":          request(workflows.ErrImportStopped, codes.Unavailable),
	"workflows.ErrUnknownProjection":      request(workflows.ErrUnknownProjection, codes.InvalidArgument),
	"workflows.ErrRebuildRunning":         request(workflows.ErrRebuildRunning, codes.AlreadyExists),
	"workflows.ErrRepairRunning":          request(workflows.ErrRepairRunning, codes.AlreadyExists),
	"workflows.ErrStatementLines":         request(workflows.ErrStatementLines, codes.InvalidArgument),
	"workflows.ErrDryRunRange":            request(workflows.ErrDryRunRange, codes.InvalidArgument),
	"workflows.ErrDryRunTooFar":           request(workflows.ErrDryRunTooFar, codes.InvalidArgument),
	"workflows.ErrNotExtended":            internal(workflows.ErrNotExtended, "anchoring's: logged at ERROR, no call's answer"),
	"workflows.ErrWriterStopped":          internal(workflows.ErrWriterStopped, "the alerter's own look-up of an idle writer: logged at DEBUG, no call's answer"),
	"workflows.ErrCovered":                internal(workflows.ErrCovered, "anchoring's: nothing to sign, no call's answer"),
	"domain.ErrInvalidField":              outcome(domain.ErrInvalidField, ledgerv1.ResultCode_RESULT_CODE_INVALID_FIELD),
	"domain.ErrInvalidAmount":             outcome(domain.ErrInvalidAmount, ledgerv1.ResultCode_RESULT_CODE_INVALID_AMOUNT),
	"domain.ErrExists":                    outcome(domain.ErrExists, ledgerv1.ResultCode_RESULT_CODE_EXISTS),
	"domain.ErrExistsWithDifferentFields": outcome(domain.ErrExistsWithDifferentFields, ledgerv1.ResultCode_RESULT_CODE_EXISTS_WITH_DIFFERENT_FIELDS),
	"domain.ErrAccountNotFound":           outcome(domain.ErrAccountNotFound, ledgerv1.ResultCode_RESULT_CODE_ACCOUNT_NOT_FOUND),
	"domain.ErrAccountClosed":             outcome(domain.ErrAccountClosed, ledgerv1.ResultCode_RESULT_CODE_ACCOUNT_CLOSED),
	"domain.ErrAssetNotFound":             outcome(domain.ErrAssetNotFound, ledgerv1.ResultCode_RESULT_CODE_ASSET_NOT_FOUND),
	"domain.ErrAssetMismatch":             outcome(domain.ErrAssetMismatch, ledgerv1.ResultCode_RESULT_CODE_ASSET_MISMATCH),
	"domain.ErrSameAccount":               outcome(domain.ErrSameAccount, ledgerv1.ResultCode_RESULT_CODE_SAME_ACCOUNT),
	"domain.ErrBelowMinBalance":           outcome(domain.ErrBelowMinBalance, ledgerv1.ResultCode_RESULT_CODE_BELOW_MIN_BALANCE),
	"domain.ErrAboveMaxBalance":           outcome(domain.ErrAboveMaxBalance, ledgerv1.ResultCode_RESULT_CODE_ABOVE_MAX_BALANCE),
	"domain.ErrBalanceOverflow":           outcome(domain.ErrBalanceOverflow, ledgerv1.ResultCode_RESULT_CODE_BALANCE_OVERFLOW),
	"domain.ErrPendingNotFound":           outcome(domain.ErrPendingNotFound, ledgerv1.ResultCode_RESULT_CODE_PENDING_NOT_FOUND),
	"domain.ErrPendingAlreadyResolved":    outcome(domain.ErrPendingAlreadyResolved, ledgerv1.ResultCode_RESULT_CODE_PENDING_ALREADY_RESOLVED),
	"domain.ErrPendingExpired":            outcome(domain.ErrPendingExpired, ledgerv1.ResultCode_RESULT_CODE_PENDING_EXPIRED),
	"domain.ErrAmountExceedsPending":      outcome(domain.ErrAmountExceedsPending, ledgerv1.ResultCode_RESULT_CODE_AMOUNT_EXCEEDS_PENDING),
	"domain.ErrTransferNotFound":          outcome(domain.ErrTransferNotFound, ledgerv1.ResultCode_RESULT_CODE_TRANSFER_NOT_FOUND),
	"domain.ErrNotReversible":             outcome(domain.ErrNotReversible, ledgerv1.ResultCode_RESULT_CODE_NOT_REVERSIBLE),
	"domain.ErrAlreadyReversed":           outcome(domain.ErrAlreadyReversed, ledgerv1.ResultCode_RESULT_CODE_ALREADY_REVERSED),
	"domain.ErrAmountExceedsRemaining":    outcome(domain.ErrAmountExceedsRemaining, ledgerv1.ResultCode_RESULT_CODE_AMOUNT_EXCEEDS_REMAINING),
	"domain.ErrPeriodClosed":              outcome(domain.ErrPeriodClosed, ledgerv1.ResultCode_RESULT_CODE_PERIOD_CLOSED),
	"domain.ErrAccountFrozen":             outcome(domain.ErrAccountFrozen, ledgerv1.ResultCode_RESULT_CODE_ACCOUNT_FROZEN),
	"domain.ErrRuleRejected":              outcome(domain.ErrRuleRejected, ledgerv1.ResultCode_RESULT_CODE_RULE_REJECTED),
	"domain.ErrAccountHasPending":         outcome(domain.ErrAccountHasPending, ledgerv1.ResultCode_RESULT_CODE_ACCOUNT_HAS_PENDING),
	"domain.ErrTooManyHolds":              outcome(domain.ErrTooManyHolds, ledgerv1.ResultCode_RESULT_CODE_TOO_MANY_PENDING),
	"domain.ErrTooManyAccounts":           outcome(domain.ErrTooManyAccounts, ledgerv1.ResultCode_RESULT_CODE_TOO_MANY_ACCOUNTS),
	"domain.ErrTooManyAssets":             outcome(domain.ErrTooManyAssets, ledgerv1.ResultCode_RESULT_CODE_TOO_MANY_ASSETS),
	"domain.ErrLineNotFound":              outcome(domain.ErrLineNotFound, ledgerv1.ResultCode_RESULT_CODE_LINE_NOT_FOUND),
	"domain.ErrMovementNotFound":          outcome(domain.ErrMovementNotFound, ledgerv1.ResultCode_RESULT_CODE_MOVEMENT_NOT_FOUND),
	"domain.ErrUnknownLedger":             request(domain.ErrUnknownLedger, codes.InvalidArgument),
	"domain.ErrNotDue":                    internal(domain.ErrNotDue, "the writer's own expiry command"),
	"domain.ErrHoldNotRefused":            outcome(domain.ErrHoldNotRefused, ledgerv1.ResultCode_RESULT_CODE_INVALID_FIELD),
	"domain.ErrNeedPrior":                 internal(domain.ErrNeedPrior, "resolved by the writer before any answer"),
	"domain.ErrSnapshotCorrupt":           internal(domain.ErrSnapshotCorrupt, "the writer falls back to the log"),
	"domain.ErrSnapshotVersion":           internal(domain.ErrSnapshotVersion, "the writer falls back to the log"),
	"domain.ErrUnknownEvent":              internal(domain.ErrUnknownEvent, "a log this build cannot read: a fault of the server"),

	"commands.ErrLinkedItemFailed": outcome(commands.ErrLinkedItemFailed, ledgerv1.ResultCode_RESULT_CODE_LINKED_ITEM_FAILED),
	"commands.ErrInvalidLedger":    request(commands.ErrInvalidLedger, codes.InvalidArgument),
	"commands.ErrTooManyLedgers":   request(commands.ErrTooManyLedgers, codes.ResourceExhausted),
	"commands.ErrLedgerArchived":   request(commands.ErrLedgerArchived, codes.FailedPrecondition),
	"commands.ErrLedgerImporting":  request(commands.ErrLedgerImporting, codes.FailedPrecondition),
	"commands.ErrClosed":           request(commands.ErrClosed, codes.Unavailable),
	"commands.ErrUnavailable":      request(commands.ErrUnavailable, codes.Unavailable),
	"commands.ErrNotLeader":        request(commands.ErrNotLeader, codes.Unavailable),
	"commands.ErrNotAdmitted":      request(commands.ErrNotAdmitted, codes.Unavailable),
	"commands.ErrTooManyItems":     request(commands.ErrTooManyItems, codes.InvalidArgument),

	"eventstore.ErrLedgerArchived":      request(eventstore.ErrLedgerArchived, codes.FailedPrecondition),
	"eventstore.ErrLedgerImporting":     request(eventstore.ErrLedgerImporting, codes.FailedPrecondition),
	"eventstore.ErrLedgerNotImportable": request(eventstore.ErrLedgerNotImportable, codes.FailedPrecondition),
	"eventstore.ErrTooManyLiveLedgers":  request(eventstore.ErrTooManyLiveLedgers, codes.ResourceExhausted),
	"eventstore.ErrUnknownNode":         request(eventstore.ErrUnknownNode, codes.NotFound),
	"eventstore.ErrPartitions":          internal(eventstore.ErrPartitions, "ledgerd migrate's, never a call's"),
	"eventstore.ErrFenced":              internal(eventstore.ErrFenced, "the writer steps down; its requests hear commands.ErrUnavailable"),
	"eventstore.ErrBadBatch":            internal(eventstore.ErrBadBatch, "a writer's bug"),
	"eventstore.ErrLeaseLost":           internal(eventstore.ErrLeaseLost, "the writer steps down; its requests hear commands.ErrUnavailable"),
	"eventstore.ErrMalformed":           internal(eventstore.ErrMalformed, "a stored record that does not decode: a fault of the server"),
	"eventstore.ErrJSONForm":            internal(eventstore.ErrJSONForm, "ledgerctl's, reading an export file; never a call's"),
	"eventstore.ErrSnapshotChecksum":    internal(eventstore.ErrSnapshotChecksum, "the writer falls back to the log"),
	"eventstore.ErrSnapshotMismatch":    internal(eventstore.ErrSnapshotMismatch, "the writer falls back to the log"),
	"eventstore.ErrSnapshotTooLarge":    internal(eventstore.ErrSnapshotTooLarge, "the writer skips the snapshot"),

	"queries.ErrAccountNotFound":        request(queries.ErrAccountNotFound, codes.NotFound),
	"queries.ErrBadTransfersCursor":     request(queries.ErrBadTransfersCursor, codes.InvalidArgument),
	"queries.ErrBadCategoriesCursor":    request(queries.ErrBadCategoriesCursor, codes.InvalidArgument),
	"queries.ErrAlertsLimit":            request(queries.ErrAlertsLimit, codes.InvalidArgument),
	"queries.ErrBadAlertsCursor":        request(queries.ErrBadAlertsCursor, codes.InvalidArgument),
	"queries.ErrBadAlertFilter":         request(queries.ErrBadAlertFilter, codes.InvalidArgument),
	"queries.ErrCategoriesLimit":        request(queries.ErrCategoriesLimit, codes.InvalidArgument),
	"queries.ErrCategoryNotFound":       request(queries.ErrCategoryNotFound, codes.NotFound),
	"queries.ErrRollupTooLarge":         request(queries.ErrRollupTooLarge, codes.ResourceExhausted),
	"queries.ErrCategoryTooWide":        request(queries.ErrCategoryTooWide, codes.ResourceExhausted),
	"queries.ErrBeyondHead":             request(queries.ErrBeyondHead, codes.InvalidArgument),
	"queries.ErrDateRange":              request(queries.ErrDateRange, codes.InvalidArgument),
	"queries.ErrHistoryUnavailable":     request(queries.ErrHistoryUnavailable, codes.FailedPrecondition),
	"queries.ErrMinPositionBeyondHead":  request(queries.ErrMinPositionBeyondHead, codes.InvalidArgument),
	"queries.ErrNotReached":             request(queries.ErrNotReached, codes.DeadlineExceeded),
	"queries.ErrNotReconciled":          request(queries.ErrNotReconciled, codes.NotFound),
	"queries.ErrReconCursor":            request(queries.ErrReconCursor, codes.InvalidArgument),
	"queries.ErrStatementCursor":        request(queries.ErrStatementCursor, codes.InvalidArgument),
	"queries.ErrStatementLimit":         request(queries.ErrStatementLimit, codes.InvalidArgument),
	"queries.ErrPeriodsLimit":           request(queries.ErrPeriodsLimit, codes.InvalidArgument),
	"queries.ErrStatementPositionMax":   request(queries.ErrStatementPositionMax, codes.InvalidArgument),
	"queries.ErrStatementPositionRange": request(queries.ErrStatementPositionRange, codes.InvalidArgument),
	"queries.ErrStatementTimeRange":     request(queries.ErrStatementTimeRange, codes.InvalidArgument),
	"queries.ErrTooManyAccounts":        request(queries.ErrTooManyAccounts, codes.InvalidArgument),
	"queries.ErrTooManyAssets":          request(queries.ErrTooManyAssets, codes.ResourceExhausted),
	"queries.ErrTooManyJournalLines":    request(queries.ErrTooManyJournalLines, codes.InvalidArgument),
	"queries.ErrTooManyProjections":     request(queries.ErrTooManyProjections, codes.ResourceExhausted),
	"queries.ErrTooManyTransferIDs":     request(queries.ErrTooManyTransferIDs, codes.InvalidArgument),
	"queries.ErrTransfersPageTooLarge":  request(queries.ErrTransfersPageTooLarge, codes.InvalidArgument),
	"queries.ErrTransfersTimeRange":     request(queries.ErrTransfersTimeRange, codes.InvalidArgument),
	"queries.ErrUnknownTransferStatus":  request(queries.ErrUnknownTransferStatus, codes.InvalidArgument),
	"queries.ErrTransfersUnknownAsset":  request(queries.ErrTransfersUnknownAsset, codes.InvalidArgument),
	"queries.ErrTransfersMinAmount":     request(queries.ErrTransfersMinAmount, codes.InvalidArgument),
	"queries.ErrTransfersMaxAmount":     request(queries.ErrTransfersMaxAmount, codes.InvalidArgument),
	"queries.ErrAccountsPageTooLarge":   request(queries.ErrAccountsPageTooLarge, codes.InvalidArgument),
	"queries.ErrBadAccountsCursor":      request(queries.ErrBadAccountsCursor, codes.InvalidArgument),
	"queries.ErrAssetsPageTooLarge":     request(queries.ErrAssetsPageTooLarge, codes.InvalidArgument),
	"queries.ErrBadAssetsCursor":        request(queries.ErrBadAssetsCursor, codes.InvalidArgument),
}

// declaredSentinels returns the exported package-level variables named
// Err... declared in the non-test files of the module's package dir, as
// "pkg.ErrName".
func declaredSentinels(t *testing.T, dir string) []string {
	t.Helper()
	root := filepath.Join("..", "..", dir)
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var out []string
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(root, name), nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.VAR {
				continue
			}
			for _, spec := range gd.Specs {
				for _, id := range spec.(*ast.ValueSpec).Names {
					if id.IsExported() && strings.HasPrefix(id.Name, "Err") {
						out = append(out, f.Name.Name+"."+id.Name)
					}
				}
			}
		}
	}
	return out
}

// TestEverySentinelIsListed: sentinels names exactly the exported sentinels
// the packages declare.
func TestEverySentinelIsListed(t *testing.T) {
	var declared []string
	for _, dir := range []string{"domain", "commands", "eventstore", "queries", "workflows"} {
		declared = append(declared, declaredSentinels(t, dir)...)
	}
	if len(declared) < 40 {
		t.Fatalf("found %d sentinels: the parse missed them", len(declared))
	}
	for _, name := range declared {
		if _, ok := sentinels[name]; !ok {
			t.Errorf("%s is declared but has no row in sentinels: say what a client hears for it", name)
		}
	}
	for name := range sentinels {
		if !slices.Contains(declared, name) {
			t.Errorf("sentinels lists %s, which is not declared", name)
		}
	}
}

// TestEverySentinelHasItsAnswer holds each sentinel, wrapped as callers
// wrap them, to its answer: its result code as a command's outcome, its
// status as a request error, or Internal.
func TestEverySentinelHasItsAnswer(t *testing.T) {
	for name, want := range sentinels {
		t.Run(name, func(t *testing.T) {
			wrapped := fmt.Errorf("context: %w", want.err)
			res, itemErr := itemResult(0, "id", commands.Result{Err: wrapped})
			st := status.Convert(statusOf(wrapped))
			switch {
			case want.result != ledgerv1.ResultCode_RESULT_CODE_UNSPECIFIED:
				if itemErr != nil || res.GetCode() != want.result {
					t.Errorf("as an outcome: %v, %v; want %v", res.GetCode(), itemErr, want.result)
				}
			case want.internal != "":
				if st.Code() != codes.Internal || st.Message() != "internal error" {
					t.Errorf("as a request error: %v, want Internal saying nothing of the cause", st)
				}
				if status.Code(itemErr) != codes.Internal {
					t.Errorf("as an outcome: %v, %v; want Internal", res, itemErr)
				}
			default:
				if st.Code() != want.code {
					t.Errorf("as a request error: %v, want %v", st, want.code)
				}
				if !strings.Contains(st.Message(), want.err.Error()) {
					t.Errorf("message %q does not say %q", st.Message(), want.err.Error())
				}
				if status.Code(itemErr) != codes.Internal {
					t.Errorf("a request error as an outcome: %v, %v; want Internal", res, itemErr)
				}
			}
		})
	}
}

// TestResultCodesAreOnTheWire: every result code a sentinel carries names a
// value of the wire's enum (what resultCodeOf looks up).
func TestResultCodesAreOnTheWire(t *testing.T) {
	for name, s := range sentinels {
		e, ok := domain.SentinelOf(s.err)
		if !ok || e.Code() == "" {
			continue
		}
		if _, ok := ledgerv1.ResultCode_value["RESULT_CODE_"+e.Code()]; !ok {
			t.Errorf("%s: code %q is not a ledgerv1.ResultCode", name, e.Code())
		}
	}
}

// TestUnknownOutcomeIsInternal: an outcome without a result code (a bug)
// fails the request with Internal instead of crashing the server.
func TestUnknownOutcomeIsInternal(t *testing.T) {
	cmds := []domain.Command{&domain.DefineAsset{Code: "USD", Scale: 2}, &domain.DefineAsset{Code: "EUR", Scale: 2}}
	results := []commands.Result{{Position: 1}, {Err: errors.New("a new outcome nobody mapped")}}
	got, err := itemResults(cmds, results)
	if status.Code(err) != codes.Internal || got != nil {
		t.Fatalf("itemResults: %v, %v; want nil and Internal", got, err)
	}
	bogus := domain.NewOutcome("NO_SUCH_CODE", "bogus")
	if _, err := itemResult(0, "x", commands.Result{Err: bogus}); status.Code(err) != codes.Internal {
		t.Fatalf("outcome with a code the wire lacks: %v, want Internal", err)
	}
}

// TestStatusSaysFieldAndHint: a field-naming sentinel answers a BadRequest
// naming its field, its hint before its text.
func TestStatusSaysFieldAndHint(t *testing.T) {
	st := status.Convert(statusOf(fmt.Errorf("%d lines: %w", 2000, queries.ErrStatementLimit)))
	if st.Code() != codes.InvalidArgument || violation(st) != "limit" ||
		st.Message() != "limit: at most 1000 lines: 2000 lines: limit over 1000" {
		t.Errorf("got %v (field %q)", st, violation(st))
	}
	st = status.Convert(statusOf(fmt.Errorf("%q: %w", "nope", domain.ErrUnknownLedger)))
	if st.Code() != codes.InvalidArgument || violation(st) != "ledger" || !strings.Contains(st.Message(), "CreateLedger") {
		t.Errorf("unknown ledger: %v (field %q), want InvalidArgument naming ledger, hinting CreateLedger", st, violation(st))
	}
	// About the ledger itself, an unknown one is what is not found.
	st = status.Convert(resourceStatusOf(fmt.Errorf("%q: %w", "nope", domain.ErrUnknownLedger)))
	if st.Code() != codes.NotFound || violation(st) != "ledger" {
		t.Errorf("unknown ledger as the resource: %v, want NotFound naming ledger", st)
	}
}

// TestCauseOutranksUnavailable: a writer's failed append wraps both
// ErrUnavailable and the cause; the cause is said.
func TestCauseOutranksUnavailable(t *testing.T) {
	cause := fmt.Errorf("append to %q: %w", "l", eventstore.ErrLedgerArchived)
	err := fmt.Errorf("append at %d: %w: %w", 7, commands.ErrUnavailable, cause)
	if got := status.Code(statusOf(err)); got != codes.FailedPrecondition {
		t.Errorf("archived under unavailable: %v, want FailedPrecondition", got)
	}
	err = fmt.Errorf("append at %d: %w: %w", 7, commands.ErrUnavailable, eventstore.ErrFenced)
	if got := status.Code(statusOf(err)); got != codes.Unavailable {
		t.Errorf("fenced under unavailable: %v, want Unavailable", got)
	}
	if got := status.Code(statusOf(fmt.Errorf("wait: %w", context.DeadlineExceeded))); got != codes.DeadlineExceeded {
		t.Errorf("deadline: %v", got)
	}
	if got := status.Code(statusOf(fmt.Errorf("wait: %w", context.Canceled))); got != codes.Canceled {
		t.Errorf("cancel: %v", got)
	}
}

// TestLedgerNameCheckedOnce: the interceptor refuses a bad ledger name
// before any handler, for every method whose request names a ledger.
func TestLedgerNameCheckedOnce(t *testing.T) {
	for _, tc := range []struct {
		name, method string
		req          any
		want         codes.Code
	}{
		{"valid", "/ledger.v1.QueryService/GetBalances", &ledgerv1.GetBalancesRequest{Ledger: "demo-1"}, codes.OK},
		{"malformed", "/ledger.v1.QueryService/GetBalances", &ledgerv1.GetBalancesRequest{Ledger: "Demo"}, codes.InvalidArgument},
		{"empty", "/ledger.v1.CommandService/CreateTransfers", &ledgerv1.CreateTransfersRequest{}, codes.InvalidArgument},
		{"too long", "/ledger.v1.AdminService/GetLedger", &ledgerv1.GetLedgerRequest{Ledger: strings.Repeat("a", 64)}, codes.InvalidArgument},
		{"empty means every ledger", "/ledger.v1.QueryService/GetProjectionStatus", &ledgerv1.GetProjectionStatusRequest{}, codes.OK},
		{"malformed where empty is allowed", "/ledger.v1.QueryService/GetProjectionStatus",
			&ledgerv1.GetProjectionStatusRequest{Ledger: "-x"}, codes.InvalidArgument},
		{"names no ledger", "/ledger.v1.AdminService/ListLedgers", &ledgerv1.ListLedgersRequest{}, codes.OK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			handled := false
			_, err := refuseUndecodedUnary(context.Background(), tc.req, &grpc.UnaryServerInfo{FullMethod: tc.method},
				func(context.Context, any) (any, error) { handled = true; return nil, nil })
			st := status.Convert(err)
			if st.Code() != tc.want || handled != (tc.want == codes.OK) {
				t.Fatalf("got %v (handled %v), want %v", st, handled, tc.want)
			}
			if tc.want != codes.OK && violation(st) != "ledger" {
				t.Errorf("violation names %q, want ledger", violation(st))
			}
		})
	}
	// In a stream, the first message must name the ledger; later ones may
	// name none.
	if err := checkLedgerName("/ledger.v1.AuditService/ImportEvents", &ledgerv1.ImportEventsRequest{}, true); status.Code(err) != codes.InvalidArgument {
		t.Errorf("first import message naming no ledger: %v", err)
	}
	if err := checkLedgerName("/ledger.v1.AuditService/ImportEvents", &ledgerv1.ImportEventsRequest{}, false); err != nil {
		t.Errorf("later import message naming no ledger: %v", err)
	}
	if err := checkLedgerName("/ledger.v1.AuditService/ImportEvents", &ledgerv1.ImportEventsRequest{Ledger: "A"}, false); status.Code(err) != codes.InvalidArgument {
		t.Errorf("later import message with a malformed ledger: %v", err)
	}
}

// TestWriterElsewhereSaysSo: the errors that decide nothing because another
// process writes the ledger answer Unavailable with the WRITER_ELSEWHERE
// reason, which forwarding and clients go by; others do not carry it.
func TestWriterElsewhereSaysSo(t *testing.T) {
	for _, err := range []error{commands.ErrNotAdmitted, fmt.Errorf("%w: draining", commands.ErrNotAdmitted),
		fmt.Errorf("%w: %w", commands.ErrUnavailable, commands.ErrNotLeader)} {
		st := StatusOf(err)
		if status.Code(st) != codes.Unavailable || !IsWriterElsewhere(st) {
			t.Errorf("%v: %v, want Unavailable with %s", err, st, ReasonWriterElsewhere)
		}
	}
	if st := StatusOf(commands.ErrUnavailable); IsWriterElsewhere(st) {
		t.Errorf("%v carries %s", st, ReasonWriterElsewhere)
	}
}
