// Package commands is the write side: one writer per ledger, which decides
// commands against the ledger's state in memory and appends them in batches,
// one transaction per batch, replying only after the commit.
package commands

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/tracing"
	"github.com/ledgerd/ledger/supervise"
)

// Store is what a writer needs of the event log.
type Store interface {
	Head(ctx context.Context, ledger string) (uint64, eventstore.Hash, error)
	Read(ctx context.Context, ledger string, from uint64, limit int) ([]eventstore.Record, error)
	Append(ctx context.Context, ledger string, expected uint64, prev eventstore.Hash, recs []eventstore.Record) error
	ReadPositions(ctx context.Context, ledger string, positions []uint64) ([]eventstore.Record, error)
}

// Limits and defaults of a writer.
const (
	// ItemsPerRequestMax is the most commands one Submit takes.
	ItemsPerRequestMax = 8192
	// BatchMaxDefault is the most commands decided into one append.
	BatchMaxDefault = 16384
	// QueueMaxDefault is the most requests waiting for the writer.
	QueueMaxDefault = 4096
	// appendTimeout bounds one append, so a hung database fails a batch instead
	// of holding the writer forever.
	appendTimeout = 30 * time.Second
	// restartDelayMin and restartDelayMax bound the back-off between reloads
	// after a failure (supervise.Policy).
	restartDelayMin = 10 * time.Millisecond
	restartDelayMax = 5 * time.Second
	// healthyRun is how long a life must last for the back-off to start over.
	healthyRun = 10 * time.Second
)

var (
	// ErrClosed means the writer is shutting down; the request was not applied.
	ErrClosed error = domain.NewError(domain.KindUnavailable, "writer closed", "")
	// ErrUnavailable means the batch could not be committed, or its outcome is
	// unknown. Retrying with the same ids is safe: idempotency answers EXISTS
	// for what did commit.
	ErrUnavailable error = domain.NewError(domain.KindUnavailable, "ledger unavailable", "")
	// ErrTooManyItems means a request is over ItemsPerRequestMax.
	ErrTooManyItems error = domain.NewError(domain.KindInvalid, "too many items", "")
)

// Options configure a Writer.
type Options struct {
	Ledger string
	Store  Store
	// Clock gives the recorded time; time.Now when nil.
	Clock func() time.Time
	// OnCommit is called, on the committer's goroutine, after each commit with
	// the records committed, in position order. It must not block. The records
	// are never written again: the callee may keep them, read-only.
	OnCommit func(ledger string, recs []eventstore.Record)
	// OnAppend, for metrics, is called on the committer's goroutine after
	// each append with its size and how long it took, failed ones included
	// (err). It must not block.
	OnAppend func(ledger string, events int, took time.Duration, err error)
	// OnLease, for metrics, is told each change of the writer's state:
	// waiting for the lease, writing (holding it, or running without
	// leases), stopped. It must not block.
	OnLease func(ledger string, state WriterState)
	// Tracer, when set, traces each batch: a span for deciding it (linked
	// to the spans of the requests it serves, each of which gets a link
	// back) and a child span for appending it, both with the positions the
	// batch's events take.
	Tracer   trace.Tracer
	Logger   *slog.Logger
	BatchMax int
	QueueMax int
	// Policy is the ledger's rules (effective-time bounds); zero means
	// domain.DefaultPolicy.
	Policy domain.Policy
	// SnapshotEvery, when positive and Store is a SnapshotStore, makes the
	// writer start from its ledger's latest good snapshot and take one
	// whenever that many events have committed since; 0 disables both.
	SnapshotEvery int
	// SnapshotSpoolDir is where a snapshot waits, in an unlinked temporary
	// file, from its encoding until it is written ("": os.TempDir, which
	// TMPDIR sets). Where no file can be made there, it waits in memory.
	SnapshotSpoolDir string
	// failSpools makes every snapshot's spool fail its writes (tests).
	failSpools bool
	// Lease, when set, makes the writer write only while it holds the
	// ledger's lease: it waits for it (answering requests with ErrNotLeader
	// meanwhile), loads once it has it and stops writing when it is lost.
	Lease Leases

	// IdleAfter, when positive, lets the writer stop once it has had no
	// request for that long, has no hold with a timeout open (whose expiry it
	// must fire) and is asked nothing meanwhile: it releases its lease and
	// Run returns. A request that arrives after goes to Successor's writer.
	IdleAfter time.Duration
	// Retire, with IdleAfter, is asked before the writer stops idle; false
	// keeps it running. It must call w.TryRetire and, when that is true,
	// forget the writer, so that a new request starts a new one. Nil: the
	// writer just calls TryRetire.
	Retire func(w *Writer) bool
	// Successor gives the writer that serves a request arriving after this one
	// stopped idle.
	Successor func() (*Writer, error)

	// recentMax is how many recent transfers the writer keeps in memory; more
	// than the transfers of three batches (those in flight: one appending,
	// one queued, one being decided).
	recentMax int
	// beforeAppend, when set (by tests), is called by the committer before
	// each append, with the position the append expects.
	beforeAppend func(expected uint64)
	// eventPayloadMax bounds an event's payload (domain.EventPayloadMax
	// when 0; tests lower it to reach the refusal).
	eventPayloadMax int
}

