package webhooks

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/supervise"
)

// Defaults of Options.
const (
	// MaxAgeDefault is how long a delivery is retried, from its first
	// attempt, before it is given up (a dead letter).
	MaxAgeDefault = 24 * time.Hour
	// BackoffMinDefault and BackoffMaxDefault bound the delay between two
	// attempts: exponential from the first, with full jitter.
	BackoffMinDefault = time.Second
	BackoffMaxDefault = 5 * time.Minute
	// AttemptTimeoutDefault bounds one attempt, connection to response
	// headers (and AttemptTimeoutMax any setting).
	AttemptTimeoutDefault = 10 * time.Second
	AttemptTimeoutMax     = 10 * time.Second
	// BreakerFailuresDefault consecutive failures open an endpoint's
	// circuit; after BreakerCooldownDefault one probe is let through.
	BreakerFailuresDefault = 5
	BreakerCooldownDefault = 30 * time.Second
	// EndpointConcurrencyDefault bounds the requests in flight to one host,
	// EndpointRateDefault the requests a second started to it.
	EndpointConcurrencyDefault = 4
	EndpointRateDefault        = 50
	// PayloadMaxDefault bounds a delivery's body: a bigger event is a dead
	// letter at once, its error naming the size.
	PayloadMaxDefault = 256 << 10
	// RetentionDefault is how long the delivery log keeps a row after its
	// last change.
	RetentionDefault = 7 * 24 * time.Hour
	// PollDefault is how often a dispatcher claims subscriptions (new ones
	// start within it) and a waiting subscription looks for a replay or a
	// deletion; LeaseDefault how long a claim lasts without renewal (a dead
	// ledgerd's subscriptions move to another within it).
	PollDefault  = 2 * time.Second
	LeaseDefault = 30 * time.Second
	// SubscriptionsMaxDefault bounds the subscriptions one ledgerd
	// dispatches (one goroutine each).
	SubscriptionsMaxDefault = 1000
	// batchMax bounds the events read at once for a subscription.
	batchMax = 256
	// cleanupEvery is how often the delivery log is trimmed. A trim removes
	// cleanupBatch rows a statement, cleanupPause apart (short statements,
	// none holding the table or the WAL for long), until a batch comes
	// back short or after cleanupBatchesMax batches: up to a million rows
	// a minute, where one subscription to a ledger of 100 events a second
	// adds 6,000.
	cleanupEvery      = time.Minute
	cleanupBatch      = 10_000
	cleanupBatchesMax = 100
	cleanupPause      = 100 * time.Millisecond
	// stateWriteTimeout bounds recording a circuit's state or a fault.
	stateWriteTimeout = 5 * time.Second
)

// Options configures a Dispatcher; zero fields take the defaults above.
type Options struct {
	MaxAge                 time.Duration
	BackoffMin, BackoffMax time.Duration
	AttemptTimeout         time.Duration
	BreakerFailures        int
	BreakerCooldown        time.Duration
	EndpointConcurrency    int
	EndpointRate           int
	PayloadMax             int
	Retention              time.Duration
	Poll, Lease            time.Duration
	SubscriptionsMax       int
	// Owner names this dispatcher in the leases; "": random.
	Owner  string
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	defInt := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.MaxAge, MaxAgeDefault)
	def(&o.BackoffMin, BackoffMinDefault)
	def(&o.BackoffMax, BackoffMaxDefault)
	def(&o.AttemptTimeout, AttemptTimeoutDefault)
	o.AttemptTimeout = min(o.AttemptTimeout, AttemptTimeoutMax)
	def(&o.BreakerCooldown, BreakerCooldownDefault)
	def(&o.Retention, RetentionDefault)
	def(&o.Poll, PollDefault)
	def(&o.Lease, LeaseDefault)
	defInt(&o.BreakerFailures, BreakerFailuresDefault)
	defInt(&o.EndpointConcurrency, EndpointConcurrencyDefault)
	defInt(&o.EndpointRate, EndpointRateDefault)
	defInt(&o.PayloadMax, PayloadMaxDefault)
	defInt(&o.SubscriptionsMax, SubscriptionsMaxDefault)
	o.BackoffMax = max(o.BackoffMax, o.BackoffMin)
	if o.Owner == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		o.Owner = hex.EncodeToString(b[:])
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Source yields a ledger's records from a position on (natsbus.Source).
type Source interface {
	// Next returns 1..max records starting exactly at from, waiting for one.
	Next(ctx context.Context, from uint64, max int) ([]eventstore.Record, error)
	// Close lets go of what the source holds ahead of the reader (frames
	// read ahead, the stream's consumer). A Next after it starts again,
	// at the position it asks.
	Close()
}

