package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ledgerd/ledger/adapters/natsbus"
	"github.com/ledgerd/ledger/commands"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/projections"
	"github.com/ledgerd/ledger/queries"
	"github.com/ledgerd/ledger/workflows"
)

// ledgerReaders is one ledger's relay and projections, running here while
// this process holds the ledger's projector lease.
type ledgerReaders struct {
	ctx     context.Context
	cancel  context.CancelFunc
	runners map[string]*projections.Runner
	// started is closed once the start (startProjecting) is over: projecting
	// says whether they run; when they do not (the lease is held
	// elsewhere), r is no longer in Main.readers.
	started    chan struct{}
	projecting bool
	// stopping is set while they catch up before stopping; gen counts the
	// stops, so that the one goroutine waiting (stopper) sees a later one.
	stopping bool
	stopper  bool
	gen      uint64
	// nudge wakes the stopper from its wait for the ledger to be still (a
	// drain).
	nudge chan struct{}
	// heard is when an append or a sweep last said the ledger moved: when
	// its writer runs elsewhere, they run until it has been still for the
	// ledger idle time (Config.LedgerIdle), as the writer does, rather than
	// stop and start again between appends.
	heard time.Time
}

// leaseRetryAfter is how long a process that found a ledger's projector
// lease held elsewhere waits before it tries again: appends announce
// themselves (eventstore.NotifyChannel) many times a second, and each would
// otherwise cost a lock query.
const leaseRetryAfter = time.Second

// startReaders is called by the registry when the ledger's writer starts
// here: its alerter runs beside it, and its relay and projections too unless
// another process holds its projector lease.
func (m *Main) startReaders(ledger string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ensureAlerter(ledger)
	if r := m.ensureReaders(ledger); r != nil {
		r.stopping = false
	}
}

// ledgerAlerter is a ledger's alerter (workflows.Alerter) running here.
type ledgerAlerter struct {
	stop context.CancelCauseFunc
	// writing says the ledger's writer runs here (writesHere). Once it
	// stops, the alerter goes on while the ledger's readers catch up, then
	// runs a last round (errAlerterLast): an alert the projection computes
	// after the writer went idle (a backlog, a rebuild) is raised then, the
	// writer started again for it, rather than when a command next comes.
	writing bool
	// watching says a goroutine waits for the readers to stop
	// (alerterAfterReaders).
	watching bool
}

// errAlerterLast stops an alerter with a last round.
var errAlerterLast = errors.New("the ledger's readers stopped: a last round")

// alerterLastRoundMax bounds an alerter's last round.
const alerterLastRoundMax = time.Minute

// writesHere says whether the ledger's writer runs in this process: its
// alerter runs as long (startReaders, stopReaders). m.mu is held.
func (m *Main) writesHere(ledger string) bool {
	a := m.alerters[ledger]
	return a != nil && a.writing
}

