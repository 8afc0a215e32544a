package daemon

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ledgerd/ledger/commands"
	"github.com/ledgerd/ledger/projections"
)

// Ledgers start on demand and stop when idle: an idle ledger costs no
// goroutine. What starts them:
//   - a command (or a STRONG read): the registry starts the ledger's writer,
//     which starts its relay and projectors (startReaders);
//   - a hold with a timeout: the writer that holds it stays up until it
//     resolves, and the sweep below starts the writer of any active ledger
//     whose read model shows an open hold with a timeout and whose writer
//     does not run here (at boot, after a takeover, on a standby);
//   - a projection behind the head: the sweep starts the ledger's relay and
//     projectors until they reach it (catch-up), and so does a query that
//     waits (min_position) on a ledger whose projectors do not run here.
// What stops them: the writer after Config.LedgerIdle with nothing to do and
// no timed hold open (it releases its lease), and then its relay and
// projectors once they reached the head.

// Bounds of the sweep.
const (
	// ledgerSweepEvery is how often the sweep looks for ledgers with timed
	// holds open or projections behind: it bounds how late a hold whose
	// writer runs nowhere (its holder died) is expired, and how long a
	// projection left behind by another process's crash waits.
	ledgerSweepEvery = 5 * time.Second
	// ledgerSweepTimeout bounds one sweep's queries.
	ledgerSweepTimeout = 10 * time.Second
)

// sweepLedgers starts the writers of ledgers with open timed holds and the
// readers of ledgers whose projections are behind their head, that do not
// run here.
func (m *Main) sweepLedgers(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, ledgerSweepTimeout)
	defer cancel()
	if m.roles.Writer && !m.draining.Load() {
		m.sweepHolds(ctx)
		m.sweepAlerts(ctx)
	}
	if !m.roles.Projector || m.draining.Load() {
		return
	}
	behind, err := m.ledgersBehind(ctx)
	if err != nil {
		if ctx.Err() == nil {
			m.Logger.Error("ledger sweep: projections", "err", err)
		}
		return
	}
	for _, ledger := range behind {
		m.catchUpReaders(ledger)
	}
}

// sweepHolds starts the writers of ledgers with open timed holds.
func (m *Main) sweepHolds(ctx context.Context) {
	held, err := m.ledgersWithTimedHolds(ctx)
	if err != nil {
		if ctx.Err() == nil {
			m.Logger.Error("ledger sweep: holds", "err", err)
		}
		return
	}
	for _, ledger := range held {
		if _, err := m.ledgers.Writer(ledger); err != nil {
			m.Logger.Warn("ledger sweep: start the writer of a ledger with holds", "ledger", ledger, "err", err)
		}
	}
}

// sweepAlerts starts here the writer of each active ledger with an alert
// not raised (alerts.raised, projections 0031) that no node writes: its
// alerter raises the alert. While a ledger's writer runs, here or on
// another node, its alerter raises each alert within a round, and this
// node's alerter outlives its idle writer until this node's readers have
// caught up; an alert a projector on another node computed after the
// writer went idle (a backlog, an outage of the projector nodes) would
// otherwise wait for the ledger's next command. A ledger's writer is
// started again for its alerts only once a later alert is left unraised:
// one the writer refuses to raise (a read model edited) does not start it
// every sweep.
func (m *Main) sweepAlerts(ctx context.Context) {
	left, err := m.ledgersWithUnraisedAlerts(ctx)
	if err != nil {
		if ctx.Err() == nil {
			m.Logger.Error("ledger sweep: alerts", "err", err)
		}
		return
	}
	for _, l := range left {
		m.mu.Lock()
		tried := m.alertsSwept[l.ledger] == l.last
		m.mu.Unlock()
		if _, running := m.ledgers.RunningWriter(l.ledger); tried || running {
			continue // its alerter raises it
		}
		elsewhere, err := m.writesElsewhere(l.ledger)
		if err != nil {
			m.Logger.Warn("ledger sweep: the writer of a ledger with alerts not raised", "ledger", l.ledger, "err", err)
			continue
		}
		if elsewhere {
			continue // its alerter raises it
		}
		m.mu.Lock()
		if len(m.alertsSwept) >= quietMax {
			clear(m.alertsSwept)
		}
		m.alertsSwept[l.ledger] = l.last
		m.mu.Unlock()
		m.Logger.Info("ledger sweep: starting the writer of a ledger with alerts not raised", "ledger", l.ledger, "alert_position", l.last)
		if _, err := m.ledgers.Writer(l.ledger); err != nil {
			// Not started (this node's writers at their bound, a drain, a
			// database error): a later sweep tries again, as for holds.
			m.mu.Lock()
			if m.alertsSwept[l.ledger] == l.last {
				delete(m.alertsSwept, l.ledger)
			}
			m.mu.Unlock()
			m.Logger.Warn("ledger sweep: start the writer of a ledger with alerts not raised", "ledger", l.ledger, "err", err)
		}
	}
}

// unraisedAlerts is a ledger with alerts not raised, and the position of
// its last.
type unraisedAlerts struct {
	ledger string
	last   int64
}