// Log reads records at given positions (eventstore.Store): the events a
// replay of dead letters delivers, and the hash at a moved cursor.
type Log interface {
	ReadPositions(ctx context.Context, ledger string, positions []uint64) ([]eventstore.Record, error)
}

// Dispatcher delivers the events of every subscription whose lease it
// holds: one goroutine per subscription, so that a slow endpoint holds up
// its own subscriptions only, and never the ledger's writer.
type Dispatcher struct {
	store     *Store
	log       Log
	source    func(ledger string) Source
	opts      Options
	endpoints *endpoints
	client    *http.Client
	logger    *slog.Logger

	mu      sync.Mutex
	workers map[string]*running
	wg      sync.WaitGroup
}

// running is one subscription's worker: cancel stops it, done closes when
// it has.
type running struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// NewDispatcher returns a dispatcher; source makes a fresh source of a
// ledger's records for each subscription. Call Run.
func NewDispatcher(store *Store, log Log, source func(ledger string) Source, opts Options) *Dispatcher {
	opts = opts.withDefaults()
	return &Dispatcher{store: store, log: log, source: source, opts: opts,
		endpoints: &endpoints{opts: opts, m: map[string]*endpoint{}}, client: newHTTPClient(opts.AttemptTimeout),
		logger: opts.Logger.With("component", "webhooks"), workers: map[string]*running{}}
}

// Run claims subscriptions and dispatches them, and trims the delivery
// log, until ctx ends, then gives its leases up.
func (d *Dispatcher) Run(ctx context.Context) {
	trimmed := make(chan struct{})
	go func() { defer close(trimmed); d.trimLoop(ctx) }()
	defer func() { <-trimmed }()
	tick := time.NewTicker(d.opts.Poll)
	defer tick.Stop()
	for {
		d.poll(ctx)
		select {
		case <-tick.C:
		case <-ctx.Done():
			d.stopAll()
			return
		}
	}
}

