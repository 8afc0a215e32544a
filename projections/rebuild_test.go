package projections_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/internal/testenv"
	"github.com/ledgerd/ledger/projections"
	"github.com/ledgerd/ledger/projections/projectortest"
)

// rebuildWrites is how many transfers each submit of the background writer
// carries.
const rebuildWrites = 10

// writeUntil submits transfers of USD between the workload's accounts until
// stop is closed; the returned func waits for it to end.
func (e *env) writeUntil(stop <-chan struct{}) (wait func()) {
	var wg sync.WaitGroup
	wg.Go(func() {
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			cmds := make([]domain.Command, rebuildWrites)
			for i := range cmds {
				id := n*rebuildWrites + i
				cmds[i] = &domain.CreateTransfer{ID: fmt.Sprintf("w-%d", id), Reference: "bg",
					Postings: []domain.PostingInput{{Debit: accountID("USD", id%accountsPerAsset),
						Credit: accountID("USD", (id+1)%accountsPerAsset), Asset: "USD", Amount: "1.25"}}}
			}
			e.submit(cmds)
		}
	})
	return wg.Wait
}

// rows returns every row of proj's tables under ledger key, without the
// ledger column and the batch-dependent ones, in a stable order.
func (e *env) rows(proj projections.Projector, key string) map[string][]string {
	e.t.Helper()
	return projectortest.Rows(e.t, e.pool, proj, key, batchDependent)
}

// checkpointOf returns proj's checkpoint under key; 0 before any.
func (e *env) checkpointOf(proj projections.Projector, key string) uint64 {
	e.t.Helper()
	var pos int64
	err := e.pool.QueryRow(e.t.Context(), `SELECT position FROM projection_checkpoints
		WHERE ledger = $1 AND projection = $2`, key, proj.Name()).Scan(&pos)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0
	}
	testenv.NoError(e.t, err)
	return uint64(pos)
}

// checkBuiltNormally builds proj again from the log under a reference key
// and requires the live rows of e.ledger to equal it row by row, at the head.
func (e *env) checkBuiltNormally(proj projections.Projector, live *runningRunner) {
	t := e.t
	t.Helper()
	head, _, err := e.store.Head(t.Context(), e.ledger)
	testenv.NoError(t, err)
	waitFor(t, live, head)
	ref := projections.NewRunner(e.pool, e.ledger+"~ref", proj, projections.NewLogSource(e.store, e.ledger), testLogger(t))
	stop := start(t, t.Context(), "reference runner", ref.Run)
	waitFor(t, &runningRunner{Runner: ref}, head)
	stop()
	if got := e.checkpointOf(proj, e.ledger); got != head {
		t.Fatalf("live checkpoint %d after the rebuild, want the head %d", got, head)
	}
	// The checkpoint's hash is the log's at its position (the next record
	// must continue it).
	var hash []byte
	testenv.NoError(t, e.pool.QueryRow(t.Context(), `SELECT hash FROM projection_checkpoints
		WHERE ledger = $1 AND projection = $2`, e.ledger, proj.Name()).Scan(&hash))
	recs, err := e.store.Read(t.Context(), e.ledger, head, 1)
	testenv.NoError(t, err)
	if len(recs) != 1 || !bytes.Equal(hash, recs[0].Hash[:]) {
		t.Fatalf("live checkpoint's hash %x at %d, the log's is %x", hash, head, recs[0].Hash)
	}
	if diff := cmp.Diff(e.rows(proj, e.ledger+"~ref"), e.rows(proj, e.ledger)); diff != "" {
		t.Fatalf("%s rebuilt differs from a normal build (-normal +rebuilt):\n%s", proj.Name(), diff)
	}
	for table, rows := range e.rows(proj, e.ledger+projections.ShadowSuffix) {
		if len(rows) != 0 {
			t.Fatalf("%d shadow rows of %s left after the swap", len(rows), table)
		}
	}
	e.checkNoOrphanLines()
}

