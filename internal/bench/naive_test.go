package bench

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ledgerd/ledger/internal/testenv"
)

// naiveConfig is a small naive run: few accounts, so that many transfers
// contend for the same rows.
func naiveConfig(url string, hot bool) *Config {
	return &Config{BaselinePostgresURL: url, Accounts: 8, Concurrency: 16, BaselineTransfers: 400, Hot: hot, Seed: 3,
		Now: time.Now, Progress: io.Discard}
}

func TestNaiveMovesMoneyUnderConcurrency(t *testing.T) {
	for _, hot := range []bool{false, true} {
		name := "uniform"
		if hot {
			name = "hot"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cfg := naiveConfig(testenv.PostgresURL(t), hot)
			r, err := runNaive(t.Context(), cfg, nil)
			testenv.NoError(t, err)
			if r.Committed != int64(cfg.BaselineTransfers) || r.Errors != 0 {
				t.Errorf("committed %d, %d errors (%s); want %d, 0", r.Committed, r.Errors, r.ErrorSample, cfg.BaselineTransfers)
			}
			if len(r.Checks) != 4 {
				t.Errorf("%d checks, want 4: %+v", len(r.Checks), r.Checks)
			}
			for _, c := range r.Checks {
				if !c.Pass {
					t.Errorf("check %s failed: %s", c.Name, c.Detail)
				}
			}
			if r.Conns != cfg.Concurrency || r.LatencyMs.Count != cfg.BaselineTransfers || r.TransfersPerSecond <= 0 {
				t.Errorf("conns %d, %d latencies, %.0f/s; want %d, %d, more than 0", r.Conns, r.LatencyMs.Count,
					r.TransfersPerSecond, cfg.Concurrency, cfg.BaselineTransfers)
			}
		})
	}
}

// TestNaiveVerifyCatchesLostMoney proves the checks can fail: money taken
// out of a balance, and an entry without its balance updates.
func TestNaiveVerifyCatchesLostMoney(t *testing.T) {
	t.Parallel()
	cfg := naiveConfig(testenv.PostgresURL(t), false)
	cfg.BaselineTransfers = 50
	r, err := runNaive(t.Context(), cfg, nil)
	testenv.NoError(t, err)
	conn, err := pgx.Connect(t.Context(), cfg.BaselinePostgresURL)
	testenv.NoError(t, err)
	defer conn.Close(context.Background())
	pool, err := openNaive(t.Context(), cfg.BaselinePostgresURL, 1)
	testenv.NoError(t, err)
	defer pool.Close()

	failed := func(r *NaiveReport) []string {
		var names []string
		for _, c := range r.Checks {
			if !c.Pass {
				names = append(names, c.Name)
			}
		}
		return names
	}
	_, err = conn.Exec(t.Context(), `UPDATE accounts SET balance = balance - 1 WHERE id = 'acc-0'`)
	testenv.NoError(t, err)
	again := &NaiveReport{Committed: r.Committed}
	again.verify(t.Context(), pool, cfg.Accounts, 0)
	if got := failed(again); len(got) != 3 {
		t.Errorf("after a balance lost 1 (and a wrong committed sum): failed %q, want all three", got)
	}
	_, err = conn.Exec(t.Context(), `UPDATE accounts SET balance = balance + 1 WHERE id = 'acc-0';
		INSERT INTO entries (debit, credit, amount) VALUES ('acc-1', 'acc-2', 5)`)
	testenv.NoError(t, err)
	again = &NaiveReport{Committed: r.Committed}
	var committedMinor int64
	testenv.NoError(t, conn.QueryRow(t.Context(), `SELECT sum(amount) FROM entries`).Scan(&committedMinor))
	again.verify(t.Context(), pool, cfg.Accounts, committedMinor)
	if got := failed(again); len(got) != 2 || got[0] != "naive entries == committed" || got[1] != "naive balances == entries" {
		t.Errorf("after an entry without its balances: failed %q, want the entries count and the balances against entries", got)
	}
}

func TestNaiveRefusesAnotherDatabase(t *testing.T) {
	t.Parallel()
	cfg := naiveConfig(testenv.MigratedPostgresURL(t), false)
	if _, err := runNaive(t.Context(), cfg, nil); !errors.Is(err, ErrNotNaiveDatabase) {
		t.Errorf("runNaive on ledgerd's schema: %v, want ErrNotNaiveDatabase", err)
	}
}

// TestNaiveCreatesItsDatabase names a database that does not exist yet on
// the test server, and measures PostgreSQL's CPU time when the server runs
// on this machine.
func TestNaiveCreatesItsDatabase(t *testing.T) {
	t.Parallel()
	raw := testenv.PostgresURL(t)
	u, err := url.Parse(raw)
	testenv.NoError(t, err)
	name := "ledgerbench_naive_" + strings.ToLower(rand.Text()[:12])
	u.Path = "/" + name
	admin, err := pgx.Connect(t.Context(), raw)
	testenv.NoError(t, err)
	// Cleanups run last first: the drop, then the close.
	t.Cleanup(func() { admin.Close(context.Background()) })
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("drop %s: %v", name, err)
		}
	})
	var backend int
	testenv.NoError(t, admin.QueryRow(t.Context(), `SELECT pg_backend_pid()`).Scan(&backend))

	cfg := naiveConfig(u.String(), false)
	var meter *cpuMeter
	if s, err := readProcStat("/proc", backend); err == nil {
		// The backend's parent is the postmaster.
		cfg.PostgresPID = s.ppid
		meter, err = newCPUMeter(cfg)
		testenv.NoError(t, err)
	} else {
		t.Logf("PostgreSQL is not on this machine (backend %d: %v): CPU not measured", backend, err)
	}
	r, err := runNaive(t.Context(), cfg, meter)
	testenv.NoError(t, err)
	if r.Database != name || r.Committed != int64(cfg.BaselineTransfers) {
		t.Errorf("database %s, %d committed; want %s, %d", r.Database, r.Committed, name, cfg.BaselineTransfers)
	}
	if meter != nil {
		pg, ok := r.CPU.Process(procPostgres)
		if !ok || pg.CPUSeconds <= 0 {
			t.Errorf("postgres CPU over %d transfers: %+v, %t; want some", r.Committed, pg, ok)
		}
	}
}
