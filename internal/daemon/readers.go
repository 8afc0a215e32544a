package daemon

import (
	"cmp"
	"context"

	"github.com/ledgerd/ledger/adapters/natsbus"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/projections"
	"github.com/ledgerd/ledger/queries"
	"github.com/ledgerd/ledger/workflows"
)

// ledgerReaders is one ledger's running relay and projections.
type ledgerReaders struct {
	ctx     context.Context
	cancel  context.CancelFunc
	runners map[string]*projections.Runner
	// writer is set while the ledger's writer runs here: they run as long.
	writer bool
	// stopFreezer stops the ledger's freezer, which runs while its writer
	// runs here; nil when none runs.
	stopFreezer context.CancelFunc
	// stopping is set while they catch up before stopping; gen counts the
	// stops, so that the one goroutine waiting (stopper) sees a later one.
	stopping bool
	stopper  bool
	gen      uint64
}

// startReaders starts a ledger's relay and projections, or keeps them
// running; the registry calls it when the ledger's writer starts.
func (m *Main) startReaders(ledger string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.ensureReaders(ledger)
	r.writer, r.stopping = true, false
	m.ensureFreezer(ledger, r)
}

// ensureFreezer starts the ledger's freezer (workflows.Freezer) unless it
// runs: the alerts of rules with the freeze action become freezes through
// the writer. m.mu is held.
func (m *Main) ensureFreezer(ledger string, r *ledgerReaders) {
	if r.stopFreezer != nil {
		return
	}
	ctx, cancel := context.WithCancel(r.ctx)
	r.stopFreezer = cancel
	f := workflows.NewFreezer(ledger, queries.New(m.readPool, nil), func() (workflows.FreezeWriter, error) {
		w, err := m.ledgers.Writer(ledger)
		if err != nil {
			return nil, err
		}
		return w, nil
	}, m.Logger)
	m.wg.Add(1)
	go func() { defer m.wg.Done(); f.Run(ctx, workflows.FreezeEveryDefault) }()
}

// stopReaders stops a ledger's relay and projections once every projection
// has reached the ledger's head as it is then; the registry calls it when
// the ledger's writer stops (archived, or idle). Queries keep reading the
// read models they leave. A start meanwhile keeps them running.
func (m *Main) stopReaders(ledger string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r, ok := m.readers[ledger]; ok {
		r.writer = false
		if r.stopFreezer != nil {
			r.stopFreezer()
			r.stopFreezer = nil
		}
		m.stopWhenCaughtUp(ledger, r)
	}
}

// catchUpReaders starts the ledger's relay and projections, if they do not
// run, until they reach the head.
func (m *Main) catchUpReaders(ledger string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.readers[ledger]; ok {
		return
	}
	m.stopWhenCaughtUp(ledger, m.ensureReaders(ledger))
}

// streamOptions are the options of every ledger's stream.
func (m *Main) streamOptions() natsbus.StreamOptions {
	return natsbus.StreamOptions{MaxAge: m.Config.StreamMaxAge}
}

// ensureReaders returns the ledger's readers, starting them if they do not
// run. m.mu is held.
func (m *Main) ensureReaders(ledger string) *ledgerReaders {
	if r, ok := m.readers[ledger]; ok {
		return r
	}
	ctx, cancel := context.WithCancel(m.readersCtx)
	r := &ledgerReaders{ctx: ctx, cancel: cancel, runners: map[string]*projections.Runner{}}
	m.readers[ledger] = r
	streamOpts := m.streamOptions()
	relay := natsbus.NewRelay(ledger, m.js, m.store, streamOpts, m.Logger).WithFaults(projections.NewFaults(m.projPool, m.Logger)).
		WithTracer(m.tracer)
	m.relays[ledger], m.runners[ledger] = relay, r.runners
	m.wg.Add(1)
	go func() { defer m.wg.Done(); _ = relay.Run(ctx) }()
	linger := cmp.Or(m.Config.ProjectionLinger, projections.LingerDefault)
	// A runner that leaves its group runs alone on a source of its own
	// (the group's Run waits for it).
	alone := func(ctx context.Context, runner *projections.Runner) {
		src := natsbus.NewSource(ledger, m.js, m.store, streamOpts, m.Logger)
		defer src.Close()
		_ = runner.WithSource(src).Run(ctx)
	}
	for _, group := range projectionGroups() {
		runners := make([]*projections.Runner, len(group))
		for i, proj := range group {
			runners[i] = projections.NewRunner(m.projPool, ledger, proj, nil, m.Logger).WithLinger(linger).WithTracer(m.tracer)
			r.runners[proj.Name()] = runners[i]
		}
		src := natsbus.NewSource(ledger, m.js, m.store, streamOpts, m.Logger)
		g := projections.NewGroup(m.projPool, ledger, runners, src, alone, m.Logger).WithLinger(linger)
		m.wg.Add(1)
		go func() { defer m.wg.Done(); defer src.Close(); _ = g.Run(ctx) }()
	}
	return r
}

