package client_test

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/ledgerd/ledger/adapters/apikeys"
	"github.com/ledgerd/ledger/adapters/grpcapi"
	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/client"
	"github.com/ledgerd/ledger/internal/testenv"
)

// attempts counts the attempts of calls (the retry interceptor is outside
// the options' interceptors) and their Unavailable failures.
type attempts struct{ all, unavailable atomic.Int64 }

func (a *attempts) option() client.Option {
	return client.WithDialOptions(grpc.WithChainUnaryInterceptor(
		func(ctx context.Context, method string, req, reply any, conn *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			a.all.Add(1)
			err := invoker(ctx, method, req, reply, conn, opts...)
			if status.Code(err) == codes.Unavailable {
				a.unavailable.Add(1)
			}
			return err
		}))
}

// quickRetries retry often enough for a test to see several attempts.
var quickRetries = client.RetryPolicy{MaxAttempts: client.RetryAttemptsMax, InitialBackoff: 10 * time.Millisecond,
	MaxBackoff: 500 * time.Millisecond, MaxElapsed: time.Minute}

// freeAddr returns a loopback address nothing listens on (for now).
func freeAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	testenv.NoError(t, err)
	addr := lis.Addr().String()
	testenv.NoError(t, lis.Close())
	return addr
}

// TestRetryUntilLedgerdIsBack: a transfer sent while ledgerd is down is
// retried until a ledgerd on the same database listens again, and applied
// once.
func TestRetryUntilLedgerdIsBack(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t)
	key, err := apikeys.Generate(nil)
	testenv.NoError(t, err)
	pgURL := testenv.MigratedPostgresURL(t)
	first := startLedgerdOn(t, pgURL, addr, key)
	var counted attempts
	c := first.dial(t, client.WithRetry(quickRetries), counted.option())
	ledger := testenv.Name(t)
	setup(t, c, ledger, "alice", "bob")

	first.m.Close()
	answer := make(chan error, 1)
	var result *ledgerv1.ItemResult
	go func() {
		var err error
		result, err = c.CreateTransfer(ctx(t), ledger, transfer("t1", "alice", "bob", "3.00"))
		answer <- err
	}()
	testenv.Eventually(t, 30*time.Second, func() error {
		if n := counted.unavailable.Load(); n < 2 {
			return status.Errorf(codes.Unavailable, "%d attempts failed Unavailable, want 2 before ledgerd is back", n)
		}
		return nil
	})
	startLedgerdOn(t, pgURL, addr, key)
	testenv.NoError(t, <-answer)
	mustCode(t, ledgerv1.ResultCode_RESULT_CODE_CREATED, result)
	t.Logf("%d attempts, %d Unavailable", counted.all.Load(), counted.unavailable.Load())

	again, err := c.CreateTransfer(ctx(t), ledger, transfer("t1", "alice", "bob", "3.00"))
	testenv.NoError(t, err)
	if again.GetCode() != ledgerv1.ResultCode_RESULT_CODE_EXISTS || again.GetPosition() != result.GetPosition() {
		t.Errorf("resent: %s at %d, want EXISTS at %d", again.GetCode(), again.GetPosition(), result.GetPosition())
	}
	checkBalance(t, c, ledger, "bob", result.GetPosition(), "3.00")
}

// TestRetryAfterLostReply: the first attempt is applied but its reply is
// lost (Unavailable); the retry answers EXISTS with the first's position,
// and the transfer counts once.
func TestRetryAfterLostReply(t *testing.T) {
	t.Parallel()
	l := startLedgerd(t, "127.0.0.1:0")
	var lost atomic.Int64
	c := l.dial(t, client.WithRetry(quickRetries), client.WithDialOptions(grpc.WithChainUnaryInterceptor(
		func(ctx context.Context, method string, req, reply any, conn *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			err := invoker(ctx, method, req, reply, conn, opts...)
			if _, ok := req.(*ledgerv1.CreateTransfersRequest); ok && err == nil && lost.Add(1) == 1 {
				return status.Error(codes.Unavailable, "test: reply lost")
			}
			return err
		})))
	ledger := testenv.Name(t)
	setup(t, c, ledger, "alice", "bob")

	r, err := c.CreateTransfer(ctx(t), ledger, transfer("t1", "alice", "bob", "4.00"))
	testenv.NoError(t, err)
	if r.GetCode() != ledgerv1.ResultCode_RESULT_CODE_EXISTS || lost.Load() != 2 {
		t.Errorf("after a lost reply: %s in %d attempts, want EXISTS in 2", r.GetCode(), lost.Load())
	}
	checkBalance(t, c, ledger, "bob", r.GetPosition(), "4.00")
}