// ensureAlerter starts the ledger's alerter (workflows.Alerter) unless it
// runs: through the writer, every alert becomes an AlertRaised event, and
// those of rules with the freeze action freezes too. An alerter still
// running since the writer stopped goes on. m.mu is held.
func (m *Main) ensureAlerter(ledger string) {
	if a := m.alerters[ledger]; a != nil {
		a.writing = true
		return
	}
	ctx, stop := context.WithCancelCause(m.readersCtx)
	m.alerters[ledger] = &ledgerAlerter{stop: stop, writing: true}
	// It looks the writer up only when it has something to submit (and
	// once, at its start, for its marks). While the writer is stopped here
	// it starts none (another node may write the ledger now, whose alerter
	// acts): a round with something to submit fails, and waits for the
	// last round or for the writer to start here again. The last round
	// starts one unless another node holds the writer lease (it moved
	// there, or was written there meanwhile); it may come late (its round
	// in flight first), so that is asked when it would start one.
	last := false
	f := workflows.NewAlerter(ledger, queries.New(m.readPool, nil), func() (workflows.AlertWriter, error) {
		m.mu.Lock()
		a := m.alerters[ledger]
		writing, lastRound := a != nil && a.writing, last
		m.mu.Unlock()
		if !writing {
			if w, ok := m.ledgers.RunningWriter(ledger); ok {
				return w, nil
			}
			if !lastRound {
				return nil, errAlerterIdle
			}
			elsewhere, err := m.writesElsewhere(ledger)
			if err != nil {
				return nil, fmt.Errorf("the writer lease of %s: %w", ledger, err) // logged at WARN: the last round gives up
			}
			if elsewhere {
				return nil, errAlerterIdle
			}
		}
		w, err := m.ledgers.Writer(ledger)
		if err != nil {
			return nil, err
		}
		return w, nil
	}, m.Logger)
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		f.Run(ctx, workflows.AlertEveryDefault)
		if !errors.Is(context.Cause(ctx), errAlerterLast) || m.readersCtx.Err() != nil || m.draining.Load() {
			return
		}
		lctx, cancel := context.WithTimeout(m.readersCtx, alerterLastRoundMax)
		defer cancel()
		m.mu.Lock()
		last = true // read under m.mu by the look-up above
		m.mu.Unlock()
		for busy := true; busy; {
			var err error
			if busy, err = f.Round(lctx); err != nil {
				level := slog.LevelWarn
				if errors.Is(err, commands.ErrLedgerArchived) || errors.Is(err, workflows.ErrWriterStopped) {
					level = slog.LevelDebug // archived, or written elsewhere: nothing for this node to raise
				}
				m.Logger.Log(lctx, level, "alerter: last round", "ledger", ledger, "err", err)
				return
			}
		}
	}()
}

// errAlerterIdle is an alerter's look-up of the writer while it is stopped
// here: nothing is submitted until the writer starts again, or the last
// round.
var errAlerterIdle = fmt.Errorf("the ledger's writer is stopped here: %w", workflows.ErrWriterStopped)

// stopReaders stops a ledger's relay and projections once every projection
// has reached the ledger's head as it is then, and its alerter after them
// (ledgerAlerter); the registry calls it when the ledger's writer stops
// (archived, or idle). Queries keep reading the read models they leave. A
// start meanwhile keeps them running.
func (m *Main) stopReaders(ledger string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a := m.alerters[ledger]
	if a != nil {
		a.writing = false
	}
	r, ok := m.readers[ledger]
	if !ok {
		m.lastAlerterRound(ledger, a)
		return
	}
	m.stopWhenCaughtUp(ledger, r)
	if a != nil && !a.watching {
		a.watching = true
		m.wg.Add(1)
		go func() { defer m.wg.Done(); m.alerterAfterReaders(ledger, a, r) }()
	}
}

// alerterAfterReaders stops the alerter a, once the writer stopped, with a
// last round when the ledger's readers r (and any that replace them, a
// restart) have stopped; the writer starting again meanwhile keeps it.
func (m *Main) alerterAfterReaders(ledger string, a *ledgerAlerter, r *ledgerReaders) {
	for {
		select {
		case <-r.ctx.Done():
		case <-m.readersCtx.Done():
			return
		}
		m.mu.Lock()
		if next, ok := m.readers[ledger]; ok && next != r && m.alerters[ledger] == a && !a.writing {
			r = next // restarted readers
			m.mu.Unlock()
			continue
		}
		// The writer started again meanwhile: the alerter goes on, and the
		// writer's next stop watches again (lastAlerterRound does nothing).
		a.watching = false
		m.lastAlerterRound(ledger, a)
		m.mu.Unlock()
		return
	}
}

// writesElsewhere says whether another node holds the ledger's writer
// lease now.
func (m *Main) writesElsewhere(ledger string) (bool, error) {
	ctx, cancel := context.WithTimeout(m.readersCtx, ledgerSweepTimeout)
	defer cancel()
	n, held, err := m.nodes.WriterOf(ctx, ledger)
	return held && n.ID != m.nodeID, err
}

// lastAlerterRound stops a (nil: none), the ledger's alerter while its
// writer does not run here, with a last round. m.mu is held.
func (m *Main) lastAlerterRound(ledger string, a *ledgerAlerter) {
	if a == nil || a.writing || m.alerters[ledger] != a {
		return
	}
	a.stop(errAlerterLast)
	delete(m.alerters, ledger)
}

