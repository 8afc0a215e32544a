package grpcapi

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
)

// TestStalledStreamsEnd: a client that stops reading a ReadEvents or a
// ReadStatementLines stream loses it after the stream's stall bound. Its
// handler returns (so its slot of the streams' bound and what it holds are
// let go) while the client still reads nothing, and the client, reading at
// last, gets what had been sent and then Aborted, not the whole stream.
func TestStalledStreamsEnd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const ledger, accounts, events = "stalled", 20, 6000
	pool := seedStalledLedger(ctx, t, ledger, accounts, events)
	// The lines' own read bound is long: the stream's bound ends them.
	client, ended := startStallAudit(t, pool, time.Minute, 300*time.Millisecond)

	for _, tc := range []struct {
		method string
		// open starts the stream and returns its Recv, counting items.
		open func() (func() (int, error), error)
		all  int
	}{
		{readEventsMethod, func() (func() (int, error), error) {
			s, err := client.ReadEvents(ctx, &ledgerv1.ReadEventsRequest{Ledger: ledger})
			return func() (int, error) { m, err := s.Recv(); return len(m.GetEvents()), err }, err
		}, events},
		{readStatementLinesMethod, func() (func() (int, error), error) {
			s, err := client.ReadStatementLines(ctx, &ledgerv1.ReadStatementLinesRequest{Ledger: ledger, ToPosition: events})
			return func() (int, error) { m, err := s.Recv(); return len(m.GetLines()), err }, err
		}, 2 * (events - accounts)},
	} {
		t.Run(tc.method[len("/ledger.v1.AuditService/"):], func(t *testing.T) {
			recv, err := tc.open()
			if err != nil {
				t.Fatal(err)
			}
			got, err := recv()
			if err != nil {
				t.Fatalf("first message: %v", err)
			}
			// Now the client reads nothing.
			select {
			case e := <-ended:
				if e.method != tc.method || status.Code(e.err) != codes.Aborted {
					t.Fatalf("%s ended with %v, want %s with Aborted", e.method, e.err, tc.method)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("the handler of a stream whose client reads nothing has not returned after 20 s")
			}
			for {
				n, err := recv()
				if errors.Is(err, io.EOF) {
					t.Fatalf("%d items and the end of the stream, want Aborted before the end", got)
				}
				if err != nil {
					if status.Code(err) != codes.Aborted || got >= tc.all {
						t.Fatalf("after %d of %d items: %v, want Aborted before the end", got, tc.all, err)
					}
					break
				}
				got += n
			}
		})
	}
}
