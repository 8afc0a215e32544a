package client_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/client"
	"github.com/ledgerd/ledger/internal/testenv"
)

// callCounter counts the CreateTransfers requests a client sends and their
// transfers (each attempt).
type callCounter struct{ calls, transfers atomic.Int64 }

func (cc *callCounter) option() client.Option {
	return client.WithDialOptions(grpc.WithChainUnaryInterceptor(
		func(ctx context.Context, method string, req, reply any, conn *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			if r, ok := req.(*ledgerv1.CreateTransfersRequest); ok {
				cc.calls.Add(1)
				cc.transfers.Add(int64(len(r.GetTransfers())))
			}
			return invoker(ctx, method, req, reply, conn, opts...)
		}))
}

// TestCreateTransferFromManyGoroutines sends 2,000 transfers from as many
// goroutines: each gets its own result (a bad one its own code, the others
// CREATED), in far fewer requests; sent again, each answers EXISTS at its
// position, and the balances count each once.
func TestCreateTransferFromManyGoroutines(t *testing.T) {
	t.Parallel()
	const n, bad = 2000, 1234
	l := startLedgerd(t, "127.0.0.1:0")
	var counter callCounter
	c := l.dial(t, counter.option())
	ledger := testenv.Name(t)
	setup(t, c, ledger, "alice", "bob")

	send := func() []*ledgerv1.ItemResult {
		results := make([]*ledgerv1.ItemResult, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				to := "bob"
				if i == bad {
					to = "nobody"
				}
				r, err := c.CreateTransfer(ctx(t), ledger, transfer(fmt.Sprintf("t-%d", i), "alice", to, "0.01"))
				if err != nil {
					t.Errorf("transfer %d: %v", i, err)
					return
				}
				results[i] = r
			})
		}
		wg.Wait()
		return results
	}
	first := send()
	if t.Failed() {
		t.FailNow()
	}
	calls := counter.calls.Load()
	t.Logf("%d transfers in %d requests", n, calls)
	if calls >= n/4 {
		t.Errorf("%d requests for %d concurrent transfers, want fewer than %d: no batching", calls, n, n/4)
	}
	var last uint64
	for i, r := range first {
		want := ledgerv1.ResultCode_RESULT_CODE_CREATED
		if i == bad {
			want = ledgerv1.ResultCode_RESULT_CODE_ACCOUNT_NOT_FOUND
		}
		if r.GetCode() != want || r.GetId() != fmt.Sprintf("t-%d", i) || r.GetIndex() != 0 {
			t.Errorf("transfer %d: %s %s index %d (%s), want %s t-%d index 0", i, r.GetId(), r.GetCode(), r.GetIndex(), r.GetDetail(), want, i)
		}
		last = max(last, r.GetPosition())
	}
	again := send()
	for i, r := range again {
		want := ledgerv1.ResultCode_RESULT_CODE_EXISTS
		if i == bad {
			want = ledgerv1.ResultCode_RESULT_CODE_ACCOUNT_NOT_FOUND
		}
		if r.GetCode() != want || r.GetPosition() != first[i].GetPosition() {
			t.Errorf("transfer %d again: %s at %d, want %s at %d", i, r.GetCode(), r.GetPosition(), want, first[i].GetPosition())
		}
	}
	b, err := c.GetBalances(ctx(t), &ledgerv1.GetBalancesRequest{Ledger: ledger, Accounts: []string{"bob"}, MinPosition: last})
	testenv.NoError(t, err)
	if got, want := b.GetBalances()[0].GetBalance(), "19.99"; got != want {
		t.Errorf("bob's balance %s, want %s (1,999 transfers of 0.01, each once)", got, want)
	}
}

// TestCreateTransferCancelledWhileQueued: a caller gone before its batch
// was sent is answered at once, and its transfer is never sent.
func TestCreateTransferCancelledWhileQueued(t *testing.T) {
	t.Parallel()
	l := startLedgerd(t, "127.0.0.1:0")
	var counter callCounter
	// A lone transfer lingers for a second: long past the caller's 50 ms.
	opt := client.DefaultBatchOptions
	opt.Linger = client.BatchLingerMax
	c := l.dial(t, counter.option(), client.WithBatching(opt))
	ledger := testenv.Name(t)
	setup(t, c, ledger, "alice", "bob")

	cctx, cancel := context.WithTimeout(ctx(t), 50*time.Millisecond)
	defer cancel()
	_, err := c.CreateTransfer(cctx, ledger, transfer("gone", "alice", "bob", "1.00"))
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("cancelled while queued: %v, want DeadlineExceeded", err)
	}
	// The next transfer's batch (after its own linger) does not carry it:
	// sent now, "gone" is new.
	r, err := c.CreateTransfer(ctx(t), ledger, transfer("gone", "alice", "bob", "1.00"))
	testenv.NoError(t, err)
	mustCode(t, ledgerv1.ResultCode_RESULT_CODE_CREATED, r)
	if got := counter.transfers.Load(); got != 1 {
		t.Errorf("%d transfers sent, want 1 (the abandoned one never)", got)
	}
}