// Result is the outcome of one command: Err is nil for CREATED, an
// *domain.ExistsError for EXISTS, ErrLinkedItemFailed in an atomic request
// another item of which failed, or another domain error.
type Result struct {
	Position uint64
	Err      error
	// Balances are the accounts the command moved, just after it, when asked.
	Balances []Balance
}

// Balance is an account's balances at a position.
type Balance struct {
	// Position is the position of the command that moved the account last.
	Position                                                   uint64
	Account, Asset                                             string
	Scale                                                      uint8
	Normal                                                     domain.Side
	DebitsPosted, CreditsPosted, DebitsPending, CreditsPending domain.Units
}

// SubmitOptions shape a request.
type SubmitOptions struct {
	// Atomic applies every command or none.
	Atomic bool
	// ReturnBalances returns, with each applied command, the balances of the
	// accounts it moved.
	ReturnBalances bool
}

// ErrLinkedItemFailed is the outcome of the other items of an atomic request
// in which one item failed: nothing of the request was applied.
var ErrLinkedItemFailed error = domain.NewOutcome("LINKED_ITEM_FAILED", "linked item failed")

// Writer owns one ledger's state. Submit queues commands; Run decides and
// appends them.
type Writer struct {
	opts   Options
	reqs   chan *request
	closed chan struct{}
	snap   *snapshotter

	// mu orders requests being queued against the writer stopping idle: once
	// retired, nothing more is queued (it goes to the successor), and the
	// writer retires only with none queued or being queued.
	mu      sync.Mutex
	sending int
	retired bool
}

// errRetired is what await answers once the writer stopped idle: the request
// was never queued, so sending it to the successor applies it once.
var errRetired = errors.New("writer stopped idle")

// successorsMax bounds how many successive writers one request follows: each
// new writer runs at least IdleAfter, so a second retirement is already rare.
const successorsMax = 3

// TryRetire marks the writer retired unless a request is queued or being
// queued: from then on, requests go to Options.Successor. For Options.Retire.
func (w *Writer) TryRetire() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.sending > 0 || len(w.reqs) > 0 {
		return false
	}
	w.retired = true
	return true
}

// next is the writer a request refused with errRetired goes to.
func (w *Writer) next(err error, hop int) (*Writer, error) {
	if !errors.Is(err, errRetired) {
		return nil, err
	}
	if w.opts.Successor == nil || hop >= successorsMax {
		return nil, ErrClosed
	}
	return w.opts.Successor()
}

type request struct {
	ctx  context.Context
	opts SubmitOptions
	// internal marks the writer's own request (expiries): nobody waits on it.
	internal bool
	// read, when set, makes this a read of the state instead of commands.
	read    func(*domain.State)
	cmds    []domain.Command
	index   []int // index[i] is cmds[i]'s slot in results
	results []Result
	err     error
	done    chan struct{}
}

func (r *request) finish(err error) {
	r.err = err
	close(r.done)
}