// TestRetryIdempotentOnly: against an address nothing listens on, a query
// is tried MaxAttempts times; CreateApiKey, which a second attempt could
// apply twice, once.
func TestRetryIdempotentOnly(t *testing.T) {
	t.Parallel()
	const maxAttempts = 3
	var counted attempts
	c, err := client.Dial(context.Background(), freeAddr(t), client.WithInsecure(), counted.option(),
		client.WithRetry(client.RetryPolicy{MaxAttempts: maxAttempts, InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond}))
	testenv.NoError(t, err)
	defer c.Close()

	_, err = c.GetLedger(ctx(t), &ledgerv1.GetLedgerRequest{Ledger: "x"})
	if status.Code(err) != codes.Unavailable || counted.all.Load() != maxAttempts {
		t.Errorf("GetLedger: %v in %d attempts, want Unavailable in %d", err, counted.all.Load(), maxAttempts)
	}
	counted.all.Store(0)
	_, err = c.CreateApiKey(ctx(t), &ledgerv1.CreateApiKeyRequest{})
	if status.Code(err) != codes.Unavailable || counted.all.Load() != 1 {
		t.Errorf("CreateApiKey: %v in %d attempts, want Unavailable in 1", err, counted.all.Load())
	}
}

// TestRetryAttemptTimeout: an attempt that outlives AttemptTimeout while
// the call's deadline is far is retried; once the call's own deadline has
// passed, it is not.
func TestRetryAttemptTimeout(t *testing.T) {
	t.Parallel()
	l := startLedgerd(t, "127.0.0.1:0")
	// The next stalls GetBalances attempts wait out their deadline: a
	// server that does not answer.
	var stalls, tries atomic.Int64
	stalling := client.WithDialOptions(grpc.WithChainUnaryInterceptor(
		func(ctx context.Context, method string, req, reply any, conn *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			if _, ok := req.(*ledgerv1.GetBalancesRequest); ok {
				tries.Add(1)
				if stalls.Add(-1) >= 0 {
					<-ctx.Done()
					return status.FromContextError(ctx.Err()).Err()
				}
			}
			return invoker(ctx, method, req, reply, conn, opts...)
		}))
	// Attempts of 400 ms: an attempt that is not stalled must not time out
	// on a loaded machine under -race (100 ms did).
	c := l.dial(t, client.WithRetry(client.RetryPolicy{MaxAttempts: 5, InitialBackoff: time.Millisecond,
		MaxBackoff: time.Millisecond, AttemptTimeout: 400 * time.Millisecond}), stalling)
	ledger := testenv.Name(t)
	// Set up without attempt timeouts: a slow first DefineAsset retried
	// would answer EXISTS (rightly), which setup does not expect.
	setup(t, l.dial(t), ledger, "alice")

	stalls.Store(2)
	_, err := c.GetBalances(ctx(t), &ledgerv1.GetBalancesRequest{Ledger: ledger, Accounts: []string{"alice"}})
	// At least 3: an attempt not stalled may still time out on a loaded
	// machine under -race, and be retried too.
	if err != nil || tries.Load() < 3 {
		t.Errorf("two stalled attempts: %v after %d attempts, want success in 3 or more", err, tries.Load())
	}

	stalls.Store(1000)
	tries.Store(0)
	c = l.dial(t, client.WithRetry(client.RetryPolicy{MaxAttempts: 5, InitialBackoff: time.Millisecond,
		MaxBackoff: time.Millisecond, AttemptTimeout: 100 * time.Millisecond}), stalling)
	short, cancel := context.WithTimeout(ctx(t), 250*time.Millisecond)
	defer cancel()
	_, err = c.GetBalances(short, &ledgerv1.GetBalancesRequest{Ledger: ledger, Accounts: []string{"alice"}})
	// Two attempts time out by 200 ms; a third may start before 250 ms.
	if n := tries.Load(); status.Code(err) != codes.DeadlineExceeded || n < 2 || n > 3 {
		t.Errorf("call deadline 250 ms, attempts 100 ms: %v after %d attempts, want DeadlineExceeded after 2 or 3", err, n)
	}
}

func checkBalance(t *testing.T, c *client.Client, ledger, account string, pos uint64, want string) {
	t.Helper()
	b, err := c.GetBalances(ctx(t), &ledgerv1.GetBalancesRequest{Ledger: ledger, Accounts: []string{account}, MinPosition: pos})
	testenv.NoError(t, err)
	if got := b.GetBalances()[0].GetBalance(); got != want {
		t.Errorf("%s's balance %s, want %s", account, got, want)
	}
}