// TestCreateTransferQueueFull: with FailWhenFull, a transfer finding its
// ledger's queue full fails at once with ResourceExhausted; without it, it
// waits for room, bounded by its context.
func TestCreateTransferQueueFull(t *testing.T) {
	t.Parallel()
	l := startLedgerd(t, "127.0.0.1:0")
	ledger := testenv.Name(t)
	setup(t, l.dial(t), ledger, "alice", "bob")
	// One batch of one in flight, held at a gate; one transfer queued.
	opt := client.BatchOptions{MaxBatch: 1, QueueMax: 1, InFlightMax: 1, CallTimeout: time.Minute}
	failing := opt
	failing.FailWhenFull = true

	for _, tc := range []struct {
		name string
		opt  client.BatchOptions
		want codes.Code
	}{
		{"fail-when-full", failing, codes.ResourceExhausted},
		{"wait-for-room", opt, codes.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gate, held := make(chan struct{}), make(chan struct{}, 1)
			c := l.dial(t, client.WithBatching(tc.opt), client.WithDialOptions(grpc.WithChainUnaryInterceptor(
				func(ctx context.Context, method string, req, reply any, conn *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
					select {
					case held <- struct{}{}:
					default: // the gate is open by the next call
					}
					<-gate
					return invoker(ctx, method, req, reply, conn, opts...)
				})))
			answers := make(chan error, 2)
			send := func(id string) {
				_, err := c.CreateTransfer(ctx(t), ledger, transfer(id, "alice", "bob", "1.00"))
				answers <- err
			}
			go send(tc.name + "-1")
			<-held // in flight
			go send(tc.name + "-2")
			testenv.Eventually(t, 10*time.Second, func() error {
				if n := c.Queued(ledger); n != 1 {
					return fmt.Errorf("%d queued, want 1", n)
				}
				return nil
			})
			cctx, cancel := context.WithTimeout(ctx(t), 100*time.Millisecond)
			defer cancel()
			_, err := c.CreateTransfer(cctx, ledger, transfer(tc.name+"-3", "alice", "bob", "1.00"))
			if status.Code(err) != tc.want {
				t.Errorf("third transfer while the queue is full: %v, want %s", err, tc.want)
			}
			close(gate)
			testenv.NoError(t, <-answers)
			testenv.NoError(t, <-answers)
			// Room again: the third goes.
			r, err := c.CreateTransfer(ctx(t), ledger, transfer(tc.name+"-3", "alice", "bob", "1.00"))
			testenv.NoError(t, err)
			mustCode(t, ledgerv1.ResultCode_RESULT_CODE_CREATED, r)
		})
	}
}

// TestCreateTransferBatchFails: a batch whose call fails fails every
// transfer in it with the call's error.
func TestCreateTransferBatchFails(t *testing.T) {
	t.Parallel()
	l := startLedgerd(t, "127.0.0.1:0")
	opt := client.DefaultBatchOptions
	opt.Linger = 200 * time.Millisecond // so the ten go in one batch
	var counter callCounter
	c := l.dial(t, counter.option(), client.WithBatching(opt))
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() {
			_, err := c.CreateTransfer(ctx(t), "Not A Ledger", transfer(fmt.Sprintf("t-%d", i), "alice", "bob", "1.00"))
			if status.Code(err) != codes.InvalidArgument {
				t.Errorf("transfer %d to a bad ledger name: %v, want InvalidArgument", i, err)
			}
		})
	}
	wg.Wait()
	if got := counter.calls.Load(); got >= 10 {
		t.Errorf("%d calls for 10 transfers lingering together, want fewer", got)
	}
}