// trimLoop trims the delivery log now and every cleanupEvery, beside the
// claims: a long trim never holds up a lease's renewal.
func (d *Dispatcher) trimLoop(ctx context.Context) {
	tick := time.NewTicker(cleanupEvery)
	defer tick.Stop()
	for {
		n, err := d.trim(ctx, cleanupBatch, cleanupBatchesMax, cleanupPause)
		switch {
		case err != nil && ctx.Err() == nil:
			d.logger.Warn("delivery log not trimmed", "rows", n, "err", err)
		case n > 0:
			d.logger.Info("delivery log trimmed", "rows", n)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}

// trim removes the delivery log's rows past the retention, batch at a
// time and pause apart, until a batch comes back short or after
// batchesMax batches (the next trim goes on from there). It returns how
// many rows it removed.
//
// Errors: ctx's; a database error, wrapped.
func (d *Dispatcher) trim(ctx context.Context, batch, batchesMax int, pause time.Duration) (int64, error) {
	var total int64
	for i := range batchesMax {
		if i > 0 {
			if err := sleep(ctx, pause); err != nil {
				return total, err
			}
		}
		n, err := d.store.Cleanup(ctx, d.opts.Retention, batch)
		total += n
		if err != nil || n < int64(batch) {
			return total, err
		}
	}
	return total, nil
}

// poll claims and renews leases, starts the subscriptions newly held and
// stops those no longer held (deleted, or taken by another ledgerd). A
// subscription's worker is started only once its previous one has ended:
// two would each count their own attempts of one delivery.
func (d *Dispatcher) poll(ctx context.Context) {
	ids, err := d.store.claim(ctx, d.opts.Owner, d.opts.Lease, d.opts.SubscriptionsMax)
	if err == nil {
		// The claim skips rows locked at that instant (a worker recording
		// its circuit): those this dispatcher still owns are held all the
		// same.
		ids, err = d.store.owned(ctx, d.opts.Owner, ids, d.running())
	}
	if err != nil {
		if ctx.Err() == nil {
			d.logger.Warn("webhook subscriptions not claimed; those running go on until their lease ends", "err", err)
		}
		return
	}
	var back []string
	defer func() { // after the lock: a database call
		if err := d.store.giveBack(ctx, d.opts.Owner, back); err != nil && ctx.Err() == nil {
			d.logger.Warn("webhook subscriptions over the limit not given back: another ledgerd takes them when their lease ends", "err", err)
		}
	}()
	d.mu.Lock()
	defer d.mu.Unlock()
	if over := len(ids) - d.opts.SubscriptionsMax; over > 0 {
		// The claim filled its limit past a locked row it skipped: the
		// newly claimed go back, so that no more than the limit is held.
		keep := ids[:0:0]
		for _, id := range ids {
			if _, running := d.workers[id]; !running && len(back) < over {
				back = append(back, id)
			} else {
				keep = append(keep, id)
			}
		}
		ids = keep
	}
	held := make(map[string]bool, len(ids))
	for _, id := range ids {
		held[id] = true
		if r, ok := d.workers[id]; ok {
			select {
			case <-r.done: // stopped earlier and ended: start it again below
			default:
				continue // running, or still ending: the next poll starts it
			}
		}
		wctx, cancel := context.WithCancel(ctx)
		r := &running{cancel: cancel, done: make(chan struct{})}
		d.workers[id] = r
		w := &worker{d: d, id: id, logger: d.logger.With("subscription", id)}
		d.wg.Add(1)
		go func() { defer d.wg.Done(); defer close(r.done); w.run(wctx) }()
	}
	for id, r := range d.workers {
		if held[id] {
			continue
		}
		r.cancel()
		select {
		case <-r.done:
			delete(d.workers, id)
		default: // kept until it has ended, so that no second one starts
		}
	}
}

// running returns the subscriptions with a worker, running or ending.
func (d *Dispatcher) running() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	ids := make([]string, 0, len(d.workers))
	for id := range d.workers {
		ids = append(ids, id)
	}
	return ids
}

func (d *Dispatcher) stopAll() {
	d.mu.Lock()
	for id, r := range d.workers {
		r.cancel()
		delete(d.workers, id)
	}
	d.mu.Unlock()
	d.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), stateWriteTimeout)
	defer cancel()
	if err := d.store.release(ctx, d.opts.Owner); err != nil {
		d.logger.Warn("webhook leases not released: another ledgerd takes them when they expire", "err", err)
	}
}

// ErrChainBroken means a record does not continue the hash chain from the
// subscription's cursor, or is not the log's: nothing past the cursor is
// delivered until the source offers the log's events again.
var ErrChainBroken = errors.New("the hash chain is broken")

// worker delivers one subscription's events.
type worker struct {
	d      *Dispatcher
	id     string
	logger *slog.Logger
	// circuit and fault are what the subscription's row last said.
	circuit, fault string
	// resume is set until the first delivery after a (re)start, whose row
	// may hold attempts made before.
	resume bool
	// host and ep are the endpoint the worker holds (holdEndpoint), of its
	// subscription's URL; nil before the first load.
	host string
	ep   *endpoint
	// src is the stream's source while the worker reads it; nil before.
	src Source
	// batch holds the records being delivered, from src; detached says
	// they are copies of their own (pause), not the source's frames.
	batch    []eventstore.Record
	detached bool
}

