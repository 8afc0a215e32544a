// Package projectortest is the contract every projections.Projector holds,
// run by each projector's tests against a log they write (as watermill's
// shared Pub/Sub suite is run by each implementation):
//
//   - the read model built live under the log's ledger equals a replay of
//     the log (the projector's own Check, which knows what its rows mean);
//   - built again in batches of 1, of 7 or of random sizes, it is the same
//     row for row: the result does not depend on where batches end;
//   - a runner stopped between batches, then one killed in the middle of a
//     batch (its transaction rolled back), then a new one, build it exactly
//     once: at the crash the rows equal the log projected up to the
//     checkpoint, and at the head the rows equal the reference;
//   - a rebuild (projections.Rebuild) swaps in the same rows;
//   - what a runner holds in memory and serves agrees with the read model
//     at its checkpoint (Case.CheckRunner);
//   - everything above runs as the projectors' role (ledger_projector), whose grants
//     therefore cover the projector's tables.
//
// Only _test.go files import it.
package projectortest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/projections"
)

// Limits of the suite.
const (
	// WaitMax bounds each wait for a runner to reach a position.
	WaitMax = 2 * time.Minute
	// HeadMin is the shortest log the suite accepts: the crash test needs
	// room for a third of it plus three batches.
	HeadMin = 64
	// crashBatch is the batch size of the crash test.
	crashBatch = 7
	// randomBatchMax bounds the random batch sizes.
	randomBatchMax = 50
	// appRole is the database role projectors run as (eventstore's
	// 0005_roles.sql): read the log, write the read models, nothing more.
	appRole = "ledger_projector"
)

// Log is a ledger's log, complete: nothing is appended while the suite runs.
type Log struct {
	// Pool connects as the tables' owner, every migration applied.
	Pool   *pgxpool.Pool
	Ledger string
	Head   uint64
}

// Case is one projector under the contract.
type Case struct {
	// New returns a new projector, as a new process would have (projectors
	// may cache between batches).
	New func() projections.Projector
	// Upstream are projections the projector reads (reconciliation reads
	// movements): the suite builds them to the head under each ledger key
	// first.
	Upstream []projections.Projector
	// BatchDependent lists, per table, the columns that depend on where a
	// runner's batches ended rather than on the log alone; a table listed
	// with no columns is left out whole. See Rows.
	BatchDependent map[string][]string
	// Check, if set, checks the read model under Log.Ledger, built to
	// Log.Head, against a replay of the log.
	Check func(t *testing.T)
	// CheckRunner, if set, checks what a running runner of the projector
	// holds against the read model under key at its checkpoint: called
	// whenever a runner of the suite has reached the end of its source,
	// before it stops (what a projector serves from memory: Movements'
	// balances).
	CheckRunner func(t *testing.T, key string, r *projections.Runner)
}

// Run runs the contract for c on log. It builds the read model under
// log.Ledger (unless a runner built it already) and under keys of its own
// (log.Ledger plus a suffix starting with "~", which no ledger name has).
func Run(t *testing.T, log Log, c Case) {
	t.Helper()
	if log.Head < HeadMin {
		t.Fatalf("a log of %d records, want at least %d", log.Head, HeadMin)
	}
	s := &suite{log: log, c: c, name: c.New().Name()}
	s.app, s.asApp = appPool(t, log.Pool)
	t.Run("live build equals a replay", func(t *testing.T) {
		if s.checkpoint(t, log.Ledger) < log.Head {
			s.build(t, log.Ledger, projections.NewLogSource(s.store(), log.Ledger))
		}
		if got := s.checkpoint(t, log.Ledger); got != log.Head {
			t.Fatalf("checkpoint %d, want the head %d", got, log.Head)
		}
		if c.Check != nil {
			c.Check(t)
		}
	})
	if t.Failed() {
		return
	}
	s.ref = Rows(t, log.Pool, c.New(), log.Ledger, c.BatchDependent)
	t.Run("grants of the app role", s.testGrants)
	t.Run("independent of batch size", s.testBatchSizes)
	t.Run("exactly once across a stop and a crash", s.testCrash)
	// Last: it replaces the rows under log.Ledger.
	t.Run("rebuild", s.testRebuild)
}

type suite struct {
	log   Log
	c     Case
	name  string
	app   *pgxpool.Pool // as appRole when asApp
	asApp bool
	ref   map[string][]string // the rows under log.Ledger at the head
}

func (s *suite) store() *eventstore.Store { return eventstore.New(s.app) }

