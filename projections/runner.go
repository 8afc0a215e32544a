// Package projections builds the read models from the log: each projector
// applies a batch of records and moves its checkpoint in one transaction.
package projections

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/tracing"
	"github.com/ledgerd/ledger/supervise"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate applies the read models' schema migrations. Account ids are
// COLLATE "C" in every read model (0018_account_collation.sql), so the
// database's own locale does not matter.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return eventstore.ApplyMigrations(ctx, pool, "projections", migrations, "migrations")
}

// Pending returns the read models' migrations not applied yet.
//
// Errors: a database error, wrapped.
func Pending(ctx context.Context, pool *pgxpool.Pool) ([]string, error) {
	return eventstore.PendingMigrations(ctx, pool, "projections", migrations, "migrations")
}

// Projector turns records into a read model.
type Projector interface {
	// Name and Version identify the projector's checkpoint and tables.
	Name() string
	Version() int
	// Tables lists the tables the projector writes that have a ledger
	// column; each holds nothing else but this projector's rows (a rebuild
	// swaps them). A table keyed otherwise is the projector's to drop
	// (rowDropper).
	Tables() []string
	// Apply applies recs, gapless and in order, within tx.
	Apply(ctx context.Context, tx pgx.Tx, ledger string, recs []eventstore.Record) error
}

// Source yields a ledger's records from a position on.
type Source interface {
	// Next returns 1..max records starting exactly at from, waiting for one.
	Next(ctx context.Context, from uint64, max int) ([]eventstore.Record, error)
}

// Limits of a runner.
const (
	// BatchMaxDefault is the most records applied in one transaction.
	BatchMaxDefault = 8192
	// aheadFromDefault is the batch size from which a runner or group
	// reads, and folds, its next batch while the last one's transaction
	// runs: after a batch of half the maximum or more, a projection
	// catching up or a rebuild. One that keeps up applies what arrived
	// during its last transaction instead: folded ahead, its batches were
	// smaller, and a load in batches of 1,000 cost 5-10 % more CPU a
	// transfer for a statement lines' lag a few times smaller
	// (docs/perf.md, "Session 25").
	aheadFromDefault = BatchMaxDefault / 2
	// LingerDefault is how long ledgerd's runners, having received a small
	// batch, wait for more before applying it: a light, steady stream then
	// costs a few transactions a second per projection instead of one per
	// commit, for some milliseconds of lag. A query waiting for a position
	// (min_position) cuts it short. 20 ms, not 5: with 64 single-transfer
	// clients on the 2-core box, 15-25 % more transfers a second for the CPU
	// the projections' transactions no longer take (docs/perf.md).
	LingerDefault = 20 * time.Millisecond
	// lingerBelow is the batch size under which a runner lingers.
	lingerBelow = 512
	// retryDelayMin and retryDelayMax bound the back-off after a failed
	// run (supervise.Policy).
	retryDelayMin = 20 * time.Millisecond
	retryDelayMax = 5 * time.Second
	// healthyRun is how long a run must last for the back-off to start over.
	healthyRun = 10 * time.Second
	// faultQuietFor is how long a runner stopped on a broken chain waits,
	// once restarted, for the source to offer anything past its checkpoint:
	// a source that offers nothing in that time offers nothing wrong either
	// (the stream was repaired), and the fault is cleared.
	faultQuietFor = 2 * time.Second
	// faultWriteTimeout bounds recording or clearing a fault.
	faultWriteTimeout = 5 * time.Second
	// FaultMax bounds the text of a fault kept in the checkpoint.
	FaultMax = 1024
)

// ErrCheckpointMoved means another runner applied the same projection: this
// one's batch was rolled back and it reloads the checkpoint.
var ErrCheckpointMoved = errors.New("checkpoint moved under the runner")

