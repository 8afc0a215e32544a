package commands

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
)

// leaseRetryEvery is how often a standby writer tries to take its ledger's
// lease: it bounds how long a ledger goes unserved after its holder died,
// beyond the time Postgres takes to end the dead holder's session.
const leaseRetryEvery = 250 * time.Millisecond

// takeoverGrace is how long a standby that saw the lease held waits, once it
// has it, before loading and writing: the previous holder, if alive but cut
// off from its lease session, notices within eventstore.LeasePingEvery plus a
// ping timeout and stops answering. Its appends cannot commit once its session
// is gone (they run on that session), so the grace is not what keeps the log
// right; it keeps the old holder's STRONG reads, answered from memory, from
// contradicting writes the new holder has already acknowledged.
const takeoverGrace = 4 * eventstore.LeasePingEvery

// ErrNotLeader means another process holds the ledger's lease and writes it;
// it comes wrapped in ErrUnavailable: retry, here later or on another node.
var ErrNotLeader error = domain.NewError(domain.KindUnavailable, "not the ledger's writer: another process holds its lease", "")

// ErrNotAdmitted means this process starts no writer for the ledger (its
// roles, a drain, its bound of writers: Ledgers.SetAdmit); another process
// may. Like ErrNotLeader, nothing was decided: send the command elsewhere.
var ErrNotAdmitted error = domain.NewError(domain.KindUnavailable, "this process takes no writes for the ledger",
	"send commands to another node with the writer role: ledgerctl nodes lists them")

// WriterElsewhere says whether err means the command was not decided here
// because another process writes, or may write, the ledger: ErrNotLeader or
// ErrNotAdmitted.
func WriterElsewhere(err error) bool {
	return errors.Is(err, ErrNotLeader) || errors.Is(err, ErrNotAdmitted)
}

// Leases hands out the per-ledger leases that make one process at a time the
// writer of a ledger.
type Leases interface {
	// TryAcquire takes ledger's lease if nobody holds it; ok is false, with
	// a nil error, when somebody does.
	TryAcquire(ctx context.Context, ledger string) (l Lease, ok bool, err error)
}

// Lease is a held lease.
//
// The writer appends through its lease, not through Store: the lease's
// Append commits only while the lease is held, in the same transaction (the
// fencing token is checked by the commit itself). Checking Lost before an
// append would leave a window: a writer frozen between the check and the
// commit would commit, and acknowledge, after another process took over.
type Lease interface {
	// Lost is closed once the lease is no longer held.
	Lost() <-chan struct{}
	// Release gives the lease up.
	Release()
	// Append is Store.Append fenced by the lease: it fails, with nothing
	// written, when the lease is no longer held at commit.
	Append(ctx context.Context, expected uint64, prev eventstore.Hash, recs []eventstore.Record) error
}

// PostgresLeases adapts eventstore's advisory-lock leases to Leases.
func PostgresLeases(l *eventstore.Lease) Leases { return pgLeases{l} }

type pgLeases struct{ l *eventstore.Lease }

func (p pgLeases) TryAcquire(ctx context.Context, ledger string) (Lease, bool, error) {
	h, ok, err := p.l.TryAcquire(ctx, ledger)
	if !ok || err != nil {
		return nil, ok, err
	}
	return h, true, nil
}

// errNotLeader answers the requests a writer without the lease receives.
var errNotLeader = fmt.Errorf("%w: %w", ErrUnavailable, ErrNotLeader)

// acquire takes the ledger's lease, retrying every leaseRetryEvery while
// another process holds it, and meanwhile answers every request with
// ErrUnavailable (wrapping ErrNotLeader) rather than keeping it queued. With
// no Leases configured it returns a nil lease at once.
//
// Errors: ctx's error.
func (w *Writer) acquire(ctx context.Context) (Lease, error) {
	if w.opts.Lease == nil {
		return nil, nil
	}
	t := time.NewTicker(leaseRetryEvery)
	defer t.Stop()
	failing, waited := false, false
	active := time.Now()
	for {
		l, ok, err := w.opts.Lease.TryAcquire(ctx, w.opts.Ledger)
		switch {
		case ok && waited:
			w.opts.Logger.Info("took the ledger's lease over", "grace", takeoverGrace)
			return l, w.refuseFor(ctx, takeoverGrace, l)
		case ok:
			w.opts.Logger.Info("took the ledger's lease: writing")
			return l, nil
		case err != nil && ctx.Err() == nil && !failing:
			w.opts.Logger.Error("cannot try the ledger's lease; retrying", "err", err)
		}
		failing, waited = err != nil, waited || err == nil
		for waiting := true; waiting; {
			select {
			case r := <-w.reqs:
				r.finish(errNotLeader)
				active = time.Now()
			case <-t.C:
				waiting = false
				// A standby nobody asks stops too: the next request starts
				// it again, and it takes the lease if the holder is gone.
				if w.idle(active) {
					return nil, errIdle
				}
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	}
}

// leaseLost returns lost, which never fires when the writer runs without a
// lease.
func leaseLost(l Lease) <-chan struct{} {
	if l == nil {
		return nil
	}
	return l.Lost()
}

// errLeaseLost ends a writer's life when its lease is lost.
var errLeaseLost = fmt.Errorf("lease lost: %w: %w", ErrUnavailable, ErrNotLeader)

// refuseFor answers requests with ErrNotLeader for d, then returns nil. It
// releases l and returns an error when ctx ends or l is lost first.
func (w *Writer) refuseFor(ctx context.Context, d time.Duration, l Lease) error {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case r := <-w.reqs:
			r.finish(errNotLeader)
		case <-t.C:
			return nil
		case <-l.Lost():
			l.Release()
			return errLeaseLost
		case <-ctx.Done():
			l.Release()
			return ctx.Err()
		}
	}
}