// NewWriter returns a writer for opts.Ledger; call Run to start it.
func NewWriter(opts Options) *Writer {
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	// A batch and the expiries decided before it must fit one append.
	if opts.BatchMax <= 0 || opts.BatchMax > eventstore.AppendMax-expiriesPerBatchMax {
		opts.BatchMax = BatchMaxDefault
	}
	if opts.QueueMax <= 0 {
		opts.QueueMax = QueueMaxDefault
	}
	if opts.Policy == (domain.Policy{}) {
		opts.Policy = domain.DefaultPolicy
	}
	if opts.eventPayloadMax <= 0 {
		opts.eventPayloadMax = domain.EventPayloadMax
	}
	if opts.recentMax <= 3*opts.BatchMax {
		opts.recentMax = max(recentMaxDefault, 3*opts.BatchMax+1)
	}
	opts.Logger = opts.Logger.With("ledger", opts.Ledger)
	return &Writer{opts: opts, reqs: make(chan *request, opts.QueueMax), closed: make(chan struct{}), snap: newSnapshotter(&opts)}
}

// Submit is SubmitWith with no options.
func (w *Writer) Submit(ctx context.Context, cmds []domain.Command) ([]Result, error) {
	return w.SubmitWith(ctx, cmds, SubmitOptions{})
}

// SubmitWith validates cmds on the caller's goroutine, queues the valid ones
// and waits until they are decided and, for those that produce events,
// committed. Results are in cmds' order.
//
// Errors: ErrTooManyItems; ErrClosed; ErrUnavailable (wrapping the cause) when
// the batch failed to commit; ctx's error when it ends first, in which case the
// commands may or may not have been applied.
func (w *Writer) SubmitWith(ctx context.Context, cmds []domain.Command, opts SubmitOptions) ([]Result, error) {
	if len(cmds) > ItemsPerRequestMax {
		return nil, fmt.Errorf("%d commands, at most %d: %w", len(cmds), ItemsPerRequestMax, ErrTooManyItems)
	}
	results := make([]Result, len(cmds))
	r := &request{ctx: ctx, opts: opts, results: results, done: make(chan struct{}), cmds: make([]domain.Command, 0, len(cmds))}
	invalid := false
	for i, c := range cmds {
		if _, internal := c.(*domain.ExpirePending); internal {
			results[i].Err = fmt.Errorf("expiry is the writer's own command: %w", domain.ErrInvalidField)
			invalid = true
			continue
		}
		if err := c.Validate(); err != nil {
			results[i].Err = err
			invalid = true
			continue
		}
		r.cmds = append(r.cmds, c)
		r.index = append(r.index, i)
	}
	if invalid && opts.Atomic {
		for i := range results {
			if results[i].Err == nil {
				results[i].Err = ErrLinkedItemFailed
			}
		}
		return results, nil
	}
	if len(r.cmds) == 0 {
		return results, nil
	}
	for hop, cur := 0, w; ; hop++ {
		err := cur.await(ctx, r)
		if err == nil {
			return results, nil
		}
		if cur, err = cur.next(err, hop); err != nil {
			return nil, err
		}
	}
}

// Read runs fn on the writer's goroutine with the ledger's state, between
// batches, and returns once every batch fn saw has committed: a linearizable
// read (consistency STRONG). fn must not keep s or block.
//
// Errors: ErrClosed; ErrUnavailable when a batch fn saw failed to commit (what
// fn observed must then be discarded); ctx's error.
func (w *Writer) Read(ctx context.Context, fn func(s *domain.State)) error {
	r := &request{ctx: ctx, read: fn, done: make(chan struct{})}
	for hop, cur := 0, w; ; hop++ {
		err := cur.await(ctx, r)
		if err == nil {
			return nil
		}
		if cur, err = cur.next(err, hop); err != nil {
			return err
		}
	}
}

// await queues r and waits for it to finish.
func (w *Writer) await(ctx context.Context, r *request) error {
	// Retired is checked first, and sending counted under the same lock: a
	// writer retires only with nothing being sent, so a closed writer seen
	// below ended with its context, not idle.
	w.mu.Lock()
	if w.retired {
		w.mu.Unlock()
		return errRetired
	}
	w.sending++
	w.mu.Unlock()
	defer func() { w.mu.Lock(); w.sending--; w.mu.Unlock() }()
	select {
	case <-w.closed:
		return ErrClosed
	default:
	}
	select {
	case w.reqs <- r:
	case <-w.closed:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-r.done:
	case <-w.closed:
		// Closed after the last commit: a request not done by now never will be.
		select {
		case <-r.done:
		default:
			return ErrClosed
		}
	case <-ctx.Done():
		return ctx.Err()
	}
	return r.err
}

