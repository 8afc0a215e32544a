package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The naive ledger is the baseline the product's promise is measured
// against: what a team writes first on PostgreSQL. Per transfer, one
// transaction at the default isolation (read committed) with
// synchronous_commit on: lock both account rows in a fixed order (so that
// no two transfers deadlock), update both balances, insert the entry, commit.
// Hot accounts serialize on their row lock: that is the point of comparing.
const (
	// naiveConnsMax bounds the naive ledger's connections: PostgreSQL's
	// max_connections is 100 by default (200 in ledgerd's private cluster,
	// where ledgerd holds up to 32), and past the cores, connections only
	// add contention. Workers beyond it wait for a connection, as an
	// application's requests wait for its pool.
	naiveConnsMax = 64
	// naiveSetupTimeout bounds creating the database, the tables and the
	// accounts, and each verification query.
	naiveSetupTimeout = 5 * time.Minute
	// naiveCallTimeout bounds one transfer's transaction, pool wait included.
	naiveCallTimeout = 60 * time.Second
)

// naiveSchema is the naive ledger's whole schema.
const naiveSchema = `
DROP TABLE IF EXISTS entries, accounts;
CREATE TABLE accounts (id text PRIMARY KEY, balance bigint NOT NULL);
CREATE TABLE entries (id bigserial PRIMARY KEY, debit text, credit text, amount bigint, created_at timestamptz DEFAULT now());
`

// ErrNotNaiveDatabase means the baseline URL names a database holding
// tables other than the naive ledger's: ledgerd's own, say. Its tables
// would be dropped, so it is refused.
var ErrNotNaiveDatabase = errors.New("database holds tables other than the naive ledger's")

// NaiveReport is the naive ledger's run.
type NaiveReport struct {
	Database string `json:"database"`
	// Transfers were sent; Committed were acknowledged (their COMMIT returned).
	Transfers   int64 `json:"transfers"`
	Committed   int64 `json:"committed"`
	Concurrency int   `json:"concurrency"`
	Conns       int   `json:"conns"`
	// DurationSeconds runs from the first transfer sent to the last answered.
	DurationSeconds    float64        `json:"duration_seconds"`
	TransfersPerSecond float64        `json:"transfers_per_second"`
	LatencyMs          LatencySummary `json:"latency_ms"`
	Errors             int64          `json:"errors"`
	ErrorSample        string         `json:"error_sample,omitempty"`
	CPU                *CPUWindow     `json:"cpu,omitempty"`
	// RatioAcked is the ledger's acknowledged rate over the naive rate;
	// RatioSustained its rate with every read model current over it.
	RatioAcked     float64 `json:"ratio_acked"`
	RatioSustained float64 `json:"ratio_sustained"`
	Checks         []Check `json:"checks"`
}

// naiveWorker sends naive transfers, one transaction each. The picks and
// amounts come from a ledger worker of the same number and seed: the same
// random sequence as the ledger run's worker.
type naiveWorker struct {
	picks     *worker
	latencies []time.Duration
	committed int64
	// committedMinor sums the committed amounts.
	committedMinor int64
	errors         int64
	errorSample    string
}

// runNaive sets up the naive ledger in cfg.BaselinePostgresURL's database,
// sends cfg.BaselineTransfers transfers from cfg.Concurrency workers, and
// verifies it. meter, when not nil, measures the CPU time of the run.
//
// Errors: ErrNotNaiveDatabase; a connection, DDL or setup error. Failed
// transfers and checks do not make an error: they fail checks.
func runNaive(ctx context.Context, cfg *Config, meter *cpuMeter) (*NaiveReport, error) {
	pool, err := openNaive(ctx, cfg.BaselinePostgresURL, min(cfg.Concurrency, naiveConnsMax))
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	r := &NaiveReport{Database: pool.Config().ConnConfig.Database, Concurrency: cfg.Concurrency, Conns: int(pool.Config().MaxConns)}
	fmt.Fprintf(cfg.Progress, "naive baseline: database %s, %d accounts, %d transfers, %d workers on %d connections\n",
		r.Database, cfg.Accounts, cfg.BaselineTransfers, r.Concurrency, r.Conns)
	if err := naiveSetup(ctx, pool, cfg.Accounts); err != nil {
		return nil, err
	}

	workers := make([]*naiveWorker, cfg.Concurrency)
	for i := range workers {
		workers[i] = &naiveWorker{picks: newWorker(i, cfg, nil)}
	}
	var before cpuSample
	if meter != nil {
		if before, err = meter.sample(); err != nil {
			return nil, err
		}
	}
	var remaining, failed atomic.Int64
	remaining.Store(int64(cfg.BaselineTransfers))
	runCtx, abort := context.WithCancel(ctx)
	defer abort()
	var wg sync.WaitGroup
	start := cfg.Now()
	for _, w := range workers {
		wg.Go(func() { w.run(runCtx, cfg, pool, &remaining, &failed, abort) })
	}
	wg.Wait()
	elapsed := cfg.Now().Sub(start)
	if meter != nil {
		after, err := meter.sample()
		if err != nil {
			return nil, err
		}
		r.CPU = meter.window(before, after, int64(cfg.BaselineTransfers))
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("naive transfers: %w", err)
	}
	var latencies []time.Duration
	var committedMinor int64
	for _, w := range workers {
		latencies = append(latencies, w.latencies...)
		r.Committed += w.committed
		committedMinor += w.committedMinor
		r.Errors += w.errors
		if r.ErrorSample == "" {
			r.ErrorSample = w.errorSample
		}
	}
	r.Transfers = r.Committed + r.Errors
	r.DurationSeconds = elapsed.Seconds()
	if elapsed > 0 {
		r.TransfersPerSecond = float64(r.Committed) / elapsed.Seconds()
	}
	r.LatencyMs = summarize(latencies)
	r.check("every naive transfer committed", r.Errors == 0 && r.Committed == int64(cfg.BaselineTransfers),
		fmt.Sprintf("%d committed of %d, %d failed %s", r.Committed, cfg.BaselineTransfers, r.Errors, r.ErrorSample))
	r.verify(ctx, pool, cfg.Accounts, committedMinor)
	return r, nil
}