// checkNoOrphanLines requires every statement line and transfer to belong
// to a ledger key's number and every head to carry its key's number
// (projections 0023, 0024):
// a swap retires the number it replaces (its rows stay under the retired
// row until the sweep), and a projector never writes under a retired one.
func (e *env) checkNoOrphanLines() {
	e.t.Helper()
	var orphans, strays, transfers int
	testenv.NoError(e.t, e.pool.QueryRow(e.t.Context(), `SELECT
		(SELECT count(*) FROM movements m WHERE NOT EXISTS (SELECT 1 FROM movement_ledgers l WHERE l.ledger_no = m.ledger_no)),
		(SELECT count(*) FROM movement_heads h LEFT JOIN movement_ledgers l ON l.ledger = h.ledger
			WHERE l.ledger_no IS DISTINCT FROM h.ledger_no),
		(SELECT count(*) FROM transfers t WHERE NOT EXISTS (SELECT 1 FROM transfer_ledgers l WHERE l.ledger_no = t.ledger_no))`).
		Scan(&orphans, &strays, &transfers))
	if orphans != 0 || strays != 0 || transfers != 0 {
		e.t.Fatalf("%d statement lines of no ledger key, %d heads under another number than their key's, %d transfers of no ledger key",
			orphans, strays, transfers)
	}
}

// queryUntil reads proj's first table for e.ledger until stop, counting
// failures; for balances (the trial balance's lines) and movements (the sums
// of the accounts' last statement lines, per asset) it also requires every
// asset's debits to equal its credits, which a mix of the old and the new
// model would break, and for transfers that their count never falls.
func (e *env) queryUntil(proj projections.Projector, stop <-chan struct{}) (wait func() (queries, failures int64)) {
	var n, failed atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		var seen int64 // transfers rows
		for {
			select {
			case <-stop:
				return
			default:
			}
			n.Add(1)
			var unbalanced int64
			var err error
			switch proj.(type) {
			case projections.Balances:
				err = e.pool.QueryRow(e.t.Context(), `SELECT count(*) FROM trial_balances WHERE ledger = $1
					AND (debits_posted <> credits_posted OR debits_pending <> credits_pending)`, e.ledger).Scan(&unbalanced)
			case *projections.Movements:
				err = e.pool.QueryRow(e.t.Context(), `SELECT count(*) FROM (SELECT h.asset FROM movement_heads h
					JOIN LATERAL (SELECT m.debits_posted, m.credits_posted, m.debits_pending, m.credits_pending
						FROM movements m WHERE m.ledger_no = h.ledger_no AND m.account_no = h.opened_position
						ORDER BY m.position DESC, m.seq DESC LIMIT 1) l ON true
					WHERE h.ledger = $1 GROUP BY h.asset
					HAVING sum(l.debits_posted) <> sum(l.credits_posted) OR sum(l.debits_pending) <> sum(l.credits_pending)) u`,
					e.ledger).Scan(&unbalanced)
			case projections.Transfers:
				// The rows only grow: neither the old model nor the new
				// one, nor the swap between them, shows fewer.
				var rows int64
				err = e.pool.QueryRow(e.t.Context(), `SELECT count(*) FROM transfers
					WHERE ledger_no = (SELECT ledger_no FROM transfer_ledgers WHERE ledger = $1)`, e.ledger).Scan(&rows)
				if rows < seen {
					unbalanced = 1
				}
				seen = max(seen, rows)
			default:
				err = e.pool.QueryRow(e.t.Context(), `SELECT count(*) - count(*) FROM `+
					pgx.Identifier{proj.Tables()[0]}.Sanitize()+` WHERE ledger = $1`, e.ledger).Scan(&unbalanced)
			}
			if err != nil || unbalanced != 0 {
				e.t.Errorf("query during the rebuild: %v, %d unbalanced assets", err, unbalanced)
				failed.Add(1)
			}
		}
	})
	return func() (int64, int64) { wg.Wait(); return n.Load(), failed.Load() }
}