// Run loads the ledger's state and serves requests until ctx ends, reloading
// from the log after any failed append. On return, queued requests are failed
// with ErrClosed; a batch being committed is committed first.
func (w *Writer) Run(ctx context.Context) error {
	defer w.drainClosed()
	w.snap.ctx = ctx // a snapshot being written ends with the writer
	defer w.snap.writes.Wait()
	supervise.Run(ctx, supervise.Policy{Initial: restartDelayMin, Max: restartDelayMax, Healthy: healthyRun,
		OnRestart: func(err error, delay time.Duration) {
			w.opts.Logger.Error("writer stopped; reloading from the log", "err", err, "retry_in", delay)
		}}, func(ctx context.Context) error {
		if err := w.serve(ctx); !errors.Is(err, errIdle) {
			return err
		}
		return nil // stopped idle: done
	})
	return nil
}

func (w *Writer) drainClosed() {
	close(w.closed)
	for {
		select {
		case r := <-w.reqs:
			r.finish(ErrClosed)
		default:
			return
		}
	}
}

// job is a decided batch on its way to the store.
type job struct {
	expected uint64
	prev     eventstore.Hash
	recs     []eventstore.Record
	reqs     []*request
	// snapshot, in a job of its own, is written once the jobs before it
	// have committed.
	snapshot *pendingSnapshot
	// span is the batch's decide span, the parent of its append span.
	span trace.SpanContext
}

// WriterState is what a writer is doing, as Options.OnLease is told.
type WriterState int

const (
	// WriterStopped: the writer is not running (idle, stopped, or between
	// two lives after a failure).
	WriterStopped WriterState = iota
	// WriterWaiting: the writer waits for the ledger's lease (another
	// process holds it, or PostgreSQL cannot be asked); requests are refused.
	WriterWaiting
	// WriterWriting: the writer holds the lease, or runs without leases.
	WriterWriting
)

func (w *Writer) tell(s WriterState) {
	if w.opts.OnLease != nil {
		w.opts.OnLease(w.opts.Ledger, s)
	}
}

