package client

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Bounds of RetryPolicy.
const (
	// RetryAttemptsMax bounds MaxAttempts: past a few dozen attempts the
	// server is down, and the caller should hear so.
	RetryAttemptsMax = 100
	// RetryElapsedMax bounds MaxElapsed.
	RetryElapsedMax = time.Hour
)

// RetryPolicy is how the client retries a unary call that failed on the way:
// codes.Unavailable (the connection broke or could not be made, or ledgerd
// is shutting down or stepping down as a ledger's writer), and
// codes.DeadlineExceeded of one attempt when its own AttemptTimeout passed
// (not a DeadlineExceeded that ledgerd answered, such as a min_position not
// reached in time) while the call's deadline has not. Only methods that are
// idempotent by their ids or arguments are retried (every command, query,
// audit read; not CreateApiKey, MatchManually, Unmatch), and the setters
// whose last call wins only when nothing was decided (below); streaming
// calls never are.
//
// A retried command is safe: what the lost attempt applied answers EXISTS
// with its original position the second time. The setters whose last call
// wins (bounds, metadata, rules, categories, matching rules, freezes,
// archiving, draining) are retried only when ledgerd answered that it
// decided nothing (another node writes the ledger): a retry of one whose
// outcome is unknown could undo a change another client made meanwhile.
//
// Between attempts the client waits a back-off that doubles from
// InitialBackoff up to MaxBackoff, each wait drawn uniformly from its upper
// half (jitter, so that many clients cut off together do not come back
// together).
type RetryPolicy struct {
	// MaxAttempts bounds the attempts of one call, the first included;
	// 1: no retry. 1..RetryAttemptsMax.
	MaxAttempts int
	// InitialBackoff is the first wait; MaxBackoff bounds every wait.
	InitialBackoff, MaxBackoff time.Duration
	// MaxElapsed bounds the time from the first attempt after which no
	// attempt starts; the call's context bounds it too. 0..RetryElapsedMax.
	MaxElapsed time.Duration
	// AttemptTimeout bounds each attempt (a DeadlineExceeded attempt is
	// then retried); 0: an attempt is bounded by the call's context only.
	AttemptTimeout time.Duration
}

// DefaultRetryPolicy: five attempts over at most 30 s, waits of 50 ms
// doubling to 2 s.
var DefaultRetryPolicy = RetryPolicy{
	MaxAttempts:    5,
	InitialBackoff: 50 * time.Millisecond,
	MaxBackoff:     2 * time.Second,
	MaxElapsed:     30 * time.Second,
}

func (p RetryPolicy) validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("RetryPolicy."+format+": %w", append(a, ErrInvalidOption)...)
	}
	switch {
	case p.MaxAttempts < 1 || p.MaxAttempts > RetryAttemptsMax:
		return bad("MaxAttempts %d, want 1..%d", p.MaxAttempts, RetryAttemptsMax)
	case p.MaxAttempts > 1 && (p.InitialBackoff <= 0 || p.MaxBackoff < p.InitialBackoff):
		return bad("InitialBackoff %s and MaxBackoff %s, want 0 < InitialBackoff <= MaxBackoff", p.InitialBackoff, p.MaxBackoff)
	case p.MaxElapsed < 0 || p.MaxElapsed > RetryElapsedMax:
		return bad("MaxElapsed %s, want 0..%s", p.MaxElapsed, RetryElapsedMax)
	case p.AttemptTimeout < 0:
		return bad("AttemptTimeout %s is negative", p.AttemptTimeout)
	}
	return nil
}

// retryClass is when a method's call may be tried again.
type retryClass uint8

const (
	// retryNever: a second attempt may have a second effect.
	retryNever retryClass = iota
	// retryAlways: commands are idempotent by their ids (a repeat answers
	// EXISTS), monotonic setters (close, revoke) set the same state again,
	// reads read.
	retryAlways
	// retryUndecided: setters whose last call wins. A second attempt sets
	// the first one's value again, over whatever another client set after
	// the first was applied, so only a call ledgerd answered without
	// deciding anything is tried again (IsWriterElsewhere).
	retryUndecided
)