// TestRetryClassifiesEveryMethod: every unary method of ledger.v1 is
// classified for retries (always, never, or when undecided), and nothing else is: a new
// method is not retried blindly, nor forgotten.
func TestRetryClassifiesEveryMethod(t *testing.T) {
	seen := map[string]bool{}
	protoregistry.GlobalFiles.RangeFilesByPackage("ledger.v1", func(f protoreflect.FileDescriptor) bool {
		for i := range f.Services().Len() {
			sd := f.Services().Get(i)
			for j := range sd.Methods().Len() {
				m := sd.Methods().Get(j)
				if m.IsStreamingClient() || m.IsStreamingServer() {
					continue // never retried
				}
				name := fmt.Sprintf("/%s/%s", sd.FullName(), m.Name())
				seen[name] = true
				if _, ok := client.Retries[name]; !ok {
					t.Errorf("%s: not classified in client's retries table", name)
				}
			}
		}
		return true
	})
	for name := range client.Retries {
		if !seen[name] {
			t.Errorf("%s: classified, but no such unary method", name)
		}
	}
}

// answering returns an option whose interceptor (inside the retry
// interceptor) answers the calls of method with the errors of answers in
// turn, as ledgerd would, then lets them through; tries counts them.
func answering(method string, tries *atomic.Int64, answers ...error) client.Option {
	return client.WithDialOptions(grpc.WithChainUnaryInterceptor(
		func(ctx context.Context, m string, req, reply any, conn *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			if m != method {
				return invoker(ctx, m, req, reply, conn, opts...)
			}
			if n := tries.Add(1); int(n) <= len(answers) {
				return answers[n-1]
			}
			return invoker(ctx, m, req, reply, conn, opts...)
		}))
}

// TestRetryNotOnDeadlineLedgerdAnswered: without AttemptTimeout, a
// DeadlineExceeded that ledgerd answered (a min_position not reached in
// its 10 s) comes back after one attempt, not after five times 10 s.
func TestRetryNotOnDeadlineLedgerdAnswered(t *testing.T) {
	t.Parallel()
	l := startLedgerd(t, "127.0.0.1:0")
	ledger := testenv.Name(t)
	setup(t, l.dial(t), ledger, "alice")
	var tries atomic.Int64
	notReached := status.Error(codes.DeadlineExceeded, "balances: the projection has not reached the position in 10s")
	c := l.dial(t, client.WithRetry(client.RetryPolicy{MaxAttempts: 5, InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond}),
		answering("/ledger.v1.QueryService/GetBalances", &tries, notReached, notReached))
	_, err := c.GetBalances(ctx(t), &ledgerv1.GetBalancesRequest{Ledger: ledger, Accounts: []string{"alice"}})
	if status.Code(err) != codes.DeadlineExceeded || tries.Load() != 1 {
		t.Errorf("GetBalances: %v after %d attempts, want ledgerd's DeadlineExceeded after 1", err, tries.Load())
	}
}

// TestRetrySettersOnlyWhenUndecided: a setter whose last call wins is not
// tried again after an Unavailable whose outcome is unknown (its first
// attempt may have been applied, and another client's change since would
// be undone), and is after one with which ledgerd decided nothing
// (WRITER_ELSEWHERE).
func TestRetrySettersOnlyWhenUndecided(t *testing.T) {
	t.Parallel()
	l := startLedgerd(t, "127.0.0.1:0")
	ledger := testenv.Name(t)
	setup(t, l.dial(t), ledger, "alice")
	const method = "/ledger.v1.CommandService/SetAccountMetadata"
	policy := client.WithRetry(client.RetryPolicy{MaxAttempts: 5, InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
	req := &ledgerv1.SetAccountMetadataRequest{Ledger: ledger,
		Accounts: []*ledgerv1.AccountMetadata{{AccountId: "alice", Metadata: map[string]string{"k": "v"}}}}

	var tries atomic.Int64
	lost := status.Error(codes.Unavailable, "connection reset")
	_, err := l.dial(t, policy, answering(method, &tries, lost)).SetAccountMetadata(ctx(t), req)
	if status.Code(err) != codes.Unavailable || tries.Load() != 1 {
		t.Errorf("an outcome unknown: %v after %d attempts, want Unavailable after 1", err, tries.Load())
	}

	st, err := status.New(codes.Unavailable, "not the ledger's writer").WithDetails(
		&errdetails.ErrorInfo{Reason: client.ReasonWriterElsewhere, Domain: "ledger.v1"})
	testenv.NoError(t, err)
	tries.Store(0)
	_, err = l.dial(t, policy, answering(method, &tries, st.Err())).SetAccountMetadata(ctx(t), req)
	if err != nil || tries.Load() != 2 {
		t.Errorf("nothing decided: %v after %d attempts, want success after 2", err, tries.Load())
	}
	if !client.IsWriterElsewhere(st.Err()) || client.IsWriterElsewhere(lost) {
		t.Error("IsWriterElsewhere does not tell the two apart")
	}
	if client.ReasonWriterElsewhere != grpcapi.ReasonWriterElsewhere {
		t.Errorf("the client's reason %q, ledgerd's %q", client.ReasonWriterElsewhere, grpcapi.ReasonWriterElsewhere)
	}
}