// serve runs one life of the writer: load, then decide and pipeline batches to
// the committer until ctx ends or an append fails.
func (w *Writer) serve(ctx context.Context) error {
	w.tell(WriterWaiting)
	defer w.tell(WriterStopped)
	lease, err := w.acquire(ctx)
	if err != nil {
		return err // acquire released the lease, if it had it
	}
	w.tell(WriterWriting)
	if lease != nil {
		defer lease.Release() // after the committer is done (deferred below)
	}
	lost := leaseLost(lease)
	st, err := w.load(ctx)
	if err != nil {
		return err
	}
	jobs := make(chan *job, 1)
	failed := make(chan error, 1)
	done := make(chan struct{})
	go w.commit(w.appender(lease), jobs, failed, done)
	defer func() { close(jobs); <-done }()

	var carry *request
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	active := time.Now()
	for {
		select {
		case <-lost:
			// Another process may write the ledger by now: what is in flight
			// commits or is fenced; what is queued waits for the next lease.
			if carry != nil {
				carry.finish(errLeaseLost)
			}
			return errLeaseLost
		default:
		}
		first := carry
		carry = nil
		if first == nil {
			first = w.dueExpiries(st)
		}
		if first == nil {
			wait := time.Duration(math.MaxInt64)
			at, holds := st.domain.NextExpiry()
			if holds {
				wait = max(at.Sub(w.now(st)), time.Millisecond)
			}
			if w.opts.IdleAfter > 0 && !holds {
				wait = min(wait, max(w.opts.IdleAfter-time.Since(active), time.Millisecond))
			}
			timer.Reset(min(wait, expiryPollMax))
			select {
			case first = <-w.reqs:
				active = time.Now()
			case <-timer.C:
				// A hold with a timeout keeps the writer up: nobody else
				// would expire it.
				if !holds && w.idle(active) {
					return errIdle
				}
				continue
			case err := <-failed:
				return err
			case <-lost:
				return errLeaseLost
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		var reqs []*request
		reqs, carry = w.collect(first)
		if !first.internal {
			// Holds come due while the writer sleeps: expire them before
			// deciding anything that could see their amounts still held.
			if exp := w.dueExpiries(st); exp != nil {
				reqs = append([]*request{exp}, reqs...)
			}
		}
		// Even a batch with no events goes through the committer: its EXISTS
		// answers may point at a batch still being committed.
		j, err := w.decide(ctx, st, reqs)
		if err != nil {
			if carry != nil {
				carry.finish(err)
			}
			return err
		}
		if carry, err = w.handOver(ctx, st, j, carry, jobs, failed); err != nil {
			return err
		}
		if snap := w.snap.take(st); snap != nil {
			jobs <- &job{snapshot: snap} // the committer always takes it, even after a failure
		}
	}
}

// decide decides reqs into a job.
func (w *Writer) decide(ctx context.Context, st *ledgerState, reqs []*request) (*job, error) {
	span := w.startDecide(reqs)
	j, err := st.decide(ctx, w, reqs)
	w.endDecide(span, j, err)
	return j, err
}

// handOver gives j to the committer and returns the request left for the
// next batch, if any. While the committer is still appending the previous
// job, the requests that arrive are decided into j too, up to BatchMax
// commands: the next append carries every request that waited for it. (A
// job decided and queued meanwhile instead split the waiting requests into
// more, smaller appends, one at a time: with 64 single-transfer clients, 16
// events an append.)
func (w *Writer) handOver(ctx context.Context, st *ledgerState, j *job, carry *request, jobs chan<- *job,
	failed <-chan error) (*request, error) {
	cmds := 0
	for _, r := range j.reqs {
		cmds += len(r.cmds)
	}
	for {
		select {
		case jobs <- j: // a committer that is free takes it first
			return carry, nil
		default:
		}
		more := w.reqs
		room := w.opts.BatchMax - cmds
		// Each decision may add expiries; the append must stay within AppendMax.
		if carry != nil || room <= 0 || len(j.recs)+room+expiriesPerBatchMax > eventstore.AppendMax {
			more = nil
		}
		select {
		case jobs <- j:
			return carry, nil
		case err := <-failed:
			failJob(j, err)
			if carry != nil {
				jobs <- &job{reqs: []*request{carry}} // the committer fails it with the rest
			}
			return nil, err
		case first := <-more:
			var reqs []*request
			reqs, carry = w.collectUpTo(first, room)
			if len(reqs) > 0 && !first.internal {
				if exp := w.dueExpiries(st); exp != nil {
					reqs = append([]*request{exp}, reqs...)
				}
			}
			if len(reqs) == 0 {
				continue
			}
			next, err := w.decide(ctx, st, reqs)
			if err != nil {
				// The decision failed before it changed the state (and
				// answered its requests): j still goes to the committer.
				select {
				case jobs <- j:
				case ferr := <-failed:
					failJob(j, ferr)
				}
				if carry != nil {
					carry.finish(err)
				}
				return nil, err
			}
			if next.expected != j.expected+uint64(len(j.recs)) {
				panic(fmt.Sprintf("commands: a job decided at %d after one of %d records at %d", next.expected, len(j.recs), j.expected))
			}
			j.recs = append(j.recs, next.recs...)
			j.reqs = append(j.reqs, next.reqs...)
			for _, r := range reqs {
				cmds += len(r.cmds)
			}
		}
	}
}

// errIdle ends a writer that stopped idle (Options.IdleAfter).
var errIdle = errors.New("writer idle")

// idle reports whether the writer, last active at active, may stop now: it
// has been idle IdleAfter and the registry let it retire.
func (w *Writer) idle(active time.Time) bool {
	if w.opts.IdleAfter <= 0 || time.Since(active) < w.opts.IdleAfter {
		return false
	}
	retire := w.opts.Retire
	if retire == nil {
		retire = (*Writer).TryRetire
	}
	if !retire(w) {
		return false
	}
	w.opts.Logger.Debug("writer idle: stopping", "idle_after", w.opts.IdleAfter)
	return true
}

// expiryPollMax bounds how long the writer sleeps between checks for holds due
// to expire, so that a clock that jumps (or a hold due far off) is noticed.
const expiryPollMax = time.Second

// now is the time a batch is decided at: the clock, but never before the
// last recorded time (a clock stepped back, or a node taking over whose clock
// is behind). Holds come due on it too: a hold its decisions take as expired
// (PENDING_EXPIRED) must be expired, not left holding its amounts until the
// clock catches up.
func (w *Writer) now(st *ledgerState) time.Time {
	now := w.opts.Clock().UTC().Truncate(time.Microsecond)
	if now.Before(st.recordedAt) {
		return st.recordedAt
	}
	return now
}

// expiriesPerBatchMax bounds the expiries decided in one batch.
const expiriesPerBatchMax = 4096

// dueExpiries returns the writer's own request to expire the holds due now,
// or nil. Nobody waits for it; a hold resolved meanwhile is skipped
// (ErrNotDue).
func (w *Writer) dueExpiries(st *ledgerState) *request {
	due := st.domain.DueHolds(w.now(st), expiriesPerBatchMax)
	if len(due) == 0 {
		return nil
	}
	r := &request{ctx: context.Background(), internal: true, done: make(chan struct{}), results: make([]Result, len(due))}
	for i, id := range due {
		r.cmds = append(r.cmds, &domain.ExpirePending{PendingID: id})
		r.index = append(r.index, i)
	}
	return r
}

// collect takes first and whatever else is queued, up to BatchMax commands. A
// request that does not fit is returned as carry for the next batch.
func (w *Writer) collect(first *request) (reqs []*request, carry *request) {
	return w.collectUpTo(first, max(w.opts.BatchMax, len(first.cmds)))
}

// collectUpTo is collect within room commands; first too may not fit.
func (w *Writer) collectUpTo(first *request, room int) (reqs []*request, carry *request) {
	if len(first.cmds) > room {
		return nil, first
	}
	reqs = append(reqs, first)
	n := len(first.cmds)
	for n < room {
		select {
		case r := <-w.reqs:
			if n+len(r.cmds) > room {
				return reqs, r
			}
			reqs = append(reqs, r)
			n += len(r.cmds)
		default:
			return reqs, nil
		}
	}
	return reqs, nil
}

// appendFunc appends a decided batch.
type appendFunc func(ctx context.Context, expected uint64, prev eventstore.Hash, recs []eventstore.Record) error

// appender is the lease's fenced append, or the store's when the writer runs
// without a lease.
func (w *Writer) appender(l Lease) appendFunc {
	if l != nil {
		return l.Append
	}
	return func(ctx context.Context, expected uint64, prev eventstore.Hash, recs []eventstore.Record) error {
		return w.opts.Store.Append(ctx, w.opts.Ledger, expected, prev, recs)
	}
}

// commit appends jobs in order with appendBatch. After a failure every later
// job fails too: each was decided on a state that included the failed one.
func (w *Writer) commit(appendBatch appendFunc, jobs <-chan *job, failed chan<- error, done chan<- struct{}) {
	defer close(done)
	var broken error
	for j := range jobs {
		if j.snapshot != nil {
			w.snap.committed(j.snapshot, broken)
			continue
		}
		if broken != nil {
			failJob(j, broken)
			continue
		}
		if len(j.recs) == 0 {
			for _, r := range j.reqs {
				r.finish(nil)
			}
			continue
		}
		if w.opts.beforeAppend != nil {
			w.opts.beforeAppend(j.expected)
		}
		ctx, cancel := context.WithTimeout(context.Background(), appendTimeout)
		start, span := time.Now(), w.startAppend(j)
		err := appendBatch(ctx, j.expected, j.prev, j.recs)
		cancel()
		tracing.End(span, err)
		if w.opts.OnAppend != nil {
			w.opts.OnAppend(w.opts.Ledger, len(j.recs), time.Since(start), err)
		}
		if err != nil {
			broken = fmt.Errorf("append at %d: %w: %w", j.expected, ErrUnavailable, err)
			failJob(j, broken)
			failed <- broken
			continue
		}
		for _, r := range j.reqs {
			r.finish(nil)
		}
		if w.opts.OnCommit != nil {
			w.opts.OnCommit(w.opts.Ledger, j.recs)
		}
	}
}

func failJob(j *job, err error) {
	for _, r := range j.reqs {
		r.finish(err)
	}
}