// catchUpReaders starts the ledger's relay and projections, if they do not
// run, until they reach the head; running, they go on to the head as it is
// now before they stop.
func (m *Main) catchUpReaders(ledger string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r, ok := m.readers[ledger]; ok {
		if r.stopping && !m.draining.Load() {
			r.gen++ // a newer head to reach before they stop
			r.heard = time.Now()
		}
		if relay := m.relays[ledger]; relay != nil {
			relay.Wake()
		}
		return
	}
	if r := m.ensureReaders(ledger); r != nil && !m.writesHere(ledger) {
		m.stopWhenCaughtUp(ledger, r)
	}
}

// streamOptions are the options of every ledger's stream.
func (m *Main) streamOptions() natsbus.StreamOptions {
	return natsbus.StreamOptions{MaxAge: m.Config.StreamMaxAge, Replicas: m.streamReplicas(), PlainFrames: m.Config.StreamPlainFrames}
}

// ensureReaders returns the ledger's readers, starting them if they do not
// run: they take the ledger's projector lease first, on a goroutine of
// their own (startProjecting). It returns nil when this process does not
// project (its roles, a drain) or found the lease held elsewhere less than
// leaseRetryAfter ago. m.mu is held.
func (m *Main) ensureReaders(ledger string) *ledgerReaders {
	if r, ok := m.readers[ledger]; ok {
		return r
	}
	if !m.roles.Projector || m.draining.Load() || time.Since(m.elsewhere[ledger]) < leaseRetryAfter {
		return nil
	}
	delete(m.elsewhere, ledger)
	ctx, cancel := context.WithCancel(m.readersCtx)
	r := &ledgerReaders{ctx: ctx, cancel: cancel, runners: map[string]*projections.Runner{}, started: make(chan struct{}),
		heard: time.Now(), nudge: make(chan struct{}, 1)}
	m.readers[ledger] = r
	m.wg.Add(1)
	go func() { defer m.wg.Done(); m.startProjecting(ledger, r) }()
	return r
}

// startProjecting takes the ledger's projector lease and, if this process
// got it and r is still the ledger's readers, starts the relay and the
// projections; otherwise r is forgotten. Losing the lease later (its
// session died) stops them: another process may run them by then.
func (m *Main) startProjecting(ledger string, r *ledgerReaders) {
	defer close(r.started)
	ctx, cancel := context.WithTimeout(r.ctx, ledgerSweepTimeout)
	lost, ok, err := m.projLocks.TryAcquire(ctx, ledger)
	cancel()
	m.mu.Lock()
	defer m.mu.Unlock()
	current := m.readers[ledger] == r && r.ctx.Err() == nil
	switch {
	case err != nil || !ok:
		if err != nil && r.ctx.Err() == nil {
			m.Logger.Warn("projector lease", "ledger", ledger, "err", err)
		}
		if !ok && err == nil {
			if len(m.elsewhere) >= quietMax {
				clear(m.elsewhere) // forgetting costs a look-up each, no more
			}
			m.elsewhere[ledger] = time.Now()
		}
		if current {
			r.cancel()
			delete(m.readers, ledger)
		}
		return
	case !current:
		if _, other := m.readers[ledger]; !other {
			m.projLocks.Release(ledger) // stopped meanwhile, and no readers took over
		}
		return
	}
	r.projecting = true
	m.runReaders(ledger, r)
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		select {
		case <-lost:
			m.mu.Lock()
			defer m.mu.Unlock()
			if m.readers[ledger] == r {
				m.Logger.Warn("projector lease lost: relay and projections stopped", "ledger", ledger)
				m.forgetReaders(ledger, r)
			}
		case <-r.ctx.Done():
		}
	}()
}

// forgetReaders stops r, the ledger's readers, and forgets them. m.mu is
// held.
func (m *Main) forgetReaders(ledger string, r *ledgerReaders) {
	r.cancel()
	delete(m.readers, ledger)
	delete(m.relays, ledger)
	delete(m.runners, ledger)
}

