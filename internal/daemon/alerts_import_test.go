package daemon_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/internal/testenv"
	"github.com/ledgerd/ledger/projections"
)

// TestImportIntoANewLedgerKeepsItsAlerts: a log imported under another
// name is sealed again under that name, and is then a ledger like any other
// (TestImportEventsIntoANewLedger: its verify is clean). Its AlertRaised
// events (and the writer's raise mark from them) keep alert ids that name
// the source ledger, while the copy's evaluator (its alerts projection,
// verify's replay) names alerts after the copy:
//   - audit verify of the copy diverges at the first AlertRaised;
//   - the copy's alerter raises again the alerts at the mark's position
//     (their new ids sort after the mark when the new name sorts after the
//     old one): one alert raised twice.
func TestImportIntoANewLedgerKeepsItsAlerts(t *testing.T) {
	t.Parallel()
	h := start(t)
	mon := h.monitoring(t)
	base := testenv.Name(t)
	suffix := base[len(base)-16:]
	source, target := "a"+suffix, "z"+suffix
	h.setup(t, source)
	big := &ledgerv1.Rule{Id: "big", Asset: "USD", Kind: &ledgerv1.Rule_Threshold{Threshold: &ledgerv1.ThresholdRule{Amount: "70.00",
		Side: ledgerv1.Side_SIDE_CREDIT}}}
	checkResults(t, "define", h.defineRules(t, mon, source, big), created(1)...)
	h.transferOK(t, source, transfer("fund", "alice", "bob", "100.00", "USD")) // big on bob
	h.transferOK(t, source, transfer("t1", "bob", "carol", "80.00", "USD"))    // big on carol
	testenv.Eventually(t, 30*time.Second, func() error {
		if n := len(h.raisedAlerts(t, source)); n != 2 {
			return fmt.Errorf("%d alerts raised in the source, want 2", n)
		}
		return nil
	})
	log := importExport(t, h.importStore(t), source)
	_, err := importStream(t, h.importClient(t), target, log, 8192)
	testenv.NoError(t, err)

	// The copy's writer runs: one more alert there.
	h.transferOK(t, target, transfer("t2", "alice", "carol", "90.00", "USD")) // big on carol
	testenv.Eventually(t, 30*time.Second, func() error {
		if n := len(h.raisedAlerts(t, target)); n < 3 {
			return fmt.Errorf("%d alerts raised in the copy, want 3", n)
		}
		return nil
	})
	time.Sleep(1500 * time.Millisecond) // an alerter round or more
	if raised := h.raisedAlerts(t, target); len(raised) != 3 {
		t.Errorf("the copy holds %d AlertRaised, want 3 (2 imported, 1 new):\n%s", len(raised), strings.Join(raised, "\n"))
	}
	if code, out, errOut := h.runCtl(t, target, "audit", "verify"); code != 0 || !strings.Contains(out, "clean") {
		t.Errorf("audit verify of the copy: exit %d\n%s%s", code, out, errOut)
	}
	// The copy's alerts read model has each alert raised, the imported
	// ones matched by their key: none is left for the writers' sweep.
	conn, err := pgx.Connect(ctx(t), h.pgURL)
	testenv.NoError(t, err)
	defer conn.Close(context.Background())
	testenv.Eventually(t, 30*time.Second, func() error {
		var all, unraised int
		if err := conn.QueryRow(ctx(t), `SELECT count(*), count(*) FILTER (WHERE raised IS NULL) FROM alerts WHERE ledger = $1`,
			target).Scan(&all, &unraised); err != nil {
			return err
		}
		if all != 3 || unraised != 0 {
			return fmt.Errorf("the copy's alerts: %d, %d not raised; want 3, none", all, unraised)
		}
		return nil
	})
	// So has migration projections 0031's fill from the log.
	_, err = conn.Exec(ctx(t), `UPDATE alerts SET raised = NULL WHERE ledger = $1`, target)
	testenv.NoError(t, err)
	_, err = conn.Exec(ctx(t), `DELETE FROM schema_migrations WHERE component = 'projections' AND name LIKE '%0031_alerts_raised.sql'`)
	testenv.NoError(t, err)
	pool, err := pgxpool.New(ctx(t), h.pgURL)
	testenv.NoError(t, err)
	defer pool.Close()
	testenv.NoError(t, projections.Migrate(ctx(t), pool))
	var unraised int
	testenv.NoError(t, conn.QueryRow(ctx(t), `SELECT count(*) FROM alerts WHERE ledger = $1 AND raised IS NULL`, target).Scan(&unraised))
	if unraised != 0 {
		t.Errorf("after 0031 again, %d of the copy's alerts not raised", unraised)
	}
}
