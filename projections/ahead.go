package projections

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
)

// A runner's next batch is read, checked against the chain and decoded,
// and folded by a projector that stages its batches, while the last one's
// transaction runs (Runner.serve). Groups do the same (group.go).

// batch is the records of one transaction, checked against the chain, with
// their events when the projector takes them decoded (eventsApplier), and
// folded before the transaction when the projector could (stager).
type batch struct {
	recs   []eventstore.Record
	events []domain.Event
	staged staged
	// tried says the fold was tried (staged is nil when the projector
	// needs the database first).
	tried bool
}

// discard lets go of a staged fold that was not written.
func (b *batch) discard() {
	if b.staged != nil {
		b.staged.discard()
		b.staged = nil
	}
}

// fetch returns the batch after pos, whose event has the hash prev (known:
// prev is checked), checked, decoded, and folded when fold says the
// projector's memory continues at pos.
func (r *Runner) fetch(ctx context.Context, pos uint64, prev eventstore.Hash, known, fold bool) (batch, error) {
	recs, err := r.next(ctx, pos+1)
	if err != nil {
		return batch{}, err
	}
	b := batch{recs: r.linger(ctx, recs)}
	if err := ctx.Err(); err != nil {
		return batch{}, err // stopped while lingering: nothing to decode for
	}
	if err := r.checkFrom(pos, b.recs, prev, known); err != nil {
		return batch{}, err
	}
	if _, ok := r.proj.(eventsApplier); ok {
		if b.events, err = decodeEvents(b.recs); err != nil {
			return batch{}, r.refusal(ctx, pos, b.recs, err)
		}
	}
	if fold {
		if err := r.stage(ctx, pos, &b); err != nil {
			return batch{}, err
		}
	}
	return b, nil
}

// stage folds b, the batch after pos, before its transaction when the
// projector stages its batches (stager) and can.
func (r *Runner) stage(ctx context.Context, pos uint64, b *batch) error {
	st, ok := r.proj.(stager)
	if !ok {
		return nil
	}
	b.tried = true
	s, err := st.stage(r.ledger, b.recs, b.events)
	if err != nil {
		return r.refusal(ctx, pos, b.recs, err)
	}
	b.staged = s
	return nil
}

// refusal is err, a failure to decode or fold recs (after from) before
// their transaction, unless they are not the log's: then ErrChainBroken,
// as the transaction's move of the checkpoint would have found first
// (notApplied). Records can chain and not be the log's (a stream ahead of
// a restored log, or forged); only the log's are judged by what they hold.
func (r *Runner) refusal(ctx context.Context, from uint64, recs []eventstore.Record, err error) error {
	return refusal(ctx, r.pool, r.logLedger, r.proj.Name(), from, recs, err)
}

// refusal is Runner.refusal for a projector proj of logLedger's log.
func refusal(ctx context.Context, pool *pgxpool.Pool, logLedger, proj string, from uint64, recs []eventstore.Record, err error) error {
	last := &recs[len(recs)-1]
	inLog, qerr := isLogs(ctx, pool, logLedger, last)
	if qerr == nil && !inLog {
		return notLogs(proj, last)
	}
	return errors.Join(fmt.Errorf("apply %s at %d: %w", proj, from, err), qerr)
}

// isLogs says whether rec is the event the log of ledger holds at its
// position.
func isLogs(ctx context.Context, q interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}, ledger string, rec *eventstore.Record) (bool, error) {
	var inLog bool
	if err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM events WHERE ledger = $1 AND position = $2 AND hash = $3)`,
		ledger, int64(rec.Position), rec.Hash[:]).Scan(&inLog); err != nil {
		return false, fmt.Errorf("whether the event at %d is the log's: %w", rec.Position, err)
	}
	return inLog, nil
}

// notLogs is the ErrChainBroken of a batch whose last record is not the
// log's.
func notLogs(proj string, last *eventstore.Record) error {
	return fmt.Errorf("%s at %d: not the log's event (the log holds another there, or ends before it): %w",
		proj, last.Position, ErrChainBroken)
}

// ahead is the fetch of the batch after from (a T, which a *T lets go
// of) running in its own goroutine beside a transaction.
type ahead[T any, P interface {
	*T
	discard()
}] struct {
	from uint64
	stop context.CancelFunc
	done chan struct{}
	b    T
	err  error
}

// startAhead runs fetch under ctx, which stop ends (cancel).
func startAhead[T any, P interface {
	*T
	discard()
}](ctx context.Context, stop context.CancelFunc, from uint64, fetch func(context.Context) (T, error)) *ahead[T, P] {
	a := &ahead[T, P]{from: from, stop: stop, done: make(chan struct{})}
	go func() {
		defer close(a.done)
		a.b, a.err = fetch(ctx)
	}()
	return a
}

// wait returns the fetched batch.
func (a *ahead[T, P]) wait() (T, error) {
	<-a.done
	return a.b, a.err
}

// cancel stops the fetch (and its context, for good) and lets go of what
// it folded; nil does nothing.
func (a *ahead[T, P]) cancel() {
	if a == nil {
		return
	}
	a.stop()
	<-a.done
	P(&a.b).discard()
}