// appPool returns a pool on log's database whose sessions take appRole, or
// the owner's pool when the server has no such role (the test user may not
// create roles).
func appPool(t *testing.T, owner *pgxpool.Pool) (*pgxpool.Pool, bool) {
	t.Helper()
	var exists bool
	noError(t, owner.QueryRow(t.Context(), `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`,
		appRole).Scan(&exists))
	if !exists {
		t.Logf("no %s role on this server: the projector runs as the owner", appRole)
		return owner, false
	}
	cfg := owner.Config().Copy()
	cfg.AfterConnect = func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, `SET ROLE `+appRole)
		return err
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	noError(t, err)
	t.Cleanup(pool.Close)
	return pool, true
}

func (s *suite) testGrants(t *testing.T) {
	if !s.asApp {
		t.Skipf("no %s role on this server", appRole)
	}
	for _, table := range append([]string{"projection_checkpoints"}, s.c.New().Tables()...) {
		var ok bool
		noError(t, s.log.Pool.QueryRow(t.Context(), `SELECT has_table_privilege($1, $2, 'SELECT, INSERT, UPDATE, DELETE')`,
			appRole, table).Scan(&ok))
		if !ok {
			t.Errorf("%s lacks SELECT, INSERT, UPDATE or DELETE on %s", appRole, table)
		}
	}
	if v, ok := s.c.New().(interface{ Views() []string }); ok {
		for _, view := range v.Views() {
			var ok bool
			noError(t, s.log.Pool.QueryRow(t.Context(), `SELECT has_table_privilege($1, $2, 'SELECT')`, appRole, view).Scan(&ok))
			if !ok {
				t.Errorf("%s lacks SELECT on the view %s", appRole, view)
			}
		}
	}
}

func (s *suite) testBatchSizes(t *testing.T) {
	for _, tc := range []struct {
		name string
		src  func(projections.Source) projections.Source
	}{
		{"batches of 1", func(src projections.Source) projections.Source { return sized{src, 1} }},
		{"batches of 7", func(src projections.Source) projections.Source { return sized{src, 7} }},
		{"random batches", func(src projections.Source) projections.Source {
			return &randomSized{src: src, rng: rand.New(rand.NewPCG(s.log.Head, uint64(len(s.name))))}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			key := s.log.Ledger + "~" + strings.ReplaceAll(tc.name, " ", "-")
			s.build(t, key, tc.src(projections.NewLogSource(s.store(), s.log.Ledger)))
			s.checkRows(t, key, s.ref, "the live build")
		})
	}
}

func (s *suite) testCrash(t *testing.T) {
	key := s.log.Ledger + "~crash"
	s.buildUpstream(t, key)
	log := projections.NewLogSource(s.store(), s.log.Ledger)

	// Stopped between batches: its source ends at a third of the log.
	third := s.log.Head / 3
	first := s.start(t, t.Context(), key, s.c.New(), UpTo{sized{log, crashBatch}, third})
	first.waitFor(t, third)
	s.checkRunner(t, key, first)
	first.stop()
	if got := s.checkpoint(t, key); got != third {
		t.Fatalf("stopped between batches at checkpoint %d, want %d", got, third)
	}

	// Killed in the middle of its third batch: two batches commit, the
	// third rolls back with its checkpoint.
	ctx, kill := context.WithCancel(t.Context())
	killer := &killing{Projector: s.c.New(), killAt: 3, kill: kill}
	second := s.start(t, ctx, key, killer, sized{log, crashBatch})
	select {
	case <-ctx.Done():
	case <-time.After(WaitMax):
		t.Fatalf("runner not killed after %v", WaitMax)
	}
	second.stop()
	at := third + 2*crashBatch
	if got := s.checkpoint(t, key); got != at {
		t.Fatalf("killed in its third batch at checkpoint %d, want %d", got, at)
	}
	prefix := s.log.Ledger + "~crash-prefix"
	s.build(t, prefix, UpTo{log, at})
	s.checkRows(t, key, Rows(t, s.log.Pool, s.c.New(), prefix, s.c.BatchDependent),
		fmt.Sprintf("the log projected up to %d", at))

	// A new runner finishes from the checkpoint.
	third2 := s.start(t, t.Context(), key, s.c.New(), sized{log, crashBatch})
	third2.waitFor(t, s.log.Head)
	s.checkRunner(t, key, third2)
	third2.stop()
	s.checkRows(t, key, s.ref, "the live build")
}

// numberedRows is, per numbered table, the number of key and its rows
// (0, 0 when key has none).
func (s *suite) numberedRows(t *testing.T, key string) [][2]int64 {
	t.Helper()
	out := make([][2]int64, len(projections.NumberedTables()))
	for i, n := range projections.NumberedTables() {
		noError(t, s.log.Pool.QueryRow(t.Context(), `SELECT coalesce(l.ledger_no, 0),
			(SELECT count(*) FROM `+n.Rows+` r WHERE r.ledger_no = l.ledger_no)
			FROM (SELECT 1) o LEFT JOIN `+n.Numbers+` l ON l.ledger = $1`, key).Scan(&out[i][0], &out[i][1]))
	}
	return out
}