func (w *worker) run(ctx context.Context) {
	defer w.releaseEndpoint()
	supervise.Run(ctx, supervise.Policy{Initial: 50 * time.Millisecond, Max: 5 * time.Second,
		OnRestart: func(err error, delay time.Duration) {
			switch {
			case errors.Is(err, errMoved):
				w.logger.Debug("subscription changed: reloading", "err", err)
			case errors.Is(err, ErrChainBroken):
				w.logger.Error("webhook deliveries stopped: an event does not continue the hash chain", "err", err, "retry_in", delay)
				w.setState(ctx, w.circuit, err.Error())
			default:
				w.logger.Warn("webhook deliveries interrupted; resuming from the cursor", "err", err, "retry_in", delay)
			}
		}}, w.serve)
}

func (w *worker) serve(ctx context.Context) error {
	c, err := w.d.store.load(ctx, w.id, w.d.opts.Owner)
	if err != nil {
		return err
	}
	w.circuit, w.fault, w.resume = c.Circuit, c.Fault, true
	w.holdEndpoint(c.URL)
	if !c.known {
		recs, err := w.d.log.ReadPositions(ctx, c.Ledger, []uint64{c.DeliveredPosition})
		if err != nil {
			return fmt.Errorf("subscription %s: the event at its cursor: %w", c.ID, err)
		}
		if len(recs) != 1 || !recs[0].VerifyHash() {
			return fmt.Errorf("subscription %s: no good event at its cursor %d: %w", c.ID, c.DeliveredPosition, ErrChainBroken)
		}
		c.hash, c.known = recs[0].Hash, true
	}
	if err := w.replayDead(ctx, &c); err != nil {
		return err
	}
	// The delivery at the cursor may be one a replay interrupted: it goes
	// on with its attempts, its maximum age counting from its first.
	w.resume = true
	src := w.d.source(c.Ledger)
	defer src.Close()
	w.src = src
	defer func() { w.src = nil }()
	for {
		wait, cancel := context.WithTimeout(ctx, w.d.opts.Poll)
		recs, err := src.Next(wait, c.DeliveredPosition+1, batchMax)
		expired := wait.Err() != nil
		cancel()
		if err != nil {
			if expired && ctx.Err() == nil {
				if err := w.d.store.current(ctx, &c, w.d.opts.Owner); err != nil {
					return err
				}
				continue
			}
			return err
		}
		if err := w.deliverBatch(ctx, &c, recs); err != nil {
			return err
		}
	}
}

// deliverBatch checks recs against the chain and the log, and delivers those
// the subscription wants, each in turn, moving the cursor past each.
func (w *worker) deliverBatch(ctx context.Context, c *claimed, recs []eventstore.Record) error {
	if err := w.verify(ctx, c, recs); err != nil {
		return err
	}
	// Read through w.batch, which a pause replaces with copies: the
	// source's records share their frame's memory.
	w.batch, w.detached = recs, false
	defer func() { w.batch = nil }()
	skipped := -1 // the last record filtered out and not yet past the cursor
	for i := range len(w.batch) {
		if !wants(&c.Subscription, &w.batch[i]) {
			skipped = i
			continue
		}
		if skipped >= 0 {
			if err := w.d.store.advance(ctx, c, w.d.opts.Owner, w.batch[skipped].Position, w.batch[skipped].Hash); err != nil {
				return err
			}
			skipped = -1
		}
		if err := w.deliver(ctx, c, &w.batch[i]); err != nil {
			return err
		}
		if err := w.d.store.advance(ctx, c, w.d.opts.Owner, w.batch[i].Position, w.batch[i].Hash); err != nil {
			return err
		}
	}
	if skipped >= 0 {
		return w.d.store.advance(ctx, c, w.d.opts.Owner, w.batch[skipped].Position, w.batch[skipped].Hash)
	}
	return nil
}

