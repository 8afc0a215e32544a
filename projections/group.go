package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/supervise"
)

// ejectAfter is how many batches in a row one member of a group may fail
// before it leaves the group to run alone.
const ejectAfter = 3

// Group applies several projections of one ledger from one source. Each batch
// is read, checked against the hash chain and lingered over once, and applied
// to every member in one transaction, each member from its own checkpoint (a
// member behind the others applies more of the batch, and they are level
// after it). A projection's transaction costs about as much for a handful of
// events as for hundreds: a group of five pays one instead of five, and reads
// and hashes each event once instead of five times.
//
// A member whose batch fails ejectAfter times in a row leaves the group and
// runs alone, on its own source, as a lone Runner does: one projection that
// refuses an event does not stop the others. A batch that breaks the chain
// sends every member alone, where each records the fault in its checkpoint.
// A member stays alone until the group is made again (the ledger's readers
// restart).
type Group struct {
	pool      *pgxpool.Pool
	ledger    string
	src       Source
	alone     func(ctx context.Context, r *Runner)
	logger    *slog.Logger
	lingerFor time.Duration
	hurry     chan struct{}

	// members and strikes belong to Run's goroutine (serve, then restarted,
	// one after the other).
	members []*Runner
	strikes map[*Runner]int
}

// NewGroup returns a group of runners (made by NewRunner with a nil source)
// of one ledger, reading src. alone must start a runner that leaves the
// group on a source of its own (Runner.WithSource, Runner.Run) and return.
// Call Run; do not run the members.
func NewGroup(pool *pgxpool.Pool, ledger string, runners []*Runner, src Source, alone func(ctx context.Context, r *Runner),
	logger *slog.Logger) *Group {
	if logger == nil {
		logger = slog.Default()
	}
	g := &Group{pool: pool, ledger: ledger, src: src, alone: alone, hurry: make(chan struct{}, 1),
		members: slices.Clone(runners), strikes: map[*Runner]int{}, logger: logger.With("ledger", ledger)}
	for _, r := range runners {
		r.setHurry(g.hurry) // a query waiting on any member hurries the group
	}
	return g
}

// WithLinger makes g wait up to d for more records after receiving fewer than
// a few hundred (Runner.WithLinger). It returns g.
func (g *Group) WithLinger(d time.Duration) *Group {
	g.lingerFor = d
	return g
}

// memberError is a member's failure to apply a batch.
type memberError struct {
	r   *Runner
	err error
}

func (e *memberError) Error() string { return e.err.Error() }
func (e *memberError) Unwrap() error { return e.err }

// Run applies records until ctx ends, retrying with back-off after errors.
func (g *Group) Run(ctx context.Context) error {
	supervise.Run(ctx, supervise.Policy{Initial: retryDelayMin, Max: retryDelayMax, Healthy: healthyRun,
		OnRestart: func(err error, delay time.Duration) { g.restarted(ctx, err, delay) }}, g.serve)
	return nil
}

// restarted decides who stays in the group after a failed batch.
func (g *Group) restarted(ctx context.Context, err error, delay time.Duration) {
	var m *memberError
	switch {
	case errors.Is(err, ErrChainBroken):
		g.logger.Warn("projections: a batch does not continue the hash chain; each runs alone and records it", "err", err)
		for _, r := range slices.Clone(g.members) {
			g.leave(ctx, r)
		}
	case errors.As(err, &m) && !errors.Is(err, ErrCheckpointMoved):
		g.strikes[m.r]++
		if g.strikes[m.r] < ejectAfter {
			g.logger.Warn("projections interrupted; resuming from their checkpoints", "err", err, "retry_in", delay)
			return
		}
		g.logger.Warn("projection leaves its group to run alone: it failed batches in a row", "projection", m.r.proj.Name(),
			"batches", g.strikes[m.r], "err", err)
		g.leave(ctx, m.r)
	default:
		g.logger.Warn("projections interrupted; resuming from their checkpoints", "err", err, "retry_in", delay)
	}
}

func (g *Group) leave(ctx context.Context, r *Runner) {
	g.members = slices.DeleteFunc(g.members, func(x *Runner) bool { return x == r })
	delete(g.strikes, r)
	r.setHurry(make(chan struct{}, 1))
	g.alone(ctx, r)
}

func (g *Group) serve(ctx context.Context) error {
	members := slices.Clone(g.members)
	if len(members) == 0 {
		<-ctx.Done() // every member runs alone
		return nil
	}
	for _, r := range members {
		pos, err := r.loadCheckpoint(ctx)
		if err != nil {
			return err
		}
		r.setPosition(pos)
	}
	for {
		from := members[0].Position()
		for _, r := range members[1:] {
			from = min(from, r.Position())
		}
		recs, err := g.src.Next(ctx, from+1, BatchMaxDefault)
		if err != nil {
			return err
		}
		recs = linger(ctx, g.src, g.hurry, g.lingerFor, BatchMaxDefault, recs)
		if err := g.apply(ctx, members, from, recs); err != nil {
			return err
		}
		clear(g.strikes)
	}
}

// apply applies recs, which start right after from (the position of the
// members furthest behind), to every member in one transaction.
func (g *Group) apply(ctx context.Context, members []*Runner, from uint64, recs []eventstore.Record) error {
	var lead *Runner
	for _, r := range members {
		if r.Position() == from {
			lead = r
			break
		}
	}
	// The lead checks every record's hash and link from its checkpoint on;
	// each member ahead checks that the record at its checkpoint is the one
	// it applied last.
	if err := lead.check(from, recs); err != nil {
		return err
	}
	last := recs[len(recs)-1].Position
	for _, r := range members {
		if p := r.Position(); p > from && p <= last && r.hashKnown && recs[p-from-1].Hash != r.hash {
			return fmt.Errorf("%s at %d: the record there is not the one applied: %w", r.proj.Name(), p, ErrChainBroken)
		}
	}
	err := pgx.BeginTxFunc(ctx, g.pool, applyTx, func(tx pgx.Tx) error {
		for _, r := range members {
			if p := r.Position(); p < last {
				if err := r.applyIn(ctx, tx, p, recs[p-from:]); err != nil {
					return &memberError{r: r, err: err}
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, r := range members {
		if r.Position() < last {
			r.hash, r.hashKnown = recs[len(recs)-1].Hash, true
			r.setPosition(last)
		}
	}
	return nil
}