func (s *suite) testRebuild(t *testing.T) {
	before := s.numberedRows(t, s.log.Ledger)
	at, err := projections.NewRebuild(s.app, s.store(), s.log.Ledger, s.c.New(), testLogger(t)).Run(t.Context(),
		func(projections.Progress) {})
	noError(t, err)
	// A swap retires the number of the rows it replaced, and leaves them
	// for the sweep; the sweep deletes them all, and the number.
	after := s.numberedRows(t, s.log.Ledger)
	var replaced int64
	for i, n := range projections.NumberedTables() {
		if before[i][0] == after[i][0] {
			continue // not this projector's table
		}
		var retired string
		var rows int64
		noError(t, s.log.Pool.QueryRow(t.Context(), `SELECT ledger, (SELECT count(*) FROM `+n.Rows+` WHERE ledger_no = $1)
			FROM `+n.Numbers+` WHERE ledger_no = $1`, before[i][0]).Scan(&retired, &rows))
		if !strings.HasPrefix(retired, projections.RetiredPrefix) || rows != before[i][1] {
			t.Errorf("%s: the replaced number %d is %q with %d rows after the swap, want retired (%s…) with its %d",
				n.Rows, before[i][0], retired, rows, projections.RetiredPrefix, before[i][1])
		}
		replaced += before[i][1]
	}
	swept, err := projections.SweepRetired(t.Context(), s.app)
	noError(t, err)
	if swept != replaced {
		t.Errorf("the sweep deleted %d rows, want the %d the swap replaced", swept, replaced)
	}
	for _, n := range projections.NumberedTables() {
		var retired, orphans int64
		noError(t, s.log.Pool.QueryRow(t.Context(), `SELECT
			(SELECT count(*) FROM `+n.Numbers+` WHERE starts_with(ledger, $1)),
			(SELECT count(*) FROM `+n.Rows+` r WHERE NOT EXISTS (SELECT 1 FROM `+n.Numbers+` l WHERE l.ledger_no = r.ledger_no))`,
			projections.RetiredPrefix).Scan(&retired, &orphans))
		if retired != 0 || orphans != 0 {
			t.Errorf("%s after the sweep: %d retired numbers, %d rows of no number; want none", n.Rows, retired, orphans)
		}
	}
	if at != s.log.Head {
		t.Fatalf("rebuild swapped at %d, want the head %d", at, s.log.Head)
	}
	if got := s.checkpoint(t, s.log.Ledger); got != s.log.Head {
		t.Fatalf("checkpoint %d after the rebuild, want the head %d", got, s.log.Head)
	}
	s.checkRows(t, s.log.Ledger, s.ref, "the live build before the rebuild")
	for table, rows := range Rows(t, s.log.Pool, s.c.New(), s.log.Ledger+projections.ShadowSuffix, nil) {
		if len(rows) != 0 {
			t.Errorf("%d rows of %s left under the shadow key after the swap", len(rows), table)
		}
	}
}

// checkRows requires the rows under key to equal want.
func (s *suite) checkRows(t *testing.T, key string, want map[string][]string, what string) {
	t.Helper()
	got := Rows(t, s.log.Pool, s.c.New(), key, s.c.BatchDependent)
	if maps.EqualFunc(want, got, slices.Equal[[]string]) {
		return // cmp.Diff only to explain a difference: it is slow on thousands of rows
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("%s under %s differs from %s (-want +got):\n%s", s.name, key, what, diff)
	}
}

// build builds the upstream projections under key, then the projector from
// src until its checkpoint reaches the last position src gives (the head,
// or UpTo's End).
func (s *suite) build(t *testing.T, key string, src projections.Source) {
	t.Helper()
	s.buildUpstream(t, key)
	end := s.log.Head
	if u, ok := src.(UpTo); ok {
		end = u.End
	}
	r := s.start(t, t.Context(), key, s.c.New(), src)
	r.waitFor(t, end)
	s.checkRunner(t, key, r)
	r.stop()
}

// checkRunner runs c.CheckRunner, if set, on r under key.
func (s *suite) checkRunner(t *testing.T, key string, r *running) {
	t.Helper()
	if s.c.CheckRunner != nil {
		s.c.CheckRunner(t, key, r.Runner)
	}
}

// buildUpstream builds each upstream projection under key to the head.
func (s *suite) buildUpstream(t *testing.T, key string) {
	t.Helper()
	for _, up := range s.c.Upstream {
		if s.checkpointOf(t, key, up.Name()) >= s.log.Head {
			continue
		}
		r := s.start(t, t.Context(), key, up, projections.NewLogSource(s.store(), s.log.Ledger))
		r.waitFor(t, s.log.Head)
		r.stop()
	}
}