// run sends transfers until none remain or the run is aborted. After
// callErrorsMax failures the run aborts: the numbers would mean nothing.
func (w *naiveWorker) run(ctx context.Context, cfg *Config, pool *pgxpool.Pool, remaining, failed *atomic.Int64, abort func()) {
	w.latencies = make([]time.Duration, 0, cfg.BaselineTransfers/cfg.Concurrency+1)
	for ctx.Err() == nil && remaining.Add(-1) >= 0 {
		debit, credit := w.picks.pickAccounts()
		amount := w.picks.pickAmount()
		t0 := cfg.Now()
		err := naiveTransfer(ctx, pool, accountID(debit), accountID(credit), amount)
		t1 := cfg.Now()
		if err != nil {
			w.errors++
			if w.errorSample == "" {
				w.errorSample = err.Error()
			}
			if failed.Add(1) >= callErrorsMax {
				abort()
			}
			continue
		}
		w.latencies = append(w.latencies, t1.Sub(t0))
		w.committed++
		w.committedMinor += amount
	}
}

// naiveTransfer moves amount from debit to credit in one transaction.
//
// Errors: any statement's or the commit's (the transfer is then not known
// to be applied or not).
func naiveTransfer(ctx context.Context, pool *pgxpool.Pool, debit, credit string, amount int64) error {
	ctx, cancel := context.WithTimeout(ctx, naiveCallTimeout)
	defer cancel()
	first, second := debit, credit
	if second < first {
		first, second = second, first
	}
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		for _, id := range []string{first, second} {
			var balance int64
			if err := tx.QueryRow(ctx, `SELECT balance FROM accounts WHERE id = $1 FOR UPDATE`, id).Scan(&balance); err != nil {
				return fmt.Errorf("lock %s: %w", id, err)
			}
		}
		if _, err := tx.Exec(ctx, `UPDATE accounts SET balance = balance - $2 WHERE id = $1`, debit, amount); err != nil {
			return fmt.Errorf("debit %s: %w", debit, err)
		}
		if _, err := tx.Exec(ctx, `UPDATE accounts SET balance = balance + $2 WHERE id = $1`, credit, amount); err != nil {
			return fmt.Errorf("credit %s: %w", credit, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO entries (debit, credit, amount) VALUES ($1, $2, $3)`, debit, credit, amount); err != nil {
			return fmt.Errorf("entry: %w", err)
		}
		return nil
	})
}

// openNaive creates the URL's database when it is missing and returns a
// pool of conns connections to it, each with synchronous_commit on whatever
// the server's default.
//
// Errors: a URL, connection or CREATE DATABASE error.
func openNaive(ctx context.Context, rawURL string, conns int) (*pgxpool.Pool, error) {
	pcfg, err := pgxpool.ParseConfig(rawURL)
	if err != nil {
		// pgx's parse errors may quote the URL, password included.
		return nil, errors.New("-baseline-postgres-url: not a PostgreSQL URL")
	}
	pcfg.MaxConns, pcfg.MinConns = int32(conns), 0
	pcfg.ConnConfig.RuntimeParams["synchronous_commit"] = "on"
	pcfg.ConnConfig.RuntimeParams["application_name"] = "ledgerbench-naive"
	ctx, cancel := context.WithTimeout(ctx, naiveSetupTimeout)
	defer cancel()
	if err := ensureDatabase(ctx, pcfg.ConnConfig); err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("naive ledger database %s: %w", pcfg.ConnConfig.Database, err)
	}
	if err := openAll(ctx, pool, conns); err != nil {
		pool.Close()
		return nil, fmt.Errorf("naive ledger database %s: %w", pcfg.ConnConfig.Database, err)
	}
	return pool, nil
}

// openAll opens the pool's n connections before the run: a backend's start
// (a fork, its catalog caches) is not what the baseline measures, and the
// ledger's connections were open before its run too.
//
// Errors: a connection's.
func openAll(ctx context.Context, pool *pgxpool.Pool, n int) error {
	held := make([]*pgxpool.Conn, 0, n)
	defer func() {
		for _, c := range held {
			c.Release()
		}
	}()
	for range n {
		c, err := pool.Acquire(ctx)
		if err != nil {
			return err
		}
		held = append(held, c)
	}
	return nil
}

// ensureDatabase creates cc's database, connected to the server's postgres
// database, unless it exists.
//
// Errors: a connection, query or CREATE DATABASE error.
func ensureDatabase(ctx context.Context, cc *pgx.ConnConfig) error {
	admin := cc.Copy()
	admin.Database = "postgres"
	conn, err := pgx.ConnectConfig(ctx, admin)
	if err != nil {
		return fmt.Errorf("connect to create database %s: %w", cc.Database, err)
	}
	defer conn.Close(context.Background())
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, cc.Database).Scan(&exists); err != nil {
		return fmt.Errorf("look up database %s: %w", cc.Database, err)
	}
	if exists {
		return nil
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{cc.Database}.Sanitize()); err != nil {
		return fmt.Errorf("create database %s: %w", cc.Database, err)
	}
	return nil
}

// naiveSetup refuses a database that is not the naive ledger's, then
// recreates its tables with the accounts acc-0..acc-<accounts-1> at 0.
//
// Errors: ErrNotNaiveDatabase; a statement's error.
func naiveSetup(ctx context.Context, pool *pgxpool.Pool, accounts int) error {
	ctx, cancel := context.WithTimeout(ctx, naiveSetupTimeout)
	defer cancel()
	var others []string
	rows, err := pool.Query(ctx, `SELECT schemaname || '.' || tablename FROM pg_tables
		WHERE schemaname NOT IN ('pg_catalog', 'information_schema')
		AND NOT (schemaname = 'public' AND tablename IN ('accounts', 'entries')) ORDER BY 1 LIMIT 5`)
	if err == nil {
		others, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if err != nil {
		return fmt.Errorf("list tables: %w", err)
	}
	if len(others) > 0 {
		return fmt.Errorf("naive ledger database %s has %v: %w", pool.Config().ConnConfig.Database, others, ErrNotNaiveDatabase)
	}
	if _, err := pool.Exec(ctx, naiveSchema); err != nil {
		return fmt.Errorf("naive ledger schema: %w", err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO accounts (id, balance) SELECT 'acc-' || g, 0 FROM generate_series(0, $1::int - 1) g`, accounts); err != nil {
		return fmt.Errorf("naive ledger accounts: %w", err)
	}
	if _, err := pool.Exec(ctx, `ANALYZE accounts`); err != nil {
		return fmt.Errorf("analyze accounts: %w", err)
	}
	return nil
}

// verify checks that no money was made or lost: balances sum to zero,
// every committed transfer has its entry, and each balance is what its
// entries say.
func (r *NaiveReport) verify(ctx context.Context, pool *pgxpool.Pool, accounts int, committedMinor int64) {
	ctx, cancel := context.WithTimeout(ctx, naiveSetupTimeout)
	defer cancel()
	var sum, n int64
	err := pool.QueryRow(ctx, `SELECT coalesce(sum(balance), 0)::bigint, count(*) FROM accounts`).Scan(&sum, &n)
	r.check("naive balances sum to zero", err == nil && sum == 0 && n == int64(accounts),
		fmt.Sprintf("Σ balance %d over %d accounts (want 0 over %d) %v", sum, n, accounts, errText(err)))
	var entries, amounts int64
	err = pool.QueryRow(ctx, `SELECT count(*), coalesce(sum(amount), 0)::bigint FROM entries`).Scan(&entries, &amounts)
	r.check("naive entries == committed", err == nil && entries == r.Committed && amounts == committedMinor,
		fmt.Sprintf("%d entries of Σ %d minor units, %d committed of Σ %d %v", entries, amounts, r.Committed, committedMinor, errText(err)))
	var wrong int64
	err = pool.QueryRow(ctx, `SELECT count(*) FROM accounts a LEFT JOIN (
			SELECT id, sum(delta) AS net FROM (
				SELECT credit AS id, amount AS delta FROM entries UNION ALL SELECT debit, -amount FROM entries) m
			GROUP BY id) n USING (id)
		WHERE a.balance <> coalesce(n.net, 0)`).Scan(&wrong)
	r.check("naive balances == entries", err == nil && wrong == 0,
		fmt.Sprintf("%d accounts whose balance differs from their entries %v", wrong, errText(err)))
}

// check records a check of the naive run.
func (r *NaiveReport) check(name string, pass bool, detail string) {
	r.Checks = append(r.Checks, Check{Name: name, Pass: pass, Detail: detail})
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return "(" + err.Error() + ")"
}