// ErrChainBroken means a record does not continue the hash chain: its hash
// does not match its content, its prev_hash is not the hash of the event
// before it (the checkpoint's, for a batch's first), it names another
// ledger, or it is not the log's event at its position. The runner applies
// nothing past the last good event, says so (log, the checkpoint's fault),
// and retries with back-off (a repaired stream or log lets it go on).
var ErrChainBroken = errors.New("the hash chain is broken")

// Runner feeds one ledger's records to one projector.
type Runner struct {
	pool   *pgxpool.Pool
	ledger string
	// logLedger is the ledger whose log the records must be: ledger, or
	// what precedes "~" in a key of other rows (a rebuild's shadow,
	// ShadowSuffix): no ledger name holds a "~".
	logLedger string
	proj      Projector
	src       Source
	logger    *slog.Logger
	batchMax  int

	// lingerFor, when positive, lets a small batch wait for more (WithLinger).
	lingerFor time.Duration
	// aheadFrom is the batch size from which the next batch is read (and
	// folded) while the last one's transaction runs (aheadFromDefault).
	aheadFrom int
	// tracer, when set, traces each batch applied (WithTracer).
	tracer trace.Tracer

	// hash is the hash of the event at the checkpoint, when known (hashKnown):
	// the next batch's first record must name it as its prev_hash.
	hash      eventstore.Hash
	hashKnown bool

	// fault is the reason this runner last stopped on a broken chain, ""
	// when it is not stopped: the serving goroutine and OnRestart use it,
	// one after the other (supervise.Run).
	fault string

	mu       sync.Mutex
	position uint64
	changed  chan struct{} // closed and replaced when position moves
	// hurry wakes a lingering batch: someone waits (WaitFor) for a position
	// the runner has not applied, so the batch is applied at once.
	hurry chan struct{}
}

// NewRunner returns a runner; call Run.
func NewRunner(pool *pgxpool.Pool, ledger string, proj Projector, src Source, logger *slog.Logger) *Runner {
	if logger == nil {
		logger = slog.Default()
	}
	return &Runner{pool: pool, ledger: ledger, logLedger: logLedgerOf(ledger), proj: proj, src: src,
		batchMax: BatchMaxDefault, aheadFrom: aheadFromDefault, changed: make(chan struct{}), hurry: make(chan struct{}, 1),
		logger: logger.With("ledger", ledger, "projection", proj.Name())}
}

// logLedgerOf is the ledger whose log the runner under key applies.
func logLedgerOf(key string) string {
	ledger, _, _ := strings.Cut(key, "~")
	return ledger
}

// WithTracer makes r trace each batch it applies (span ledger.project, with
// the ledger, the projection and the positions, which tie it to the
// writer's and the relay's spans); it returns r.
func (r *Runner) WithTracer(t trace.Tracer) *Runner {
	r.tracer = t
	return r
}

// WithLinger makes r wait up to d for more records after receiving fewer than
// a few hundred, before applying them. It returns r.
func (r *Runner) WithLinger(d time.Duration) *Runner {
	r.lingerFor = d
	return r
}

// Position is the checkpoint this runner last committed or loaded.
func (r *Runner) Position() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.position
}