// ledgersWithUnraisedAlerts lists the active ledgers whose alerts read
// model holds an alert not raised and has reached the ledger's head or
// stopped at a fault, at most commands.LedgersMaxDefault (a rebuild's
// shadow, keyed by no ledger's name, is none). Catching up, an alert's
// AlertRaised may be in the log and not projected yet: its writer is not
// started for that. Stopped at a fault, it would wait for an operator: the
// writer is started, once, for what the projection wrote before it.
func (m *Main) ledgersWithUnraisedAlerts(ctx context.Context) ([]unraisedAlerts, error) {
	rows, err := m.readPool.Query(ctx, `SELECT a.ledger, max(a.position) FROM alerts a
		JOIN ledgers l ON l.ledger = a.ledger
		JOIN ledger_heads h ON h.ledger = a.ledger
		JOIN projection_checkpoints c ON c.ledger = a.ledger AND c.projection = 'alerts'
		WHERE a.raised IS NULL AND l.status = 'active' AND (c.position >= h.position OR c.fault IS NOT NULL)
		GROUP BY a.ledger ORDER BY a.ledger LIMIT $1`, commands.LedgersMaxDefault)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (unraisedAlerts, error) {
		var u unraisedAlerts
		return u, row.Scan(&u.ledger, &u.last)
	})
}

// runSweeps sweeps every ledgerSweepEvery until ctx ends.
func (m *Main) runSweeps(ctx context.Context) {
	t := time.NewTicker(ledgerSweepEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			m.sweepLedgers(ctx)
		case <-ctx.Done():
			return
		}
	}
}

// ledgersWithTimedHolds lists the active ledgers whose transfers read model
// holds a pending transfer with a timeout, at most commands.LedgersMaxDefault.
func (m *Main) ledgersWithTimedHolds(ctx context.Context) ([]string, error) {
	rows, err := m.readPool.Query(ctx, `SELECT l.ledger FROM ledgers l
		WHERE l.status = 'active' AND EXISTS (SELECT 1 FROM transfers t
			WHERE t.ledger_no = (SELECT tl.ledger_no FROM transfer_ledgers tl WHERE tl.ledger = l.ledger)
				AND t.status = 'pending' AND t.expires_at IS NOT NULL)
		ORDER BY l.ledger LIMIT $1`, commands.LedgersMaxDefault)
	if err != nil {
		return nil, err
	}
	return collectNames(rows)
}

// behindSQL selects the ledgers (active or archived, from $2 on) one of whose
// projections ($1) has not reached the head, at most $3.
const behindSQL = `SELECT h.ledger FROM ledger_heads h JOIN ledgers l USING (ledger)
	WHERE l.status <> 'importing' AND h.position > 0 AND h.ledger >= $2
	  AND (SELECT count(*) FROM projection_checkpoints c
	       WHERE c.ledger = h.ledger AND c.projection = ANY($1) AND c.position >= h.position) < cardinality($1::text[])
	ORDER BY h.ledger LIMIT $3`

// ledgersBehind lists the ledgers whose projections are behind their head,
// at most commands.LedgersMaxDefault.
func (m *Main) ledgersBehind(ctx context.Context) ([]string, error) {
	rows, err := m.readPool.Query(ctx, behindSQL, projectionNames(), "", commands.LedgersMaxDefault)
	if err != nil {
		return nil, err
	}
	return collectNames(rows)
}

// behind reports whether the ledger exists and one of its projections has
// not reached its head.
func (m *Main) behind(ctx context.Context, ledger string) (bool, error) {
	rows, err := m.readPool.Query(ctx, behindSQL, projectionNames(), ledger, 1)
	if err != nil {
		return false, err
	}
	names, err := collectNames(rows)
	return len(names) == 1 && names[0] == ledger, err
}

func projectionNames() []string {
	names := make([]string, 0, 8)
	for _, p := range projections.All() {
		names = append(names, p.Name())
	}
	return names
}

type nameRows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

func collectNames(rows nameRows) ([]string, error) {
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// quietMax bounds the ledgers remembered as caught up (Main.quiet), and as
// projected elsewhere (Main.elsewhere).
const quietMax = 4096

// wakeReaders is catchUpReaders for a query waiting on a ledger whose
// projectors do not run here: if the ledger exists (a query may name any)
// and its projections are behind, on a goroutine of its own, at most one per
// ledger at a time.
func (m *Main) wakeReaders(ledger string) {
	if !m.roles.Projector || m.draining.Load() {
		return // the query polls the checkpoint: another node projects
	}
	m.mu.Lock()
	// Found caught up, or its projector lease held elsewhere, less than
	// leaseRetryAfter ago: not looked up again, whether an append or a
	// query's min_position asks (one look-up a ledger a second at most).
	recent := time.Since(m.elsewhere[ledger]) < leaseRetryAfter || time.Since(m.quiet[ledger]) < leaseRetryAfter
	if _, running := m.readers[ledger]; running || recent || m.waking[ledger] || len(m.waking) >= commands.LedgersMaxDefault {
		m.mu.Unlock()
		return
	}
	m.waking[ledger] = true
	m.mu.Unlock()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer func() { m.mu.Lock(); delete(m.waking, ledger); m.mu.Unlock() }()
		ctx, cancel := context.WithTimeout(m.readersCtx, ledgerSweepTimeout)
		defer cancel()
		behind, err := m.behind(ctx, ledger)
		if err == nil && !behind {
			// Caught up: another node projects it (or nothing moved). The
			// appends it announces are not checked again for a while: one
			// look-up a ledger a second at most, not one an append.
			m.mu.Lock()
			if len(m.quiet) >= quietMax {
				clear(m.quiet)
			}
			m.quiet[ledger] = time.Now()
			m.mu.Unlock()
		}
		if err != nil || !behind {
			return // unknown, caught up, or the database is away (the sweep will see)
		}
		m.catchUpReaders(ledger)
	}()
}