// retries classifies every unary method of ledger.v1. A method not here
// (one added to the API since) is not retried until it is classified here;
// TestRetryClassifiesEveryMethod fails meanwhile.
var retries = map[string]retryClass{
	"/ledger.v1.AdminService/ArchiveLedger":              retryUndecided, // the last call wins
	"/ledger.v1.AdminService/CreateApiKey":               retryNever,     // a second key
	"/ledger.v1.AdminService/CreateLedger":               retryAlways,
	"/ledger.v1.AdminService/GetLedger":                  retryAlways,
	"/ledger.v1.AdminService/ListApiKeys":                retryAlways,
	"/ledger.v1.AdminService/ListLedgers":                retryAlways,
	"/ledger.v1.AdminService/ListNodes":                  retryAlways,
	"/ledger.v1.AdminService/DrainNode":                  retryUndecided, // the last call wins
	"/ledger.v1.AdminService/ListPlacements":             retryAlways,
	"/ledger.v1.AdminService/RevokeApiKey":               retryAlways,
	"/ledger.v1.AdminService/UnarchiveLedger":            retryUndecided, // the last call wins
	"/ledger.v1.CommandService/CloseAccounts":            retryAlways,
	"/ledger.v1.CommandService/ClosePeriod":              retryAlways,
	"/ledger.v1.CommandService/CreateTransfers":          retryAlways,
	"/ledger.v1.CommandService/DefineAsset":              retryAlways,
	"/ledger.v1.CommandService/DefineCategories":         retryUndecided, // the last call wins
	"/ledger.v1.CommandService/OpenAccounts":             retryAlways,
	"/ledger.v1.CommandService/PostPendingTransfers":     retryAlways,
	"/ledger.v1.CommandService/ReverseTransfers":         retryAlways,
	"/ledger.v1.CommandService/SetAccountBounds":         retryUndecided, // the last call wins
	"/ledger.v1.CommandService/SetAccountMetadata":       retryUndecided, // the last call wins
	"/ledger.v1.CommandService/VoidPendingTransfers":     retryAlways,
	"/ledger.v1.IntegrityService/ListAnchors":            retryAlways,
	"/ledger.v1.MonitoringService/DefineRules":           retryUndecided, // the last call wins
	"/ledger.v1.MonitoringService/DryRunRule":            retryAlways,
	"/ledger.v1.MonitoringService/FreezeAccounts":        retryUndecided, // the last call wins
	"/ledger.v1.MonitoringService/ListAlerts":            retryAlways,
	"/ledger.v1.MonitoringService/ListRules":             retryAlways,
	"/ledger.v1.MonitoringService/UnfreezeAccounts":      retryUndecided, // the last call wins
	"/ledger.v1.QueryService/GetBalances":                retryAlways,
	"/ledger.v1.QueryService/GetCategoryBalances":        retryAlways,
	"/ledger.v1.QueryService/GetProjectionStatus":        retryAlways,
	"/ledger.v1.QueryService/GetTransfers":               retryAlways,
	"/ledger.v1.QueryService/GetTrialBalance":            retryAlways,
	"/ledger.v1.QueryService/ListAccounts":               retryAlways,
	"/ledger.v1.QueryService/ListAssets":                 retryAlways,
	"/ledger.v1.QueryService/ListCategories":             retryAlways,
	"/ledger.v1.QueryService/ListPeriods":                retryAlways,
	"/ledger.v1.QueryService/ListStatement":              retryAlways,
	"/ledger.v1.QueryService/ListTransfers":              retryAlways,
	"/ledger.v1.ReconciliationService/GetDailyJournal":   retryAlways,
	"/ledger.v1.ReconciliationService/GetReconciliation": retryAlways,
	"/ledger.v1.ReconciliationService/ImportStatement":   retryAlways,
	"/ledger.v1.ReconciliationService/ListUnmatched":     retryAlways,
	"/ledger.v1.ReconciliationService/MatchManually":     retryNever,     // a second match
	"/ledger.v1.ReconciliationService/SetMatchingRules":  retryUndecided, // the last call wins
	"/ledger.v1.ReconciliationService/Unmatch":           retryNever,     // a second unmatch
	"/ledger.v1.WebhookService/CreateSubscription":       retryNever,     // a second subscription, with its own secret
	"/ledger.v1.WebhookService/DeleteSubscription":       retryNever,     // NotFound for a delete that was done
	"/ledger.v1.WebhookService/ListDeliveries":           retryAlways,
	"/ledger.v1.WebhookService/ListSubscriptions":        retryAlways,
	"/ledger.v1.WebhookService/ReplayDeliveries":         retryNever, // the deliveries queued twice
}

// retryable says whether an attempt of a method of class c that failed
// with err may be retried; timedOut says the attempt's own AttemptTimeout
// passed, not the caller's deadline.
func retryable(c retryClass, err error, timedOut bool) bool {
	switch {
	case c == retryUndecided:
		return IsWriterElsewhere(err)
	case c != retryAlways:
		return false
	case status.Code(err) == codes.Unavailable:
		return true
	}
	// Only the attempt's own timeout: a DeadlineExceeded that ledgerd
	// answered (a min_position not reached in its 10 s) would take as long
	// again each time.
	return timedOut
}

// ReasonWriterElsewhere is the ErrorInfo reason of an Unavailable with
// which ledgerd says it decided nothing: another node writes, or may
// write, the ledger. The call may go again, here or to another node.
const ReasonWriterElsewhere = "WRITER_ELSEWHERE"

// IsWriterElsewhere says whether err is an Unavailable that decided
// nothing (ReasonWriterElsewhere).
func IsWriterElsewhere(err error) bool {
	st := status.Convert(err)
	if st.Code() != codes.Unavailable {
		return false
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetReason() == ReasonWriterElsewhere {
			return true
		}
	}
	return false
}

// unaryInterceptor retries the unary calls of p's methods by their class.
func (p RetryPolicy) unaryInterceptor() grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		class := retries[method]
		if p.MaxAttempts <= 1 || class == retryNever {
			err, _ := p.attempt(ctx, method, req, reply, cc, invoker, opts)
			return err
		}
		began := time.Now()
		backoff := p.InitialBackoff
		for attempt := 1; ; attempt++ {
			err, timedOut := p.attempt(ctx, method, req, reply, cc, invoker, opts)
			if err == nil || attempt == p.MaxAttempts || !retryable(class, err, timedOut) {
				return err
			}
			wait := backoff/2 + rand.N(backoff/2+1)
			if p.MaxElapsed > 0 && time.Since(began)+wait > p.MaxElapsed {
				return err
			}
			timer := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				timer.Stop()
				return err
			case <-timer.C:
			}
			backoff = min(2*backoff, p.MaxBackoff)
		}
	}
}

// attempt is one try of a call, bounded by AttemptTimeout when set;
// timedOut says that bound passed while the call's own context is alive.
func (p RetryPolicy) attempt(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn,
	invoker grpc.UnaryInvoker, opts []grpc.CallOption) (err error, timedOut bool) {
	if p.AttemptTimeout <= 0 {
		return invoker(ctx, method, req, reply, cc, opts...), false
	}
	actx, cancel := context.WithTimeout(ctx, p.AttemptTimeout)
	defer cancel()
	err = invoker(actx, method, req, reply, cc, opts...)
	return err, err != nil && actx.Err() == context.DeadlineExceeded && ctx.Err() == nil
}
