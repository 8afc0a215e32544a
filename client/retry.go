package client

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

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
// codes.DeadlineExceeded of one attempt (AttemptTimeout) while the call's
// own deadline has not passed. Only methods that are idempotent by their ids
// or arguments are retried (every command, query, audit read; not
// CreateApiKey, MatchManually, Unmatch); streaming calls never are.
//
// A retried command is safe: what the lost attempt applied answers EXISTS
// with its original position the second time.
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

// idempotent says, for every unary method of ledger.v1, whether a second
// attempt is safe: commands are idempotent by their ids (a repeat answers
// EXISTS), state setters set the same state, reads read. A method not here
// (one added to the API since) is not retried until it is classified here;
// TestRetryClassifiesEveryMethod fails meanwhile.
var idempotent = map[string]bool{
	"/ledger.v1.AdminService/ArchiveLedger":              true,
	"/ledger.v1.AdminService/CreateApiKey":               false, // a second key
	"/ledger.v1.AdminService/CreateLedger":               true,
	"/ledger.v1.AdminService/GetLedger":                  true,
	"/ledger.v1.AdminService/ListApiKeys":                true,
	"/ledger.v1.AdminService/ListLedgers":                true,
	"/ledger.v1.AdminService/ListNodes":                  true,
	"/ledger.v1.AdminService/DrainNode":                  true, // sets a flag to a value
	"/ledger.v1.AdminService/ListPlacements":             true,
	"/ledger.v1.AdminService/RevokeApiKey":               true,
	"/ledger.v1.AdminService/UnarchiveLedger":            true,
	"/ledger.v1.CommandService/CloseAccounts":            true,
	"/ledger.v1.CommandService/ClosePeriod":              true,
	"/ledger.v1.CommandService/CreateTransfers":          true,
	"/ledger.v1.CommandService/DefineAsset":              true,
	"/ledger.v1.CommandService/DefineCategories":         true,
	"/ledger.v1.CommandService/OpenAccounts":             true,
	"/ledger.v1.CommandService/PostPendingTransfers":     true,
	"/ledger.v1.CommandService/ReverseTransfers":         true,
	"/ledger.v1.CommandService/SetAccountBounds":         true,
	"/ledger.v1.CommandService/SetAccountMetadata":       true,
	"/ledger.v1.CommandService/VoidPendingTransfers":     true,
	"/ledger.v1.IntegrityService/ListAnchors":            true,
	"/ledger.v1.MonitoringService/DefineRules":           true,
	"/ledger.v1.MonitoringService/DryRunRule":            true,
	"/ledger.v1.MonitoringService/FreezeAccounts":        true,
	"/ledger.v1.MonitoringService/ListAlerts":            true,
	"/ledger.v1.MonitoringService/ListRules":             true,
	"/ledger.v1.MonitoringService/UnfreezeAccounts":      true,
	"/ledger.v1.QueryService/GetBalances":                true,
	"/ledger.v1.QueryService/GetCategoryBalances":        true,
	"/ledger.v1.QueryService/GetProjectionStatus":        true,
	"/ledger.v1.QueryService/GetTransfers":               true,
	"/ledger.v1.QueryService/GetTrialBalance":            true,
	"/ledger.v1.QueryService/ListAccounts":               true,
	"/ledger.v1.QueryService/ListAssets":                 true,
	"/ledger.v1.QueryService/ListCategories":             true,
	"/ledger.v1.QueryService/ListPeriods":                true,
	"/ledger.v1.QueryService/ListStatement":              true,
	"/ledger.v1.QueryService/ListTransfers":              true,
	"/ledger.v1.ReconciliationService/GetDailyJournal":   true,
	"/ledger.v1.ReconciliationService/GetReconciliation": true,
	"/ledger.v1.ReconciliationService/ImportStatement":   true,
	"/ledger.v1.ReconciliationService/ListUnmatched":     true,
	"/ledger.v1.ReconciliationService/MatchManually":     false, // a second match
	"/ledger.v1.ReconciliationService/SetMatchingRules":  true,
	"/ledger.v1.ReconciliationService/Unmatch":           false, // a second unmatch
	"/ledger.v1.WebhookService/CreateSubscription":       false, // a second subscription, with its own secret
	"/ledger.v1.WebhookService/DeleteSubscription":       false, // NotFound for a delete that was done
	"/ledger.v1.WebhookService/ListDeliveries":           true,
	"/ledger.v1.WebhookService/ListSubscriptions":        true,
	"/ledger.v1.WebhookService/ReplayDeliveries":         false, // the deliveries queued twice
}

// retryable says whether an attempt that failed with err may be retried.
// A DeadlineExceeded counts only when the call's own context is alive: the
// attempt's deadline passed, not the caller's.
func retryable(ctx context.Context, err error) bool {
	switch status.Code(err) {
	case codes.Unavailable:
		return true
	case codes.DeadlineExceeded:
		return ctx.Err() == nil
	}
	return false
}

// unaryInterceptor retries the unary calls of idempotent methods by p.
func (p RetryPolicy) unaryInterceptor() grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if p.MaxAttempts <= 1 || !idempotent[method] {
			return p.attempt(ctx, method, req, reply, cc, invoker, opts)
		}
		began := time.Now()
		backoff := p.InitialBackoff
		for attempt := 1; ; attempt++ {
			err := p.attempt(ctx, method, req, reply, cc, invoker, opts)
			if err == nil || attempt == p.MaxAttempts || !retryable(ctx, err) {
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

// attempt is one try of a call, bounded by AttemptTimeout when set.
func (p RetryPolicy) attempt(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts []grpc.CallOption) error {
	if p.AttemptTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.AttemptTimeout)
		defer cancel()
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}