// WaitFor blocks until the runner has committed position pos or ctx ends.
//
// Errors: ctx's error.
func (r *Runner) WaitFor(ctx context.Context, pos uint64) error {
	for {
		r.mu.Lock()
		at, changed, hurry := r.position, r.changed, r.hurry
		r.mu.Unlock()
		if at >= pos {
			return nil
		}
		select {
		case hurry <- struct{}{}:
		default: // already hurried
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// setHurry replaces the channel WaitFor hurries the runner's batches on:
// its group's while it is in one.
func (r *Runner) setHurry(c chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hurry = c
}

// WithSource gives r its source: a runner made for a Group has none until it
// leaves it. It returns r.
func (r *Runner) WithSource(src Source) *Runner {
	r.src = src
	return r
}

// loadedAt sets the position to the checkpoint read, pos.
func (r *Runner) loadedAt(pos uint64) {
	if c, ok := r.proj.(committer); ok {
		c.loaded(r.ledger, pos)
	}
	r.setPosition(pos)
}

// committedAt moves the position to last, whose transaction committed,
// telling a projector that keeps what it committed first: a query woken at
// last finds it there.
func (r *Runner) committedAt(last uint64) {
	if c, ok := r.proj.(committer); ok {
		c.committed(r.ledger, last)
	}
	r.setPosition(last)
}

// ServedBalances returns the balances of accounts, in order, as the runner's
// last committed batch left them, and the position it moved the checkpoint
// to, when its projector serves balances from memory (Movements) and holds
// every one of accounts; else ok is false, and the read model has them.
func (r *Runner) ServedBalances(accounts []string) (balances []ServedBalance, position uint64, ok bool) {
	s, ok := r.proj.(balanceServer)
	if !ok {
		return nil, 0, false
	}
	return s.servedBalances(r.ledger, accounts)
}

// OfferBalances gives the runner's projector, when it serves balances from
// memory, balances read from the read model at position, from its lines
// numbered ledgerNo (movement_ledgers): it keeps them if what it serves is at
// that position under that number.
func (r *Runner) OfferBalances(position uint64, ledgerNo int32, balances []ServedBalance) {
	if s, ok := r.proj.(balanceServer); ok {
		s.offer(r.ledger, position, ledgerNo, balances)
	}
}

func (r *Runner) setPosition(pos uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.position = pos
	close(r.changed)
	r.changed = make(chan struct{})
}

// Run applies records until ctx ends, retrying with back-off after errors.
func (r *Runner) Run(ctx context.Context) error {
	supervise.Run(ctx, supervise.Policy{Initial: retryDelayMin, Max: retryDelayMax, Healthy: healthyRun,
		OnRestart: func(err error, delay time.Duration) {
			if errors.Is(err, ErrChainBroken) {
				r.stopped(ctx, err, delay)
				return
			}
			r.logger.Warn("projection interrupted; resuming from its checkpoint", "err", err, "retry_in", delay)
		}}, r.serve)
	return nil
}

// stopped records that the runner refused an event: in its checkpoint's
// fault (projection status, /readyz and the metrics read it there, from any
// process), and in the log, at ERROR when the reason is new (the same
// refusal after each back-off is logged at DEBUG).
func (r *Runner) stopped(ctx context.Context, err error, delay time.Duration) {
	reason := err.Error()
	if len(reason) > FaultMax {
		reason = reason[:FaultMax]
	}
	log := r.logger.Error
	if reason == r.fault {
		log = r.logger.Debug
	}
	log("projection stopped: an event does not continue the hash chain or is not the log's; nothing past the checkpoint is applied",
		"err", err, "position", r.Position(), "retry_in", delay)
	r.fault = reason
	ctx, cancel := context.WithTimeout(ctx, faultWriteTimeout)
	defer cancel()
	if _, werr := r.pool.Exec(ctx, `UPDATE projection_checkpoints SET fault = $3, fault_at = coalesce(fault_at, now())
		WHERE ledger = $1 AND projection = $2`, r.ledger, r.proj.Name(), reason); werr != nil {
		r.logger.Warn("projection fault not recorded", "err", werr)
	}
}

// clearFault clears the checkpoint's fault: the source offered nothing
// wrong for faultQuietFor.
//
// Errors: the database's.
func (r *Runner) clearFault(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, faultWriteTimeout)
	defer cancel()
	if _, err := r.pool.Exec(ctx, `UPDATE projection_checkpoints SET fault = NULL, fault_at = NULL
		WHERE ledger = $1 AND projection = $2`, r.ledger, r.proj.Name()); err != nil {
		return fmt.Errorf("clear the fault of %s: %w", r.proj.Name(), err)
	}
	r.logger.Info("projection resumed: the source offers nothing that breaks the chain")
	r.fault = ""
	return nil
}

// next returns the source's next records from `from`. A runner that stopped
// on a broken chain waits faultQuietFor first: a source with nothing to
// offer was repaired, and the fault is cleared.
func (r *Runner) next(ctx context.Context, from uint64) ([]eventstore.Record, error) {
	if r.fault == "" {
		return r.src.Next(ctx, from, r.batchMax)
	}
	quiet, cancel := context.WithTimeout(ctx, faultQuietFor)
	recs, err := r.src.Next(quiet, from, r.batchMax)
	expired := quiet.Err() != nil
	cancel()
	if err == nil || !expired || ctx.Err() != nil {
		return recs, err
	}
	if err := r.clearFault(ctx); err != nil {
		return nil, err
	}
	return r.src.Next(ctx, from, r.batchMax)
}

func (r *Runner) serve(ctx context.Context) error {
	pos, err := r.loadCheckpoint(ctx)
	if err != nil {
		return err
	}
	r.loadedAt(pos)
	// The batches read ahead share one context, this serve's: a source
	// that reads ahead itself (AheadSource) goes on reading past the batch
	// it returned, under the context it was asked with.
	aheadCtx, stopAhead := context.WithCancel(ctx)
	defer stopAhead()
	b, err := r.fetch(ctx, pos, r.hash, r.hashKnown, false)
	var next *ahead[batch, *batch]
	defer func() { next.cancel() }()
	for {
		if err != nil {
			return err
		}
		if !b.tried {
			if err := r.stage(ctx, pos, &b); err != nil {
				return err
			}
		}
		last := &b.recs[len(b.recs)-1]
		// After a batch of half the maximum or more (aheadFromDefault),
		// the next batch is read, checked and decoded while this one's
		// transaction runs, and folded too when this one was: its fold
		// continues from this one's in the projector's memory. A runner
		// that stopped on a fault reads on its own first (next clears it).
		next = nil
		if r.fault == "" && len(b.recs) >= r.aheadFrom {
			folded := b.staged != nil
			next = startAhead[batch](aheadCtx, stopAhead, last.Position, func(ctx context.Context) (batch, error) {
				return r.fetch(ctx, last.Position, last.Hash, true, folded)
			})
		}
		began := time.Now()
		if err := r.apply(ctx, pos, b); err != nil {
			b.discard()
			return err // the deferred cancel lets go of the next
		}
		r.logger.Debug("applied", "from", pos+1, "records", len(b.recs), "took", time.Since(began))
		pos = last.Position
		r.hash, r.hashKnown = last.Hash, true
		// Written only when set: the fetch ahead reads it (next), and a
		// fault is never set while one runs.
		if r.fault != "" {
			r.fault = ""
		}
		r.committedAt(pos)
		if next == nil {
			b, err = r.fetch(ctx, pos, r.hash, r.hashKnown, false)
		} else {
			b, err = next.wait()
			next = nil
		}
	}
}

// linger adds to a small batch what arrives within r.lingerFor, unless
// someone waits for the runner to reach a position (WaitFor: a query with a
// min_position), who is not kept waiting for it.
func (r *Runner) linger(ctx context.Context, recs []eventstore.Record) []eventstore.Record {
	r.mu.Lock()
	hurry := r.hurry
	r.mu.Unlock()
	return linger(ctx, r.src, hurry, r.lingerFor, r.batchMax, recs)
}

// linger adds to recs what src offers within lingerFor, up to lingerBelow
// records (of at most batchMax), or until hurry.
func linger(ctx context.Context, src Source, hurry chan struct{}, lingerFor time.Duration, batchMax int,
	recs []eventstore.Record) []eventstore.Record {
	if lingerFor <= 0 || len(recs) >= lingerBelow {
		return recs
	}
	select {
	case <-hurry:
		return recs
	default:
	}
	wait, cancel := context.WithTimeout(ctx, lingerFor)
	defer cancel()
	go func() {
		select {
		case <-hurry:
			cancel()
		case <-wait.Done():
		}
	}()
	for len(recs) < lingerBelow {
		more, err := src.Next(wait, recs[len(recs)-1].Position+1, batchMax-len(recs))
		if err != nil {
			break // the wait is over (or the source failed: the next Next says so)
		}
		recs = append(recs, more...)
	}
	return recs
}

func (r *Runner) loadCheckpoint(ctx context.Context) (uint64, error) {
	if _, err := r.pool.Exec(ctx, `INSERT INTO projection_checkpoints (ledger, projection, version, position)
		VALUES ($1, $2, $3, 0) ON CONFLICT DO NOTHING`, r.ledger, r.proj.Name(), r.proj.Version()); err != nil {
		return 0, fmt.Errorf("checkpoint of %s: %w", r.proj.Name(), err)
	}
	var (
		pos  int64
		hash []byte
	)
	if err := r.pool.QueryRow(ctx, `SELECT position, hash FROM projection_checkpoints WHERE ledger = $1 AND projection = $2`,
		r.ledger, r.proj.Name()).Scan(&pos, &hash); err != nil {
		return 0, fmt.Errorf("checkpoint of %s: %w", r.proj.Name(), err)
	}
	r.hash, r.hashKnown = eventstore.Hash{}, false
	switch {
	case len(hash) == eventstore.HashSize:
		r.hash, r.hashKnown = eventstore.Hash(hash), true
	case pos == 0:
		r.hashKnown = true // the first event's prev_hash is all zeros
	default:
		// A checkpoint written before checkpoints kept a hash: the first
		// batch's link is taken on trust, once; its hash is kept from then.
		r.logger.Info("checkpoint without a hash: its link to the next batch is not checked, once", "position", pos)
	}
	return uint64(pos), nil
}

// verifyChain checks that recs continue the chain from prev (when known):
// each hash matches its record's content, and each prev_hash is the hash
// before.
//
// Errors: ErrChainBroken, naming the position and what is wrong.
func (r *Runner) verifyChain(recs []eventstore.Record, prev eventstore.Hash, known bool) error {
	return verifyChain(r.proj.Name(), r.logLedger, recs, prev, known)
}

// verifyChain checks that recs, ledger's, continue the chain from prev (when
// known), for the projection named name.
//
// Errors: ErrChainBroken, naming the position and what is wrong.
func verifyChain(name, ledger string, recs []eventstore.Record, prev eventstore.Hash, known bool) error {
	for i := range recs {
		rec := &recs[i]
		if rec.Ledger != ledger {
			return fmt.Errorf("%s at %d: the event is %q's: %w", name, rec.Position, rec.Ledger, ErrChainBroken)
		}
		if known && rec.PrevHash != prev {
			return fmt.Errorf("%s at %d: prev_hash %x does not continue %x: %w", name, rec.Position,
				rec.PrevHash[:8], prev[:8], ErrChainBroken)
		}
		if !rec.VerifyHash() {
			return fmt.Errorf("%s at %d: the hash does not match the event: %w", name, rec.Position, ErrChainBroken)
		}
		prev, known = rec.Hash, true
	}
	return nil
}

// apply applies b, checked and starting right after from, and moves the
// checkpoint from `from` to its last record in the same transaction.
func (r *Runner) apply(ctx context.Context, from uint64, b batch) error {
	// A read model is derived data: a crash that loses this commit loses the
	// checkpoint's move with it, and the batch is applied again. So it need
	// not wait for its WAL flush, which the writer's commits need. Said in
	// the BEGIN's round trip (a statement of its own cost one more).
	return pgx.BeginTxFunc(ctx, r.pool, applyTx, func(tx pgx.Tx) error {
		return r.applyIn(ctx, tx, from, b.recs, b.events, b.staged)
	})
}

// applyTx begins a projection's transaction.
var applyTx = pgx.TxOptions{BeginQuery: `BEGIN; SET LOCAL synchronous_commit = off`}

// checkFrom checks that recs follow from without a gap and continue the
// chain from prev, the hash of the event at from (when known).
func (r *Runner) checkFrom(from uint64, recs []eventstore.Record, prev eventstore.Hash, known bool) error {
	if len(recs) == 0 {
		return fmt.Errorf("apply %s at %d: the source returned no records", r.proj.Name(), from)
	}
	for i := range recs {
		if recs[i].Position != from+uint64(i)+1 {
			return fmt.Errorf("apply %s: record %d after %d: a gap or a repeat", r.proj.Name(), recs[i].Position, from+uint64(i))
		}
	}
	return r.verifyChain(recs, prev, known)
}

// applyIn applies recs (checked) in tx and moves the checkpoint from `from`
// to the last of them.
//
// events, when not nil, are recs' events decoded (by a group, once for its
// members, or by fetch): a projector that takes them (eventsApplier) does
// not decode recs again. staged, when not nil, is recs folded already
// (stager): only its write is left.
func (r *Runner) applyIn(ctx context.Context, tx pgx.Tx, from uint64, recs []eventstore.Record, events []domain.Event,
	staged staged) (err error) {
	last := &recs[len(recs)-1]
	if r.tracer != nil {
		var span trace.Span
		ctx, span = r.tracer.Start(ctx, "ledger.project", trace.WithAttributes(attribute.String("ledger.name", r.ledger),
			attribute.String("ledger.projection", r.proj.Name()), attribute.Int64("ledger.position.first", int64(recs[0].Position)),
			attribute.Int64("ledger.position.last", int64(last.Position)), attribute.Int("ledger.events", len(recs))))
		defer func() { tracing.End(span, err) }()
	}
	// The batch is chained (verifyChain); its last event being the
	// log's makes it the log's, whole: a stream ahead of the log (a
	// restored database) or forged on it is refused here, in the same
	// statement as the checkpoint's move.
	tag, err := tx.Exec(ctx, `UPDATE projection_checkpoints SET position = $4, event_at = $5, hash = $6,
			fault = NULL, fault_at = NULL, updated_at = now()
		WHERE ledger = $1 AND projection = $2 AND position = $3
			AND EXISTS (SELECT 1 FROM events WHERE ledger = $7 AND position = $4 AND hash = $6)`,
		r.ledger, r.proj.Name(), int64(from), int64(last.Position), last.RecordedAt, last.Hash[:], r.logLedger)
	if err != nil {
		return fmt.Errorf("apply %s at %d: %w", r.proj.Name(), from, err)
	}
	if tag.RowsAffected() != 1 {
		return r.notApplied(ctx, tx, from, last)
	}
	if ea, ok := r.proj.(eventsApplier); staged != nil {
		err = staged.write(ctx, tx, r.ledger)
	} else if ok && events != nil {
		err = ea.applyEvents(ctx, tx, r.ledger, recs, events)
	} else {
		err = r.proj.Apply(ctx, tx, r.ledger, recs)
	}
	if err != nil {
		return fmt.Errorf("apply %s at %d: %w", r.proj.Name(), from, err)
	}
	return nil
}

// notApplied says why the checkpoint did not move from `from` to last: the
// log has another event at last's position (or none yet), or another
// runner moved the checkpoint.
//
// Errors: ErrChainBroken; ErrCheckpointMoved; the database's.
func (r *Runner) notApplied(ctx context.Context, tx pgx.Tx, from uint64, last *eventstore.Record) error {
	inLog, err := isLogs(ctx, tx, r.logLedger, last)
	if err != nil {
		return fmt.Errorf("apply %s at %d: %w", r.proj.Name(), from, err)
	}
	if !inLog {
		return notLogs(r.proj.Name(), last)
	}
	return fmt.Errorf("apply %s at %d: %w", r.proj.Name(), from, ErrCheckpointMoved)
}
