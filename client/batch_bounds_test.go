package client_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/client"
	"github.com/ledgerd/ledger/internal/testenv"
)

// TestRetriedBatchSendsWhatWasSent: a caller whose context ends after its
// transfer was sent gets Canceled at once, and is told to send the same id
// again to learn its fate; its CreateTransfer has returned, so t is the
// caller's again. The batch kept the caller's *Transfer, and its retry
// after an Unavailable encoded it again: whatever the caller put there since
// (another id, another amount) was what the retry applied. The batch holds
// a copy: a retry sends the same ids and amounts.
func TestRetriedBatchSendsWhatWasSent(t *testing.T) {
	t.Parallel()
	const method = "/ledger.v1.CommandService/CreateTransfers"
	sent, release := make(chan struct{}), make(chan struct{})
	var (
		mu       sync.Mutex
		attempts []string // the transfer id of each attempt
	)
	fake := client.WithDialOptions(grpc.WithChainUnaryInterceptor(
		func(ctx context.Context, m string, req, reply any, conn *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			if m != method {
				return invoker(ctx, m, req, reply, conn, opts...)
			}
			r := req.(*ledgerv1.CreateTransfersRequest)
			mu.Lock()
			attempts = append(attempts, r.GetTransfers()[0].GetId()+"/"+r.GetTransfers()[0].GetPostings()[0].GetAmount())
			n := len(attempts)
			mu.Unlock()
			if n == 1 { // the reply is lost: the connection broke
				close(sent)
				<-release
				return status.Error(codes.Unavailable, "connection reset")
			}
			reply.(*ledgerv1.CreateTransfersResponse).Results = []*ledgerv1.ItemResult{
				{Index: 0, Id: r.GetTransfers()[0].GetId(), Code: ledgerv1.ResultCode_RESULT_CODE_CREATED, Position: 7}}
			return nil
		}))
	c, err := client.Dial(context.Background(), "127.0.0.1:1", client.WithInsecure(), fake,
		client.WithRetry(client.RetryPolicy{MaxAttempts: 3, InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond}))
	testenv.NoError(t, err)
	defer c.Close()

	tr := transfer("pay-1", "alice", "bob", "1.00")
	callCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.CreateTransfer(callCtx, "demo", tr)
		done <- err
	}()
	<-sent
	cancel()
	if err := <-done; status.Code(err) != codes.Canceled {
		t.Fatalf("CreateTransfer with its context ended after the send: %v, want Canceled", err)
	}
	// CreateTransfer returned: t is the caller's to reuse (a pooled message).
	tr.Id = "pay-2"
	tr.Postings[0].Amount = "999.00"
	close(release)
	testenv.Eventually(t, 10*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(attempts) < 2 {
			return status.Error(codes.Unavailable, "no retry yet")
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	if attempts[1] != attempts[0] {
		t.Errorf("the batch's retry sent %s, its first attempt %s: the retry changed the transfer (the caller's message, reused after CreateTransfer returned)",
			attempts[1], attempts[0])
	}
}

// TestOverfullTransferGoesAlone: ledgerd refuses a whole CreateTransfers
// request whose transfers hold more postings together than 8,192 transfers
// of 64 could (counted on the wire before decoding). One caller's transfer
// of 524,289 postings (about 1 MB, far under the batch's byte bound) is such
// a request by itself: batched with other callers' transfers, it failed the
// whole batch, and every caller in it got InvalidArgument for a transfer of
// its own that was fine. A transfer over ledgerd's bounds of one goes in a
// batch of its own.
func TestOverfullTransferGoesAlone(t *testing.T) {
	t.Parallel()
	l := startLedgerd(t, "127.0.0.1:0")
	opt := client.DefaultBatchOptions
	opt.Linger = 300 * time.Millisecond // so that they go in one batch
	c := l.dial(t, client.WithBatching(opt))
	ledger := testenv.Name(t)
	setup(t, c, ledger, "alice", "bob")
	huge := transfer("huge", "alice", "bob", "1.00")
	for len(huge.Postings) <= 8192*64 {
		huge.Postings = append(huge.Postings, &ledgerv1.Posting{})
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		_, _ = c.CreateTransfer(ctx(t), ledger, huge) // its own error, whatever it is
	})
	time.Sleep(20 * time.Millisecond) // the huge one first, lingering
	r, err := c.CreateTransfer(ctx(t), ledger, transfer("fine", "alice", "bob", "1.00"))
	wg.Wait()
	if err != nil || r.GetCode() != ledgerv1.ResultCode_RESULT_CODE_CREATED {
		t.Errorf("a good transfer batched with another caller's overfull one: %v %v, want CREATED", r.GetCode(), err)
	}
}
