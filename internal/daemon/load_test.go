package daemon_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
)

// The transfer load of the failover tests: TestFailover, and TestChaos
// (build tag chaos) with the same clients.

// failoverAck is how a transfer was acknowledged.
type failoverAck struct {
	code     ledgerv1.ResultCode
	position uint64
	via      int // the process that answered
	at       time.Time
}

// failoverLoad is what the load's clients share.
type failoverLoad struct {
	mu    sync.Mutex
	acked map[string]failoverAck
	err   error
}

// retryPause paces retries after Unavailable, so a standby refusing at once
// is not hammered.
const retryPause = 5 * time.Millisecond

// loadTarget is where a load client sends its transfers.
type loadTarget struct {
	ledger string
	// cmd is process via's command client (a chaos restart replaces it).
	cmd func(via int) ledgerv1.CommandServiceClient
	// callTimeout bounds one call: a call to a frozen process times out
	// and goes to the other one.
	callTimeout time.Duration
	// retry are the codes on which a call is sent again, with the same
	// id, to the other process: a dead, frozen or standby one answers so.
	retry []codes.Code
}

// client sends transfers g:000000, g:000001, ... from src to dst until ctx
// ends, each until acknowledged, alternating between the processes while
// they answer one of to.retry.
func (l *failoverLoad) client(ctx context.Context, to loadTarget, g int, dst string) {
	via := g % 2
	for seq := 0; ; seq++ {
		id := fmt.Sprintf("c%d:%06d", g, seq)
		tr := transfer(id, "src", dst, "1.00", "USD")
		for {
			if ctx.Err() != nil {
				return
			}
			c, cancel := context.WithTimeout(ctx, to.callTimeout)
			resp, err := to.cmd(via).CreateTransfers(c, &ledgerv1.CreateTransfersRequest{Ledger: to.ledger,
				Transfers: []*ledgerv1.Transfer{tr}})
			cancel()
			if ctx.Err() != nil {
				return // stopped: the outcome of this attempt is unknown
			}
			if code := status.Code(err); code != codes.OK {
				if !slices.Contains(to.retry, code) {
					l.fail(fmt.Errorf("%s via process %d: %w", id, via, err))
					return
				}
				via = 1 - via
				select {
				case <-time.After(retryPause):
				case <-ctx.Done():
					return
				}
				continue
			}
			rs := resp.GetResults()
			if len(rs) != 1 || rs[0].GetId() != id || (rs[0].GetCode() != codeCreated && rs[0].GetCode() != codeExists) {
				l.fail(fmt.Errorf("%s via process %d: results %v", id, via, rs))
				return
			}
			l.ack(id, via, rs[0])
			break
		}
	}
}

func (l *failoverLoad) ack(id string, via int, r *ledgerv1.ItemResult) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.acked[id] = failoverAck{code: r.GetCode(), position: r.GetPosition(), via: via, at: time.Now()}
}

func (l *failoverLoad) fail(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err == nil {
		l.err = err
	}
}

func (l *failoverLoad) failure() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

func (l *failoverLoad) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

// firstAckAfter returns the time of the first acknowledgement by process via
// after at.
func (l *failoverLoad) firstAckAfter(at time.Time, via int) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var first time.Time
	for _, a := range l.acked {
		if a.via == via && a.at.After(at) && (first.IsZero() || a.at.Before(first)) {
			first = a.at
		}
	}
	return first, !first.IsZero()
}

func (l *failoverLoad) snapshot() map[string]failoverAck {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]failoverAck, len(l.acked))
	for id, a := range l.acked {
		out[id] = a
	}
	return out
}
