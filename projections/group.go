package projections

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/supervise"
)

// Limits of a group.
const (
	// ejectAfter is how many batches in a row one member may fail (not for
	// a transient reason) before it leaves the group to run alone.
	ejectAfter = 3
	// lagMax is how far a member may be behind the group's most advanced
	// member: further, it catches up alone, so that the others do not wait.
	lagMax = BatchMaxDefault
)

// Group applies several projections of one ledger from one source. Each batch
// is read, checked against the hash chain and lingered over once, and applied
// to every member in one transaction, each member from its own checkpoint (a
// member a little behind applies more of the batch, and they are level after
// it). A projection's transaction costs about as much for a handful of events
// as for hundreds: a group of three pays one instead of three, and reads and
// hashes each event once.
//
// A member leaves the group to run alone, on its own source as a lone Runner
// does, when it fails ejectAfter batches in a row (a projection that refuses
// an event does not stop the others), when it is more than lagMax behind (it
// catches up without holding the others back), or, every member, when a batch
// breaks the hash chain (each records the fault in its checkpoint), or when
// another transaction holds its checkpoint (a rebuild's swap: it waits alone).
// A member that left rejoins once it has applied past where it left and
// reached the group.
type Group struct {
	pool      *pgxpool.Pool
	ledger    string
	src       Source
	alone     func(ctx context.Context, r *Runner)
	logger    *slog.Logger
	lingerFor time.Duration
	hurry     chan struct{}
	lagMax    uint64
	// aheadFrom is the batch size from which the next batch is read ahead
	// (aheadFromDefault).
	aheadFrom int
	// all are the members in the order they apply a batch; rejoin brings
	// back those that left.
	all    []*Runner
	rejoin chan *Runner
	// pos is the position every member of the group has applied.
	pos atomic.Uint64
	// lone counts the goroutines of members running alone.
	lone sync.WaitGroup

	// in and strikes belong to Run's goroutine (serve, then restarted, one
	// after the other).
	in      map[*Runner]bool
	strikes map[*Runner]int
}