// running is a runner in its own goroutine until stop.
type running struct {
	*projections.Runner
	name string
	stop func()
}

// start runs proj under key on src, as the app role, until stop, the end of
// ctx or the end of the test.
func (s *suite) start(t *testing.T, ctx context.Context, key string, proj projections.Projector, src projections.Source) *running {
	r := projections.NewRunner(s.app, key, proj, src, testLogger(t))
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("runner of %s under %s: %v", proj.Name(), key, err)
			}
		})
	}
	t.Cleanup(stop)
	return &running{Runner: r, name: proj.Name(), stop: stop}
}

// waitFor waits until r has committed pos.
func (r *running) waitFor(t *testing.T, pos uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), WaitMax)
	defer cancel()
	if err := r.WaitFor(ctx, pos); err != nil {
		t.Fatalf("runner of %s at %d, waiting for %d (its warnings are above): %v", r.name, r.Position(), pos, err)
	}
}

func (s *suite) checkpoint(t *testing.T, key string) uint64 {
	t.Helper()
	return s.checkpointOf(t, key, s.name)
}

// checkpointOf returns the checkpoint of projection under key; 0 before any.
func (s *suite) checkpointOf(t *testing.T, key, projection string) uint64 {
	t.Helper()
	var pos int64
	err := s.log.Pool.QueryRow(t.Context(), `SELECT position FROM projection_checkpoints
		WHERE ledger = $1 AND projection = $2`, key, projection).Scan(&pos)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0
	}
	noError(t, err)
	return uint64(pos)
}

// Rows returns every row of proj's tables and views under ledger key, as
// JSON without the ledger column, the number a read model gives the key
// (ledger_no: each build has its own) and the columns batchDependent names
// for the table, in a stable order; a table batchDependent lists without
// columns is left out.
func Rows(t *testing.T, pool *pgxpool.Pool, proj projections.Projector, key string, batchDependent map[string][]string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	tables := proj.Tables()
	if v, ok := proj.(interface{ Views() []string }); ok {
		tables = append(slices.Clone(tables), v.Views()...)
	}
	for _, table := range tables {
		drop, dependent := batchDependent[table]
		if dependent && len(drop) == 0 {
			continue
		}
		rows, err := pool.Query(t.Context(), `SELECT (to_jsonb(t) - 'ledger' - 'ledger_no' - $2::text[])::text FROM `+
			pgx.Identifier{table}.Sanitize()+` t WHERE ledger = $1 ORDER BY 1`, key, append([]string{}, drop...))
		noError(t, err)
		got, err := pgx.CollectRows(rows, pgx.RowTo[string])
		noError(t, err)
		out[table] = got
	}
	return out
}

// sized cuts a source's batches to at most n records.
type sized struct {
	src projections.Source
	n   int
}

func (b sized) Next(ctx context.Context, from uint64, max int) ([]eventstore.Record, error) {
	return b.src.Next(ctx, from, min(max, b.n))
}

// randomSized cuts a source's batches to random sizes of 1..randomBatchMax.
type randomSized struct {
	src projections.Source
	mu  sync.Mutex
	rng *rand.Rand
}

func (b *randomSized) Next(ctx context.Context, from uint64, max int) ([]eventstore.Record, error) {
	b.mu.Lock()
	n := 1 + b.rng.IntN(randomBatchMax)
	b.mu.Unlock()
	return b.src.Next(ctx, from, min(max, n))
}

// UpTo gives Src's records up to End, then nothing until ctx ends: a log
// that ends there.
type UpTo struct {
	Src projections.Source
	End uint64
}

func (u UpTo) Next(ctx context.Context, from uint64, max int) ([]eventstore.Record, error) {
	if from > u.End {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return u.Src.Next(ctx, from, min(max, int(u.End-from+1)))
}

// killing applies like its projector, then, on its killAt-th call, ends the
// runner's context before the transaction commits: a process killed in the
// middle of a batch.
type killing struct {
	projections.Projector
	killAt int
	kill   context.CancelFunc
	calls  int // the runner calls Apply from one goroutine
}

func (k *killing) Apply(ctx context.Context, tx pgx.Tx, ledger string, recs []eventstore.Record) error {
	if err := k.Projector.Apply(ctx, tx, ledger, recs); err != nil {
		return err
	}
	if k.calls++; k.calls == k.killAt {
		k.kill()
	}
	return nil
}

// testLogger writes warnings to the test's output, shown on failure or -v.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// noError fails the test at once when err is not nil.
func noError(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
}
