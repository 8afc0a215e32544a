package daemon_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ledgerd/ledger/internal/daemon"
	"github.com/ledgerd/ledger/internal/testenv"
	"github.com/ledgerd/ledger/projections"
)

// TestAlertRaisedWhenAProjectorNodeComputedItLate: the writer and projector
// roles on two nodes. An alert the projector node computes only after the
// ledger's writer went idle on the writer node (the alerts table locked
// until then) is raised without a command: the writer node's sweep finds
// it not raised (alerts.raised) and starts the writer, whose alerter
// raises it. Before, the writer's alerter had run its last round at once
// (no readers on its node to wait for) and the alert waited for the
// ledger's next command. Migration 0031 fills raised from the log.
func TestAlertRaisedWhenAProjectorNodeComputedItLate(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	w := startIdleNode(t, "", key, "w", daemon.Roles{Writer: true, Query: true})
	p := startIdleNode(t, w.pgURL, key, "p", daemon.Roles{Projector: true, Query: true})
	ledger := testenv.Name(t)
	w.setup(t, ledger)
	w.watchBigDebitsOfBob(t, ledger)

	release := holdAlertsBack(t, w.pgURL)
	alert := fmt.Sprintf("%s:%d:big:bob", ledger, w.transferOK(t, ledger, transfer("t1", "bob", "carol", "150.00", "USD")))
	series := fmt.Sprintf("ledger_writer_writing{ledger=%q}", ledger)
	testenv.Eventually(t, 30*time.Second, func() error {
		if strings.Contains(metricsText(t, w), series) {
			return fmt.Errorf("w still runs the writer of %s", ledger)
		}
		return nil
	})
	time.Sleep(5 * idleFor) // its alerter's last round is over
	if raised := w.raisedAlerts(t, ledger); len(raised) != 0 {
		t.Fatalf("alerts raised while the projection could not write them: %v", raised)
	}
	release()
	w.raisedOnce(t, ledger, alert)
	if strings.Contains(metricsText(t, p), series) {
		t.Errorf("p, without the writer role, runs the writer of %s", ledger)
	}

	// A read model projected before projections 0031 gets raised from the
	// log.
	pool, err := pgxpool.New(ctx(t), w.pgURL)
	testenv.NoError(t, err)
	defer pool.Close()
	var at int64
	testenv.Eventually(t, 30*time.Second, func() error {
		err := pool.QueryRow(ctx(t), `SELECT coalesce(raised, 0) FROM alerts WHERE ledger = $1 AND id = $2`, ledger, alert).Scan(&at)
		if err == nil && at == 0 {
			err = fmt.Errorf("alert %s: raised not set", alert)
		}
		return err
	})
	_, err = pool.Exec(ctx(t), `UPDATE alerts SET raised = NULL WHERE ledger = $1`, ledger)
	testenv.NoError(t, err)
	_, err = pool.Exec(ctx(t), `DELETE FROM schema_migrations WHERE component = 'projections' AND name LIKE '%0031_alerts_raised.sql'`)
	testenv.NoError(t, err)
	testenv.NoError(t, projections.Migrate(ctx(t), pool))
	var again int64
	testenv.NoError(t, pool.QueryRow(ctx(t), `SELECT coalesce(raised, 0) FROM alerts WHERE ledger = $1 AND id = $2`, ledger, alert).Scan(&again))
	if again != at {
		t.Errorf("alert %s raised at %d after 0031 again, want %d", alert, again, at)
	}
}

// TestAlertSweepLooksAtProjectionsCaughtUpOrStopped: the sweep takes an
// alert not raised for one to raise only where the alerts projection has
// reached the ledger's head (catching up, its AlertRaised may be in the log
// and not projected yet) or stopped at a fault (it would wait for an
// operator).
func TestAlertSweepLooksAtProjectionsCaughtUpOrStopped(t *testing.T) {
	t.Parallel()
	h := start(t)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	h.watchBigDebitsOfBob(t, ledger)
	alert := fmt.Sprintf("%s:%d:big:bob", ledger, h.transferOK(t, ledger, transfer("t1", "bob", "carol", "150.00", "USD")))
	h.raisedOnce(t, ledger, alert)
	pool, err := pgxpool.New(ctx(t), h.pgURL)
	testenv.NoError(t, err)
	defer pool.Close()
	testenv.Eventually(t, 30*time.Second, func() error {
		var raised bool
		err := pool.QueryRow(ctx(t), `SELECT a.raised IS NOT NULL AND c.position >= h.position FROM alerts a
			JOIN ledger_heads h ON h.ledger = a.ledger JOIN projection_checkpoints c ON c.ledger = a.ledger AND c.projection = 'alerts'
			WHERE a.ledger = $1 AND a.id = $2`, ledger, alert).Scan(&raised)
		if err == nil && !raised {
			err = fmt.Errorf("alert %s: not raised in the read model, or the projection not at the head yet", alert)
		}
		return err
	})
	listed := func(when string, want bool) {
		t.Helper()
		got, err := daemon.LedgersWithUnraisedAlerts(ctx(t), h.m)
		testenv.NoError(t, err)
		if slices.Contains(got, ledger) != want {
			t.Errorf("%s: ledgers with alerts to raise %v; want %s in them: %v", when, got, ledger, want)
		}
	}
	listed("every alert raised", false)
	exec := func(sql string) {
		t.Helper()
		_, err := pool.Exec(ctx(t), sql, ledger)
		testenv.NoError(t, err)
	}
	exec(`UPDATE alerts SET raised = NULL WHERE ledger = $1`)
	listed("an alert not raised, the projection at the head", true)
	exec(`UPDATE projection_checkpoints SET position = position - 1 WHERE ledger = $1 AND projection = 'alerts'`)
	listed("an alert not raised, the projection behind", false)
	exec(`UPDATE projection_checkpoints SET fault = 'test', fault_at = now() WHERE ledger = $1 AND projection = 'alerts'`)
	listed("an alert not raised, the projection stopped at a fault", true)
}