// NewGroup returns a group of runners (made by NewRunner with a nil source)
// of one ledger, reading src, applying a batch to them in their order (a
// member that reads what another writes comes after it). alone must run a
// runner on a source of its own (Runner.WithSource, Runner.Run) until ctx
// ends. Call Run; do not run the members.
func NewGroup(pool *pgxpool.Pool, ledger string, runners []*Runner, src Source, alone func(ctx context.Context, r *Runner),
	logger *slog.Logger) *Group {
	if logger == nil {
		logger = slog.Default()
	}
	g := &Group{pool: pool, ledger: ledger, src: src, alone: alone, hurry: make(chan struct{}, 1), lagMax: lagMax, aheadFrom: aheadFromDefault,
		all: slices.Clone(runners), rejoin: make(chan *Runner, len(runners)), in: map[*Runner]bool{},
		strikes: map[*Runner]int{}, logger: logger.With("ledger", ledger)}
	for _, r := range runners {
		r.setHurry(g.hurry) // a query waiting on any member hurries the group
		g.in[r] = true
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

// errRejoin ends a serve so that a member that left comes back.
var errRejoin = errors.New("a member rejoins the group")

// Run applies records until ctx ends, retrying with back-off after errors.
// It returns once the members running alone have stopped too.
func (g *Group) Run(ctx context.Context) error {
	supervise.Run(ctx, supervise.Policy{Initial: retryDelayMin, Max: retryDelayMax, Healthy: healthyRun,
		OnRestart: func(err error, delay time.Duration) { g.restarted(ctx, err, delay) }}, g.serve)
	g.lone.Wait()
	return nil
}

// members are the runners in the group, in their order.
func (g *Group) members() []*Runner {
	return slices.DeleteFunc(slices.Clone(g.all), func(r *Runner) bool { return !g.in[r] })
}

// restarted decides who is in the group after a failed batch.
func (g *Group) restarted(ctx context.Context, err error, delay time.Duration) {
	var m *memberError
	switch {
	case errors.Is(err, errRejoin):
	case errors.Is(err, ErrChainBroken):
		g.logger.Warn("projections: a batch does not continue the hash chain; each runs alone and records it", "err", err)
		for _, r := range g.members() {
			g.leave(ctx, r)
		}
	case errors.As(err, &m) && !errors.Is(err, ErrCheckpointMoved) && !transient(err):
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
	for {
		select {
		case r := <-g.rejoin:
			g.in[r] = true
			r.setHurry(g.hurry)
			g.logger.Info("projection rejoins its group", "projection", r.proj.Name(), "position", r.Position())
			continue
		default:
		}
		return
	}
}

// transient says whether err is the connection's or the server's state, not
// the member's: it does not count against the member.
func transient(err error) bool {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		switch pg.Code[:2] {
		case "08", "40", "53", "57": // connection, rollback, resources, operator intervention
			return true
		}
		return pg.Code == "55P03" // lock not available
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || pgconn.Timeout(err) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// leave runs r alone until it has applied past where it left and reached the
// group, then brings it back (rejoin).
func (g *Group) leave(ctx context.Context, r *Runner) {
	delete(g.in, r)
	delete(g.strikes, r)
	r.setHurry(make(chan struct{}, 1))
	left := r.Position()
	lone, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	g.lone.Add(2)
	go func() { defer g.lone.Done(); defer close(done); g.alone(lone, r) }()
	go func() {
		defer g.lone.Done()
		defer stop()
		for {
			target := max(g.pos.Load(), left+1)
			if err := r.WaitFor(lone, target); err != nil {
				return // ctx ended
			}
			if r.Position() >= g.pos.Load() {
				break
			}
		}
		stop()
		<-done
		select {
		case g.rejoin <- r:
		case <-ctx.Done():
		}
	}()
}

func (g *Group) serve(ctx context.Context) error {
	members := g.members()
	if len(members) == 0 {
		select { // every member runs alone
		case r := <-g.rejoin:
			g.rejoin <- r // for restarted
			return errRejoin
		case <-ctx.Done():
			return nil
		}
	}
	for _, r := range members {
		pos, err := r.loadCheckpoint(ctx)
		if err != nil {
			return err
		}
		r.loadedAt(pos)
	}
	// next is the next batch, read while the last one's transaction ran;
	// they share one context, this serve's (Runner.serve says why).
	aheadCtx, stopAhead := context.WithCancel(ctx)
	defer stopAhead()
	var next *ahead[groupBatch, *groupBatch]
	defer func() { next.cancel() }()
	for {
		if len(g.rejoin) > 0 { // restarted takes it back in
			return errRejoin
		}
		from, lead := members[0].Position(), members[0].Position()
		for _, r := range members[1:] {
			from, lead = min(from, r.Position()), max(lead, r.Position())
		}
		if lead-from > g.lagMax {
			// Where the group goes on from: a member that left rejoins once
			// it is there (a stale position let it back at once, still behind).
			rest := lead
			for _, r := range members {
				if p := r.Position(); lead-p <= g.lagMax {
					rest = min(rest, p)
				}
			}
			g.pos.Store(rest)
			for _, r := range members {
				if lead-r.Position() > g.lagMax {
					g.logger.Info("projection catches up alone: it is behind its group", "projection", r.proj.Name(),
						"position", r.Position(), "group", lead)
					g.leave(ctx, r)
				}
			}
			return errRejoin // start again without them
		}
		g.pos.Store(from)
		b, err := g.batchAt(ctx, members, from, next)
		next = nil
		if err != nil {
			return err
		}
		// A member at from whose batch was not folded ahead folds it now
		// (stager). After a batch of half the maximum or more
		// (aheadFromDefault), the next batch is read, checked, decoded, and
		// folded for the members that folded this one, while this one's
		// transaction runs.
		last := &b.recs[len(b.recs)-1]
		var folded []*Runner
		for _, r := range members {
			if !b.tried[r] && r.Position() == from {
				if err := g.stage(ctx, &b, r); err != nil {
					b.discard()
					return err
				}
			}
			if b.staged[r] != nil {
				folded = append(folded, r)
			}
		}
		if len(b.recs) >= g.aheadFrom {
			next = startAhead[groupBatch](aheadCtx, stopAhead, last.Position, func(ctx context.Context) (groupBatch, error) {
				return g.fetch(ctx, members, members[0], last.Position, last.Hash, true, folded)
			})
		}
		locked, err := g.apply(ctx, members, from, b)
		if err != nil {
			return err
		}
		clear(g.strikes)
		if len(locked) > 0 {
			// The batch read ahead may be folding for a member about to
			// run alone: let go of it first.
			next.cancel()
			next = nil
			for _, r := range locked {
				g.logger.Info("projection runs alone: another transaction holds its checkpoint (a rebuild's swap?)",
					"projection", r.proj.Name(), "position", r.Position())
				g.leave(ctx, r)
			}
			return errRejoin // start again without them
		}
	}
}

// groupBatch is a batch of the group: its records, checked against the
// chain, their events decoded when a member takes them, and the members'
// folds done before the transaction (stager).
type groupBatch struct {
	recs   []eventstore.Record
	events []domain.Event
	staged map[*Runner]staged
	// tried are the members whose fold was tried (staged has none for a
	// member whose projector needs the database first).
	tried map[*Runner]bool
}

// stage folds b for r, a member at the batch's start, if its projector
// stages batches and can (stager).
func (g *Group) stage(ctx context.Context, b *groupBatch, r *Runner) error {
	st, ok := r.proj.(stager)
	if !ok {
		return nil
	}
	if b.tried == nil {
		b.tried, b.staged = map[*Runner]bool{}, map[*Runner]staged{}
	}
	b.tried[r] = true
	s, err := st.stage(r.ledger, b.recs, b.events)
	if err != nil {
		return g.refusal(ctx, r, b.recs[0].Position-1, b.recs, err)
	}
	if s != nil {
		b.staged[r] = s
	}
	return nil
}

// refusal is member r's failure err to decode or fold recs (after from)
// before their transaction: a broken chain when they are not the log's
// (Runner.refusal), which restarted finds through the memberError and
// takes as every member's.
func (g *Group) refusal(ctx context.Context, r *Runner, from uint64, recs []eventstore.Record, err error) error {
	return &memberError{r: r, err: refusal(ctx, g.pool, r.logLedger, r.proj.Name(), from, recs, err)}
}

// discard lets go of the folds not written.
func (b *groupBatch) discard() {
	for r, s := range b.staged {
		s.discard()
		delete(b.staged, r)
	}
}

// batchAt returns the batch after from: ahead's, or read now.
func (g *Group) batchAt(ctx context.Context, members []*Runner, from uint64, next *ahead[groupBatch, *groupBatch]) (groupBatch, error) {
	if next == nil {
		at := members[slices.IndexFunc(members, func(r *Runner) bool { return r.Position() == from })]
		return g.fetch(ctx, members, at, from, at.hash, at.hashKnown, nil)
	}
	if next.from != from {
		// Every member applies each batch to its end, or the group
		// starts again: the next batch starts where the last one ended.
		next.cancel()
		return groupBatch{}, fmt.Errorf("projections: the batch read ahead follows %d, the group is at %d", next.from, from)
	}
	return next.wait()
}

// fetch reads the batch after from, whose event has the hash prev (known:
// checked), has lead (a member at from) check it against the chain,
// decodes its events when a member takes them, and folds it for the
// members fold lists, which are at from.
func (g *Group) fetch(ctx context.Context, members []*Runner, lead *Runner, from uint64, prev eventstore.Hash, known bool,
	fold []*Runner) (groupBatch, error) {
	recs, err := g.src.Next(ctx, from+1, BatchMaxDefault)
	if err != nil {
		return groupBatch{}, err
	}
	b := groupBatch{recs: linger(ctx, g.src, g.hurry, g.lingerFor, BatchMaxDefault, recs)}
	if err := ctx.Err(); err != nil {
		return groupBatch{}, err // stopped while lingering: nothing to decode for
	}
	// The lead checks every record's hash and link from from on; each
	// member checks, in apply, that the record at its checkpoint is the
	// one it applied last.
	if err := lead.checkFrom(from, b.recs, prev, known); err != nil {
		return groupBatch{}, err
	}
	// The batch's events are decoded once for the members that take them
	// (eventsApplier), not once by each.
	if i := slices.IndexFunc(members, func(r *Runner) bool { _, ok := r.proj.(eventsApplier); return ok }); i >= 0 {
		if b.events, err = decodeEvents(b.recs); err != nil {
			// As the first member to decode them would have failed.
			return groupBatch{}, g.refusal(ctx, members[i], from, b.recs, err)
		}
	}
	for _, r := range fold {
		if err := g.stage(ctx, &b, r); err != nil {
			b.discard()
			return groupBatch{}, err
		}
	}
	return b, nil
}

// apply applies b, which starts right after from (the position of the
// members furthest behind), to every member in one transaction but those
// whose checkpoint another transaction holds, which it returns. A member's
// fold done ahead and not written is let go of.
func (g *Group) apply(ctx context.Context, members []*Runner, from uint64, b groupBatch) ([]*Runner, error) {
	defer b.discard()
	recs := b.recs
	last := recs[len(recs)-1].Position
	for _, r := range members {
		p := r.Position()
		switch {
		case p == from && r.hashKnown && recs[0].PrevHash != r.hash,
			p > from && p <= last && r.hashKnown && recs[p-from-1].Hash != r.hash:
			return nil, fmt.Errorf("%s at %d: the record there is not the one applied: %w", r.proj.Name(), p, ErrChainBroken)
		}
	}
	var applied, held []*Runner
	err := pgx.BeginTxFunc(ctx, g.pool, applyTx, func(tx pgx.Tx) error {
		applied, held = applied[:0], held[:0]
		locked, err := g.lock(ctx, tx, members)
		if err != nil {
			return err
		}
		for _, r := range members {
			p := r.Position()
			switch {
			case !locked[r.proj.Name()]:
				held = append(held, r)
			case p < last:
				var evs []domain.Event
				if b.events != nil {
					evs = b.events[p-from:]
				}
				// A fold done ahead is only for a member at from (one
				// elsewhere, were there one, is let go of with the rest).
				var s staged
				if p == from {
					s = b.staged[r]
				}
				if err := r.applyIn(ctx, tx, p, recs[p-from:], evs, s); err != nil {
					return &memberError{r: r, err: err}
				}
				applied = append(applied, r)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err // every fold let go of, written or not
	}
	for _, r := range applied {
		delete(b.staged, r) // committed: its cache stays
		r.hash, r.hashKnown = recs[len(recs)-1].Hash, true
		r.committedAt(last)
	}
	return held, nil
}

// lock locks the members' checkpoints, skipping those another transaction
// holds: a rebuild's swap holds one for as long as it rewrites the read
// model, and that member leaves to wait for it alone instead of stalling the
// others.
func (g *Group) lock(ctx context.Context, tx pgx.Tx, members []*Runner) (map[string]bool, error) {
	names := make([]string, len(members))
	for i, r := range members {
		names[i] = r.proj.Name()
	}
	rows, err := tx.Query(ctx, `SELECT projection FROM projection_checkpoints
		WHERE ledger = $1 AND projection = ANY($2) FOR UPDATE SKIP LOCKED`, g.ledger, names)
	if err != nil {
		return nil, fmt.Errorf("lock the checkpoints of %v: %w", names, err)
	}
	locked := map[string]bool{}
	var name string
	if _, err := pgx.ForEachRow(rows, []any{&name}, func() error { locked[name] = true; return nil }); err != nil {
		return nil, fmt.Errorf("lock the checkpoints of %v: %w", names, err)
	}
	return locked, nil
}