// projectionGroups partitions the projections into the groups that run
// together, one transaction a batch each (projections.Group): the statement
// lines, the costliest, with the reconciliation, which reads them (after them
// in the same transaction it need not wait for them); the others together.
// Two groups keep two PostgreSQL backends and two goroutines busy on a
// 2-core box, where five separate runners paid five transactions a batch.
func projectionGroups() [][]projections.Projector {
	var lines, rest []projections.Projector
	for _, p := range projections.All() {
		if _, ok := p.(*projections.Movements); ok {
			lines = append([]projections.Projector{p}, lines...)
		} else if _, ok := p.(*projections.Reconciliation); ok {
			lines = append(lines, p)
		} else {
			rest = append(rest, p)
		}
	}
	return [][]projections.Projector{lines, rest}
}

// restartReaders replaces a ledger's running relay and projections with new
// ones, which start from the checkpoints in PostgreSQL on fresh sources:
// what a stream repair needs, since readers waiting on the deleted stream
// would wait there for good. Readers not running stay so.
func (m *Main) restartReaders(ledger string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	old, ok := m.readers[ledger]
	if !ok {
		return
	}
	old.cancel()
	delete(m.readers, ledger)
	r := m.ensureReaders(ledger)
	r.writer = old.writer
	if r.writer {
		m.ensureFreezer(ledger, r) // the old one stopped with old.ctx
	}
	if old.stopping {
		m.stopWhenCaughtUp(ledger, r)
	}
}

// restartingStreams are the streams a repair recreates; each ledger's
// readers restart once its stream is new, and again after each of the
// repair's rebuilds (AdminServer.WithRebuilt).
type restartingStreams struct {
	streams workflows.Streams
	m       *Main
}

func (s restartingStreams) Recreate(ctx context.Context, ledger string) error {
	if err := s.streams.Recreate(ctx, ledger); err != nil {
		return err
	}
	s.m.restartReaders(ledger)
	return nil
}

// stopWhenCaughtUp stops r once its projections reached the head, unless
// the writer starts again meanwhile. One goroutine a ledger waits: a later
// stop (a later head) makes it wait again rather than start another. m.mu is
// held.
func (m *Main) stopWhenCaughtUp(ledger string, r *ledgerReaders) {
	r.stopping = true
	r.gen++
	if r.stopper {
		return
	}
	r.stopper = true
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		for {
			m.mu.Lock()
			gen := r.gen
			m.mu.Unlock()
			err := m.catchUp(r.ctx, ledger, r.runners)
			m.mu.Lock()
			switch {
			case err == nil && r.gen != gen && r.stopping && !r.writer:
				m.mu.Unlock()
				continue // stopped again since: wait for the newer head
			case err == nil && r.stopping && !r.writer && m.readers[ledger] == r:
				r.cancel()
				delete(m.readers, ledger)
				delete(m.relays, ledger)
				delete(m.runners, ledger)
				m.Logger.Debug("relay and projections caught up: stopped", "ledger", ledger)
			}
			r.stopper = false
			m.mu.Unlock()
			return
		}
	}()
}

// catchUp waits until every runner has applied the ledger's head.
//
// Errors: ctx's error, or the database error reading the head.
func (m *Main) catchUp(ctx context.Context, ledger string, runners map[string]*projections.Runner) error {
	head, _, err := m.store.Head(ctx, ledger)
	if err != nil {
		if ctx.Err() == nil {
			m.Logger.Error("stop readers: head; the relay and projections keep running", "ledger", ledger, "err", err)
		}
		return err
	}
	// runners is not changed after ensureReaders made it.
	for _, rn := range runners {
		if err := rn.WaitFor(ctx, head); err != nil {
			return err
		}
	}
	return nil
}

func (m *Main) onCommit(ledger string, recs []eventstore.Record) {
	m.metrics.commits.WithLabelValues(ledger).Inc()
	m.metrics.committed.WithLabelValues(ledger).Add(float64(len(recs)))
	m.mu.Lock()
	relay := m.relays[ledger]
	m.mu.Unlock()
	if relay != nil {
		relay.Offer(recs)
	}
}

// waiter gives queries the in-process notifier of a ledger's projection. A
// query waits on it only for a min_position; when the projection does not
// run here, it is woken (the query polls the checkpoint meanwhile).
func (m *Main) waiter(ledger, projection string) queries.Waiter {
	m.mu.Lock()
	r, ok := m.runners[ledger][projection]
	m.mu.Unlock()
	if ok {
		return r
	}
	m.wakeReaders(ledger)
	return nil
}