func TestRebuildDuringWritesAndQueries(t *testing.T) {
	t.Parallel()
	for _, proj := range projections.All() {
		t.Run(proj.Name(), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.runWorkload(600, 7)
			live := e.startRunner(t.Context(), proj, e.natsSource())

			stop := make(chan struct{})
			waitWrites := e.writeUntil(stop)
			waitQueries := e.queryUntil(proj, stop)
			var reports []projections.Progress
			at, err := projections.NewRebuild(e.pool, e.store, e.ledger, proj, testLogger(t)).Run(t.Context(),
				func(p projections.Progress) { reports = append(reports, p) })
			close(stop)
			waitWrites()
			queries, failures := waitQueries()
			testenv.NoError(t, err)
			if failures != 0 || queries == 0 {
				t.Fatalf("%d of %d queries failed during the rebuild", failures, queries)
			}
			if last := reports[len(reports)-1]; !last.Done || last.SwappedAt != at || at == 0 {
				t.Fatalf("last progress %+v, rebuild returned %d", last, at)
			}
			// A report of work done has a rate: the rate counts from the
			// start, including the first tick's work.
			for _, p := range reports {
				if !p.Done && p.Position > 0 && p.EventsPerSecond <= 0 {
					t.Fatalf("progress %+v: at position %d, no rate", p, p.Position)
				}
			}
			e.checkBuiltNormally(proj, live)
		})
	}
}

func TestRebuildResumesFromShadowCheckpoint(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.runWorkload(3000, 11)
	proj := projections.NewMovements()
	live := e.startRunner(t.Context(), proj, e.natsSource())

	ctx, cancel := context.WithCancel(t.Context())
	_, err := projections.NewRebuild(e.pool, e.store, e.ledger, proj, testLogger(t)).Run(ctx,
		func(p projections.Progress) {
			if p.Position > 0 {
				cancel()
			}
		})
	cancel()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted rebuild returned %v, want %v", err, context.Canceled)
	}
	interrupted := e.checkpointOf(proj, e.ledger+projections.ShadowSuffix)
	if interrupted == 0 {
		t.Fatal("no shadow checkpoint after the interrupted rebuild")
	}

	var first *projections.Progress
	_, err = projections.NewRebuild(e.pool, e.store, e.ledger, proj, testLogger(t)).Run(t.Context(),
		func(p projections.Progress) {
			if first == nil {
				first = &p
			}
		})
	testenv.NoError(t, err)
	if first == nil || first.Position < interrupted {
		t.Fatalf("resumed rebuild first stood at %+v, want from the shadow checkpoint %d on", first, interrupted)
	}
	e.checkBuiltNormally(proj, live)
}

// TestRebuildBringsAProjectionAheadOfTheLogBack: a live projection whose
// checkpoint is past the log's head (it applied events from a stream ahead
// of a restored database) and whose rows are not the log's is rebuilt to the
// log's head, rows and checkpoint, and its runner goes on from there.
func TestRebuildBringsAProjectionAheadOfTheLogBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	head := e.runWorkload(200, 13)
	proj := projections.Balances{}
	live := e.startRunner(t.Context(), proj, e.natsSource())
	waitFor(t, live, head)
	live.stop()
	for _, sql := range []string{
		`UPDATE projection_checkpoints SET position = position + 7 WHERE ledger = $1 AND projection = 'balances'`,
		`UPDATE trial_balances SET debits_posted = debits_posted + 1000000 WHERE ledger = $1`,
		`UPDATE trial_accounts SET closed = NOT closed WHERE ledger = $1`,
	} {
		_, err := e.pool.Exec(t.Context(), sql, e.ledger)
		testenv.NoError(t, err)
	}

	at, err := projections.NewRebuild(e.pool, e.store, e.ledger, proj, testLogger(t)).Run(t.Context(), func(projections.Progress) {})
	testenv.NoError(t, err)
	if at != head {
		t.Fatalf("swapped at %d, want the log's head %d", at, head)
	}
	e.checkBuiltNormally(proj, e.startRunner(t.Context(), proj, e.natsSource()))
}