// runReaders starts the ledger's relay and projections. m.mu is held.
func (m *Main) runReaders(ledger string, r *ledgerReaders) {
	ctx := r.ctx
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
// would wait there for good, and what a rebuild needs, since the running
// projections hold in memory what came from the rows replaced. Readers not
// running stay so. The projector lease stays held: the new readers find it
// held by this process.
func (m *Main) restartReaders(ledger string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	old, ok := m.readers[ledger]
	if !ok {
		return
	}
	// Not paced: a restart delayed would let the old projections apply
	// events over rebuilt rows with what they held in memory. Only a
	// database login can announce a rebuild; a flood of them costs restarts,
	// not correctness (each restart resumes from the checkpoints).
	// Forgotten whole: a query must not find the old runners (the
	// balances their projector serves from memory came from the rows
	// replaced) while the new ones wait for the lease or do not start.
	m.forgetReaders(ledger, old)
	r := m.ensureReaders(ledger)
	if r == nil {
		m.projLocks.Release(ledger)
		return
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
	s.m.announceRebuilt(ledger)
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
		<-r.started
		if !r.projecting {
			m.mu.Lock()
			r.stopper = false
			m.mu.Unlock()
			return // the lease is held elsewhere: r was forgotten
		}
		for {
			m.mu.Lock()
			gen := r.gen
			m.mu.Unlock()
			err := m.catchUp(r.ctx, ledger, r.runners)
			m.mu.Lock()
			switch {
			case err == nil && r.gen != gen && r.stopping && !m.writesHere(ledger):
				m.mu.Unlock()
				continue // stopped again since: wait for the newer head
			case err == nil && r.stopping && !m.writesHere(ledger) && !m.draining.Load() && time.Since(r.heard) < m.ledgerIdle():
				wait := m.ledgerIdle() - time.Since(r.heard)
				m.mu.Unlock()
				select {
				case <-r.ctx.Done():
				case <-r.nudge: // a drain: stop once caught up
				case <-time.After(wait):
				}
				continue // still for less than the idle time: reach the head as it is then
			case err == nil && r.stopping && !m.writesHere(ledger) && m.readers[ledger] == r:
				m.forgetReaders(ledger, r)
				m.projLocks.Release(ledger)
				m.Logger.Debug("relay and projections caught up: stopped", "ledger", ledger)
			}
			r.stopper = false
			m.mu.Unlock()
			return
		}
	}()
}

// ledgerIdle is Config.LedgerIdle, or its default.
func (m *Main) ledgerIdle() time.Duration { return cmp.Or(m.Config.LedgerIdle, LedgerIdleDefault) }

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

// balanceServer is the runner of the ledger's movements projection when this
// process runs it, which answers balances from memory
// (queries.Service.WithServed); else nil, and the read model answers.
// Unlike waiter, it wakes no readers: a read without a min_position waits
// for nothing.
func (m *Main) balanceServer(ledger string) queries.BalanceServer {
	m.mu.Lock()
	r, ok := m.runners[ledger][projections.MovementsName]
	m.mu.Unlock()
	if !ok {
		return nil
	}
	return r
}

// retiredSweepEvery is how often a projector process sweeps the rows of
// read-model numbers a rebuild's swap retired: a rebuild sweeps once it has
// swapped, and this catches what it left (its call cancelled, its process
// stopped, the database away).
const retiredSweepEvery = time.Minute

// sweepRetired sweeps retired numbers' rows at once and every
// retiredSweepEvery until ctx ends (projections.SweepRetired).
func (m *Main) sweepRetired(ctx context.Context) {
	t := time.NewTicker(retiredSweepEvery)
	defer t.Stop()
	for {
		n, err := projections.SweepRetired(ctx, m.projPool)
		switch {
		case err != nil && ctx.Err() == nil:
			m.Logger.Warn("rows a rebuild replaced are left to the next sweep", "deleted", n, "err", err)
		case n > 0:
			m.Logger.Info("deleted the rows rebuilds replaced", "rows", n)
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}