// detach returns copies of recs whose payloads share one allocation of
// their own, not the frames the source decoded them from.
func detach(recs []eventstore.Record) []eventstore.Record {
	n := 0
	for i := range recs {
		n += len(recs[i].Payload)
	}
	buf := make([]byte, 0, n)
	out := make([]eventstore.Record, len(recs))
	for i, r := range recs {
		at := len(buf)
		buf = append(buf, r.Payload...)
		r.Payload = buf[at:len(buf):len(buf)]
		out[i] = r
	}
	return out
}

// verify checks that recs continue the chain from the cursor, and that the
// last is the log's (which makes them all the log's).
//
// Errors: ErrChainBroken; a database error.
func (w *worker) verify(ctx context.Context, c *claimed, recs []eventstore.Record) error {
	prev := c.hash
	for i := range recs {
		rec := &recs[i]
		switch {
		case rec.Ledger != c.Ledger:
			return fmt.Errorf("at %d: the event is %q's: %w", rec.Position, rec.Ledger, ErrChainBroken)
		case rec.Position != c.DeliveredPosition+uint64(i)+1:
			return fmt.Errorf("at %d: want %d: a gap or a repeat: %w", rec.Position, c.DeliveredPosition+uint64(i)+1, ErrChainBroken)
		case rec.PrevHash != prev:
			return fmt.Errorf("at %d: prev_hash %x does not continue %x: %w", rec.Position, rec.PrevHash[:8], prev[:8], ErrChainBroken)
		case !rec.VerifyHash():
			return fmt.Errorf("at %d: the hash does not match the event: %w", rec.Position, ErrChainBroken)
		}
		prev = rec.Hash
	}
	last := &recs[len(recs)-1]
	ok, err := w.d.store.inLog(ctx, c.Ledger, last.Position, last.Hash)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("at %d: not the log's event: %w", last.Position, ErrChainBroken)
	}
	if w.fault != "" {
		w.setState(ctx, w.circuit, "")
	}
	return nil
}

// replayDead delivers the dead letters queued again, in position order,
// before the subscription goes on from its cursor.
func (w *worker) replayDead(ctx context.Context, c *claimed) error {
	for {
		ps, err := w.d.store.replays(ctx, c.ID, batchMax)
		if err != nil || len(ps) == 0 {
			return err
		}
		recs, err := w.d.log.ReadPositions(ctx, c.Ledger, ps)
		if err != nil {
			return fmt.Errorf("subscription %s: replayed events: %w", c.ID, err)
		}
		if len(recs) != len(ps) {
			return fmt.Errorf("subscription %s: %d of %d replayed events in the log: %w", c.ID, len(recs), len(ps), ErrChainBroken)
		}
		for i := range recs {
			if !recs[i].VerifyHash() || recs[i].Ledger != c.Ledger {
				return fmt.Errorf("subscription %s: replayed event at %d: %w", c.ID, recs[i].Position, ErrChainBroken)
			}
			w.resume = true // its row holds the replay's reset
			if err := w.deliver(ctx, c, &recs[i]); err != nil {
				return err
			}
		}
	}
}

// holdEndpoint makes the worker a user of url's host's endpoint until it
// ends: the host's limits and circuit are kept for as long.
func (w *worker) holdEndpoint(url string) {
	host := hostOf(url)
	if w.ep != nil && w.host == host {
		return
	}
	w.releaseEndpoint()
	w.host, w.ep = host, w.d.endpoints.acquire(host)
}

func (w *worker) releaseEndpoint() {
	if w.ep != nil {
		w.d.endpoints.release(w.host)
		w.host, w.ep = "", nil
	}
}

func (w *worker) setState(ctx context.Context, circuit, fault string) {
	if circuit == w.circuit && fault == w.fault {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stateWriteTimeout)
	defer cancel()
	if err := w.d.store.setState(ctx, w.id, circuit, fault); err != nil {
		w.logger.Warn("webhook subscription state not recorded", "err", err)
		return
	}
	w.circuit, w.fault = circuit, fault
}