// TestBadTransferFailsItsCallerAlone: a transfer that would fail the whole
// request (an effective_at ledgerd refuses, a text gRPC cannot encode as it
// is not UTF-8) is refused before it joins a batch, naming its field, so the
// transfers batched with it are applied.
func TestBadTransferFailsItsCallerAlone(t *testing.T) {
	t.Parallel()
	l := startLedgerd(t, "127.0.0.1:0")
	opt := client.DefaultBatchOptions
	opt.Linger = 200 * time.Millisecond // so that they would go in one batch
	c := l.dial(t, client.WithBatching(opt))
	ledger := testenv.Name(t)
	setup(t, c, ledger, "alice", "bob")
	bad := map[int]struct {
		spoil func(*ledgerv1.Transfer)
		field string
	}{
		// Before year 1; a Latin-1 é; bytes that start no UTF-8 character.
		3: {func(tr *ledgerv1.Transfer) { tr.EffectiveAt = &timestamppb.Timestamp{Seconds: -1 << 40} }, "effective_at"},
		5: {func(tr *ledgerv1.Transfer) { tr.Reference = "caf\xe9" }, "reference"},
		7: {func(tr *ledgerv1.Transfer) { tr.Metadata = map[string]string{"k": "\xff"} }, "metadata"},
		9: {func(tr *ledgerv1.Transfer) { tr.Postings[0].CreditAccount = "b\xc3" }, "postings.credit_account"},
	}
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Go(func() {
			tr := transfer(fmt.Sprintf("t-%d", i), "alice", "bob", "1.00")
			b, isBad := bad[i]
			if isBad {
				b.spoil(tr)
			}
			r, err := c.CreateTransfer(ctx(t), ledger, tr)
			switch {
			case isBad && (status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), b.field)):
				t.Errorf("bad %s: %v, want InvalidArgument naming it", b.field, err)
			case !isBad && (err != nil || r.GetCode() != ledgerv1.ResultCode_RESULT_CODE_CREATED):
				t.Errorf("transfer %d beside bad ones: %v %v, want CREATED", i, r.GetCode(), err)
			}
		})
	}
	wg.Wait()
}

// TestCreateTransferWithEndedContextIsNotSent: a CreateTransfer whose
// context has ended is not sent, as gRPC sends no call then: the same id
// sent afterwards is CREATED, not EXISTS.
func TestCreateTransferWithEndedContextIsNotSent(t *testing.T) {
	t.Parallel()
	l := startLedgerd(t, "127.0.0.1:0")
	c := l.dial(t) // no linger: a batch would go at once
	ledger := testenv.Name(t)
	setup(t, c, ledger, "alice", "bob")
	ended, cancel := context.WithCancel(ctx(t))
	cancel()
	if _, err := c.CreateTransfer(ended, ledger, transfer("late", "alice", "bob", "1.00")); status.Code(err) != codes.Canceled {
		t.Errorf("with an ended context: %v, want Canceled", err)
	}
	r, err := c.CreateTransfer(ctx(t), ledger, transfer("late", "alice", "bob", "1.00"))
	testenv.NoError(t, err)
	if r.GetCode() != ledgerv1.ResultCode_RESULT_CODE_CREATED {
		t.Errorf("sent again: %s at %d, want CREATED: the call with an ended context was applied", r.GetCode(), r.GetPosition())
	}
}

// TestCloseDrains: Close sends the queued transfers and waits for their
// answers; CreateTransfer after Close is refused.
func TestCloseDrains(t *testing.T) {
	t.Parallel()
	l := startLedgerd(t, "127.0.0.1:0")
	opt := client.DefaultBatchOptions
	opt.Linger = client.BatchLingerMax
	c := l.dial(t, client.WithBatching(opt))
	ledger := testenv.Name(t)
	setup(t, c, ledger, "alice", "bob")

	const n = 20
	var queued sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		queued.Go(func() {
			r, err := c.CreateTransfer(ctx(t), ledger, transfer(fmt.Sprintf("t-%d", i), "alice", "bob", "1.00"))
			if err == nil && r.GetCode() != ledgerv1.ResultCode_RESULT_CODE_CREATED {
				err = fmt.Errorf("transfer %d: %s", i, r.GetCode())
			}
			errs <- err
		})
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if q := c.Queued(ledger); q != n {
			return fmt.Errorf("%d queued, want %d", q, n)
		}
		return nil
	})
	// They linger; Close sends them and returns once they are answered.
	// (How long it takes is not asserted: a timed check is a flaky one on
	// a shared box.)
	testenv.NoError(t, c.Close())
	queued.Wait()
	close(errs)
	for err := range errs {
		testenv.NoError(t, err)
	}
	if _, err := c.CreateTransfer(ctx(t), ledger, transfer("late", "alice", "bob", "1.00")); !errors.Is(err, client.ErrClosed) {
		t.Errorf("after Close: %v, want ErrClosed", err)
	}
}