// rewriteEvent rewrites the command id of the ledger's event at pos in
// PostgreSQL, past the append-only trigger: its hash no longer matches it.
func (e *env) rewriteEvent(pos uint64) {
	e.t.Helper()
	testenv.NoError(e.t, pgx.BeginFunc(e.t.Context(), e.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(e.t.Context(), `SET LOCAL session_replication_role = replica`); err != nil {
			return err
		}
		_, err := tx.Exec(e.t.Context(), `UPDATE events SET command_id = command_id || '-rewritten' WHERE ledger = $1 AND position = $2`,
			e.ledger, pos)
		return err
	}))
}

// rebuildOverARewrittenEvent rebuilds proj after the event at pos was
// rewritten; it wants ErrChainBroken with reason, and the live projection
// as it was.
func (e *env) rebuildOverARewrittenEvent(proj projections.Projector, pos uint64, reason string) {
	t := e.t
	t.Helper()
	head := e.checkpointOf(proj, e.ledger)
	before := e.rows(proj, e.ledger)
	e.rewriteEvent(pos)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	at, err := projections.NewRebuild(e.pool, e.store, e.ledger, proj, testLogger(t)).Run(ctx, func(projections.Progress) {})
	if !errors.Is(err, projections.ErrChainBroken) || !strings.Contains(err.Error(), reason) {
		t.Fatalf("a rebuild over the event at %d rewritten: swapped at %d, %v; want ErrChainBroken, %q", pos, at, err, reason)
	}
	if now := e.checkpointOf(proj, e.ledger); now != head {
		t.Errorf("live checkpoint at %d after the failed rebuild, want %d", now, head)
	}
	if diff := cmp.Diff(before, e.rows(proj, e.ledger)); diff != "" {
		t.Errorf("live rows changed by the failed rebuild (-before +after):\n%s", diff)
	}
}

// TestRebuildStopsOnARewrittenEvent: a rebuild whose shadow runner refuses
// an event of the log (its hash does not match it) fails, instead of
// waiting for ever for the shadow to get past it.
func TestRebuildStopsOnARewrittenEvent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	head := e.runWorkload(200, 17)
	proj := projections.Balances{}
	live := e.startRunner(t.Context(), proj, e.natsSource())
	waitFor(t, live, head)
	live.stop()
	e.rebuildOverARewrittenEvent(proj, head, "the shadow stopped at 0")
	// Once the log is repaired, a rebuild runs again: the fault the failed
	// run's shadow recorded is not taken for this run's.
	testenv.NoError(t, pgx.BeginFunc(t.Context(), e.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(t.Context(), `SET LOCAL session_replication_role = replica`); err != nil {
			return err
		}
		_, err := tx.Exec(t.Context(), `UPDATE events SET command_id = left(command_id, -length('-rewritten')) WHERE ledger = $1 AND position = $2`,
			e.ledger, head)
		return err
	}))
	// The shadow runner's first batch waits (its tables locked), as a large
	// one takes a while: the fault of the run before must not be read as
	// this run's meanwhile.
	lock, err := e.pool.Begin(t.Context())
	testenv.NoError(t, err)
	for _, table := range proj.Tables() {
		_, err := lock.Exec(t.Context(), `LOCK TABLE `+pgx.Identifier{table}.Sanitize()+` IN SHARE MODE`)
		testenv.NoError(t, err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	_, _ = projections.NewRebuild(e.pool, e.store, e.ledger, proj, testLogger(t)).Run(ctx, func(projections.Progress) { cancel() })
	cancel()
	testenv.NoError(t, lock.Rollback(t.Context()))
	var fault *string
	testenv.NoError(t, e.pool.QueryRow(t.Context(), `SELECT fault FROM projection_checkpoints WHERE ledger = $1 AND projection = $2`,
		e.ledger+projections.ShadowSuffix, proj.Name()).Scan(&fault))
	if fault != nil {
		t.Errorf("the shadow's fault once a rebuild began again: %q, want none (the run before recorded it)", *fault)
	}
	at, err := projections.NewRebuild(e.pool, e.store, e.ledger, proj, testLogger(t)).Run(t.Context(), func(projections.Progress) {})
	if err != nil || at != head {
		t.Fatalf("a rebuild once the log is repaired: swapped at %d, %v; want %d", at, err, head)
	}
}

// TestRebuildSwapChecksTheChain: the stretch a swap applies itself, past
// where the shadow runner stopped, is checked as the runner checks what it
// applies: an event there whose hash does not match it fails the swap.
func TestRebuildSwapChecksTheChain(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	first := e.runWorkload(200, 17)
	proj := projections.Balances{}
	e.buildTo(proj, e.ledger+projections.ShadowSuffix, first) // a rebuild interrupted at first
	stop := make(chan struct{})
	wait := e.writeUntil(stop)
	time.Sleep(100 * time.Millisecond)
	close(stop)
	wait()
	head, _, err := e.store.Head(t.Context(), e.ledger)
	testenv.NoError(t, err)
	if head == first {
		t.Fatal("nothing written past the shadow")
	}
	live := e.startRunner(t.Context(), proj, e.natsSource())
	waitFor(t, live, head)
	live.stop()
	// The shadow runner refuses the batch that holds it and stays at
	// first, within reach of the live checkpoint: the swap applies the
	// stretch itself.
	e.rebuildOverARewrittenEvent(proj, head, "swap: ")
}

// TestSweepRetired: a retired number's rows are deleted once however many
// sweeps run at once, a number another sweep holds is skipped rather than
// waited for, and the live rows stay.
func TestSweepRetired(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	e := newEnv(t)
	head := e.runWorkload(20, 13)
	old, live := e.ledger+"~old", e.ledger
	e.buildTo(projections.NewMovements(), old, head)
	e.buildTo(projections.NewMovements(), live, head)
	var lines, liveLines int64
	testenv.NoError(t, e.pool.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM movements WHERE ledger_no = (SELECT ledger_no FROM movement_ledgers WHERE ledger = $1)),
		(SELECT count(*) FROM movements WHERE ledger_no = (SELECT ledger_no FROM movement_ledgers WHERE ledger = $2))`,
		old, live).Scan(&lines, &liveLines))
	if lines == 0 || lines != liveLines {
		t.Fatalf("%d lines under %s and %d under %s, want the same, some", lines, old, liveLines, live)
	}
	var no int32
	testenv.NoError(t, e.pool.QueryRow(ctx, `UPDATE movement_ledgers SET ledger = $2 || ledger_no WHERE ledger = $1
		RETURNING ledger_no`, old, projections.RetiredPrefix).Scan(&no))

	// Held by another sweep: skipped at once, nothing deleted.
	held, err := e.pool.Begin(ctx)
	testenv.NoError(t, err)
	_, err = held.Exec(ctx, `SELECT 1 FROM movement_ledgers WHERE ledger_no = $1 FOR UPDATE`, no)
	testenv.NoError(t, err)
	n, err := projections.SweepRetired(ctx, e.pool)
	testenv.NoError(t, err)
	testenv.NoError(t, held.Rollback(ctx))
	if n != 0 {
		t.Fatalf("a sweep deleted %d rows of a number another one held, want 0", n)
	}

	// Two at once: each row once.
	var wg sync.WaitGroup
	var deleted atomic.Int64
	for range 2 {
		wg.Go(func() {
			n, err := projections.SweepRetired(ctx, e.pool)
			if err != nil {
				t.Errorf("sweep: %v", err)
			}
			deleted.Add(n)
		})
	}
	wg.Wait()
	var left, numbers, after int64
	testenv.NoError(t, e.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM movements WHERE ledger_no = $1),
		(SELECT count(*) FROM movement_ledgers WHERE ledger_no = $1),
		(SELECT count(*) FROM movements WHERE ledger_no = (SELECT ledger_no FROM movement_ledgers WHERE ledger = $2))`,
		no, live).Scan(&left, &numbers, &after))
	if deleted.Load() != lines || left != 0 || numbers != 0 || after != liveLines {
		t.Fatalf("two sweeps deleted %d of %d lines, %d left, the number's row %d times; the live %d of %d",
			deleted.Load(), lines, left, numbers, after, liveLines)
	}
}
