package projections_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ledgerd/ledger/adapters/natsbus"
	"github.com/ledgerd/ledger/commands"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/testenv"
	"github.com/ledgerd/ledger/projections"
	"github.com/ledgerd/ledger/projections/projectortest"
)

// waitMax bounds every wait for a runner or a relay to catch up.
const waitMax = 15 * time.Second

// env is one ledger with its writer and relay running, on a fresh database.
type env struct {
	t      *testing.T
	pool   *pgxpool.Pool
	store  *eventstore.Store
	ledger string
	writer *commands.Writer
}

func newEnv(t *testing.T) *env {
	t.Helper()
	pool, err := pgxpool.New(t.Context(), testenv.MigratedPostgresURL(t))
	testenv.NoError(t, err)
	t.Cleanup(pool.Close)
	testenv.NoError(t, eventstore.Migrate(t.Context(), pool))
	testenv.NoError(t, projections.Migrate(t.Context(), pool))
	e := &env{t: t, pool: pool, store: eventstore.New(pool), ledger: testenv.Name(t)}

	relay := natsbus.NewRelay(e.ledger, jetStream(t), e.store, natsbus.StreamOptions{}, testLogger(t))
	runUntilCleanup(t, "relay", relay.Run)
	e.writer = commands.NewWriter(commands.Options{Ledger: e.ledger, Store: e.store, Logger: testLogger(t),
		OnCommit: func(_ string, recs []eventstore.Record) { relay.Offer(recs) }})
	runUntilCleanup(t, "writer", e.writer.Run)
	return e
}

// runUntilCleanup runs run in its own goroutine until the end of the test.
func runUntilCleanup(t *testing.T, what string, run func(context.Context) error) {
	stop := start(t, context.Background(), what, run)
	t.Cleanup(stop)
}

// start runs run in its own goroutine until stop, which cancels its context
// and waits for it to return; stop may be called more than once.
func start(t *testing.T, parent context.Context, what string, run func(context.Context) error) (stop func()) {
	ctx, cancel := context.WithCancel(parent)
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("%s: %v", what, err)
			}
		})
	}
}

// jetStream returns a new connection to the package's NATS server: one per
// relay or source, as if each ran in its own process.
func jetStream(t *testing.T) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(testenv.NATSURL(t))
	testenv.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	testenv.NoError(t, err)
	return js
}

// testLogger writes warnings to the test's output, shown on failure or -v.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// Workload shape.
const (
	accountsPerAsset = 6
	postingsMax      = 4
	// commandsPerSubmit and submitters make the writer batch several
	// requests into one append.
	commandsPerSubmit = 25
	submitters        = 4
)

// workloadCategories is a chart of accounts with a category redefined in
// the same batch: every projector accepts the events, and the balances
// projector keeps the last definition (checkCategories). Fresh commands
// each call: Validate writes to them, and tests run in parallel.
func workloadCategories() []domain.Command {
	return []domain.Command{
		&domain.DefineCategory{Name: "usd", Patterns: []string{"USD-0"}},
		&domain.DefineCategory{Name: "usd:even", Parent: "usd", Patterns: []string{"USD-2", "USD-4"}},
		&domain.DefineCategory{Name: "usd", Patterns: []string{"USD-1", "USD-3"}, Description: "redefined"},
	}
}

var workloadAssets = []domain.DefineAsset{{Code: "USD", Scale: 2}, {Code: "JPY", Scale: 0}, {Code: "BTC", Scale: 8}}

// runWorkload defines the assets, opens their accounts and commits transfers
// random transfers of 1..postingsMax postings, through the writer. It returns
// the ledger's head.
func (e *env) runWorkload(transfers int, seed uint64) uint64 {
	t := e.t
	t.Helper()
	var setup []domain.Command
	for _, a := range workloadAssets {
		setup = append(setup, &domain.DefineAsset{Code: a.Code, Scale: a.Scale})
	}
	for _, a := range workloadAssets {
		for i := range accountsPerAsset {
			normal := domain.SideDebit
			if i%2 == 1 {
				normal = domain.SideCredit
			}
			setup = append(setup, &domain.OpenAccount{ID: accountID(a.Code, i), Asset: a.Code, Normal: normal})
		}
	}
	setup = append(setup, workloadCategories()...)
	e.submit(setup)

	rng := rand.New(rand.NewPCG(seed, seed))
	cmds := make([]domain.Command, transfers)
	for i := range cmds {
		c := &domain.CreateTransfer{ID: fmt.Sprintf("t-%d", i), Reference: fmt.Sprintf("ref-%d", i%7)}
		for range 1 + rng.IntN(postingsMax) {
			a := workloadAssets[rng.IntN(len(workloadAssets))]
			from := rng.IntN(accountsPerAsset)
			to := (from + 1 + rng.IntN(accountsPerAsset-1)) % accountsPerAsset
			amount := domain.UnitsFromInt64(1 + rng.Int64N(1_000_000)).Format(uint8(a.Scale))
			c.Postings = append(c.Postings, domain.PostingInput{Debit: accountID(a.Code, from),
				Credit: accountID(a.Code, to), Asset: a.Code, Amount: amount})
		}
		cmds[i] = c
	}
	// Half the transfers, a period closed at the writer's clock (every
	// projector must accept it), then the rest.
	half := len(cmds) / 2
	e.submitConcurrently(cmds[:half])
	e.submit([]domain.Command{&domain.ClosePeriod{End: time.Now()}})
	e.submitConcurrently(cmds[half:])
	head, _, err := e.store.Head(t.Context(), e.ledger)
	testenv.NoError(t, err)
	if want := uint64(len(setup) + 1 + transfers); head != want {
		t.Fatalf("head %d after the workload, want %d", head, want)
	}
	return head
}

// submitConcurrently submits cmds in chunks from several goroutines, so that
// the writer batches requests, and fails the test unless each committed.
func (e *env) submitConcurrently(cmds []domain.Command) {
	chunks := make(chan []domain.Command, len(cmds)/commandsPerSubmit+1)
	for c := range slices.Chunk(cmds, commandsPerSubmit) {
		chunks <- c
	}
	close(chunks)
	var wg sync.WaitGroup
	for range submitters {
		wg.Go(func() {
			for c := range chunks {
				e.submit(c)
			}
		})
	}
	wg.Wait()
	if e.t.Failed() {
		e.t.FailNow()
	}
}

func accountID(asset string, i int) string { return fmt.Sprintf("%s-%d", asset, i) }

// submit submits cmds and fails the test, from any goroutine, unless each
// was committed.
func (e *env) submit(cmds []domain.Command) {
	results, err := e.writer.Submit(e.t.Context(), cmds)
	if err != nil {
		e.t.Errorf("submit %d commands: %v", len(cmds), err)
		return
	}
	for i, r := range results {
		if r.Err != nil {
			e.t.Errorf("command %s: %v", cmds[i].CommandID(), r.Err)
		}
	}
}

// balance is one account's balance: the totals of its last statement line
// (the movements read model), zero before its first, and the position of
// that line (its opening before any).
type balance struct {
	Asset                         string
	DebitsPosted, CreditsPosted   string
	DebitsPending, CreditsPending string
	Position                      uint64
}

// replay folds the log up to position upTo into a fresh domain state and
// returns what each account's balance must be at that checkpoint.
func (e *env) replay(upTo uint64) map[string]balance {
	e.t.Helper()
	r := newReplayer(e)
	r.advance(upTo)
	want := make(map[string]balance, len(r.accounts))
	for _, id := range r.accounts {
		a, _ := r.st.Account(id)
		want[id] = balance{Asset: a.Asset, DebitsPosted: a.DebitsPosted.Format(a.Scale),
			CreditsPosted: a.CreditsPosted.Format(a.Scale), DebitsPending: a.DebitsPending.Format(a.Scale),
			CreditsPending: a.CreditsPending.Format(a.Scale), Position: max(a.Position, r.moved[id])}
	}
	return want
}

// balances reads each account of the ledger's movements read model with
// its balance: its last statement line's totals (the lines' primary key
// backwards, as the queries read them), zero at its asset's scale before
// any line.
func (e *env) balances() map[string]balance {
	e.t.Helper()
	return e.balancesOf(e.ledger)
}

// balancesOf is balances under the ledger key key.
func (e *env) balancesOf(key string) map[string]balance {
	t := e.t
	t.Helper()
	rows, err := e.pool.Query(t.Context(), `SELECT h.account, h.asset,
			coalesce(l.debits_posted, round(0, h.scale::int))::text, coalesce(l.credits_posted, round(0, h.scale::int))::text,
			coalesce(l.debits_pending, round(0, h.scale::int))::text, coalesce(l.credits_pending, round(0, h.scale::int))::text,
			coalesce(l.position, h.opened_position)
		FROM movement_heads h
		LEFT JOIN LATERAL (
			SELECT m.debits_posted, m.credits_posted, m.debits_pending, m.credits_pending, m.position
			FROM movements m WHERE m.ledger_no = h.ledger_no AND m.account_no = h.opened_position
			ORDER BY m.position DESC, m.seq DESC LIMIT 1) l ON true
		WHERE h.ledger = $1`, key)
	testenv.NoError(t, err)
	got := map[string]balance{}
	var (
		id  string
		b   balance
		pos int64
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &b.Asset, &b.DebitsPosted, &b.CreditsPosted, &b.DebitsPending,
		&b.CreditsPending, &pos}, func() error {
		b.Position = uint64(pos)
		got[id] = b
		return nil
	})
	testenv.NoError(t, err)
	return got
}

// checkpoint returns the movements projection's checkpoint (the read model
// e.balances reads); 0 before any.
func (e *env) checkpoint() uint64 {
	e.t.Helper()
	return e.checkpointOf(projections.NewMovements(), e.ledger)
}

// checkTrialAt checks that the balances projection's checkpoint is at pos
// and its trial balance equals a replay of the log up to pos: a batch
// applied twice or skipped moves some asset's sums.
func (e *env) checkTrialAt(pos uint64) {
	e.t.Helper()
	if got := e.checkpointOf(projections.Balances{}, e.ledger); got != pos {
		e.t.Fatalf("balances checkpoint %d, want %d", got, pos)
	}
	r := newReplayer(e)
	r.advance(pos)
	if diff := cmp.Diff(r.lines(), e.trialBalances()); diff != "" {
		e.t.Fatalf("trial balance at checkpoint %d differs from the replay (-replay +read model):\n%s", pos, diff)
	}
}

// fault is the fault recorded in proj's checkpoint, "" for none.
func (e *env) fault(proj projections.Projector) string {
	var fault *string
	testenv.NoError(e.t, e.pool.QueryRow(e.t.Context(), `SELECT fault FROM projection_checkpoints
		WHERE ledger = $1 AND projection = $2`, e.ledger, proj.Name()).Scan(&fault))
	if fault == nil {
		return ""
	}
	return *fault
}

// checkAt checks that the movements checkpoint is at pos and every account's
// balance in its read model equals a replay of the log up to pos: nothing
// applied twice, nothing skipped.
func (e *env) checkAt(pos uint64) {
	e.t.Helper()
	if got := e.checkpoint(); got != pos {
		e.t.Fatalf("checkpoint %d, want %d", got, pos)
	}
	if diff := cmp.Diff(e.replay(pos), e.balances()); diff != "" {
		e.t.Fatalf("balances at checkpoint %d differ from the replay (-replay +read model):\n%s", pos, diff)
	}
}

// natsSource returns a source on the ledger's stream over its own connection.
func (e *env) natsSource() *natsbus.Source {
	src := natsbus.NewSource(e.ledger, jetStream(e.t), e.store, natsbus.StreamOptions{}, testLogger(e.t))
	e.t.Cleanup(src.Close)
	return src
}

// runningRunner is a runner running in its own goroutine until stop.
type runningRunner struct {
	*projections.Runner
	stop func()
}

// startRunner runs a runner of proj on src until stop, the end of parent
// or the end of the test.
func (e *env) startRunner(parent context.Context, proj projections.Projector, src projections.Source) *runningRunner {
	// Each batch read ahead, however small: the tests' batches are.
	r := projections.NewRunner(e.pool, e.ledger, proj, src, testLogger(e.t)).WithAheadFrom(1)
	stop := start(e.t, parent, "runner", r.Run)
	e.t.Cleanup(stop)
	return &runningRunner{Runner: r, stop: stop}
}

// waitFor waits until r has committed pos.
func waitFor(t *testing.T, r *runningRunner, pos uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitMax)
	defer cancel()
	if err := r.WaitFor(ctx, pos); err != nil {
		t.Fatalf("runner at %d, waiting for %d: %v", r.Position(), pos, err)
	}
}

// batches cuts a source's batches to size records. With end set (the last
// position there is), every batch but the last has exactly size records,
// so that batch boundaries are known; with end 0 a batch has 1..size.
type batches struct {
	src  projections.Source
	size int
	end  uint64
}

func (b batches) Next(ctx context.Context, from uint64, max int) ([]eventstore.Record, error) {
	n := min(max, b.size)
	if b.end == 0 {
		return b.src.Next(ctx, from, n)
	}
	var out []eventstore.Record
	for len(out) < n {
		next := from + uint64(len(out))
		if len(out) > 0 && next > b.end {
			break
		}
		recs, err := b.src.Next(ctx, next, n-len(out))
		if err != nil {
			return nil, err
		}
		out = append(out, recs...)
	}
	return out, nil
}

func collectScales(rows pgx.Rows) (map[string]int16, error) {
	scales := map[string]int16{}
	var (
		code  string
		scale int16
	)
	_, err := pgx.ForEachRow(rows, []any{&code, &scale}, func() error {
		scales[code] = scale
		return nil
	})
	return scales, err
}

// killingProjector applies like its projector, then, on its killAt-th call,
// ends the runner's context before the transaction commits: a process killed
// in the middle of a batch.
type killingProjector struct {
	projections.Projector
	killAt int
	kill   context.CancelFunc
	calls  int // the runner calls Apply from one goroutine
}

func (k *killingProjector) Apply(ctx context.Context, tx pgx.Tx, ledger string, recs []eventstore.Record) error {
	if err := k.Projector.Apply(ctx, tx, ledger, recs); err != nil {
		return err
	}
	k.calls++
	if k.calls == k.killAt {
		k.kill()
	}
	return nil
}

func TestRunnerKilledBetweenBatchesRestarts(t *testing.T) {
	t.Parallel()
	const batchSize = 7
	e := newEnv(t)
	head := e.runWorkload(200, 2)

	t.Log("the first runner is killed between batches")
	first := e.startRunner(t.Context(), projections.NewMovements(), batches{src: e.natsSource(), size: batchSize, end: head})
	waitFor(t, first, head/3)
	first.stop()
	at := e.checkpoint()
	// The batch under way when stopped may have committed without the runner
	// hearing of it.
	if at < first.Position() || at >= head {
		t.Fatalf("stopped at checkpoint %d (runner said %d), want %d..%d", at, first.Position(), first.Position(), head-1)
	}
	e.checkAt(at)

	t.Log("the second runner is killed in the middle of its third batch")
	ctx, kill := context.WithCancel(t.Context())
	killer := &killingProjector{Projector: projections.NewMovements(), killAt: 3, kill: kill}
	second := e.startRunner(ctx, killer, batches{src: e.natsSource(), size: batchSize, end: head})
	select {
	case <-ctx.Done():
	case <-time.After(waitMax):
		t.Fatalf("second runner not killed after %v: it applied %d batches", waitMax, second.Position()-at)
	}
	second.stop()
	if killer.calls != 3 {
		t.Fatalf("killed runner applied %d batches, want 3", killer.calls)
	}
	// Two batches committed; the third was rolled back with its checkpoint.
	want := min(at+2*batchSize, head)
	if got := second.Position(); got != want {
		t.Fatalf("killed runner at %d, want %d", got, want)
	}
	e.checkAt(want)

	t.Log("the third runner finishes")
	third := e.startRunner(t.Context(), projections.NewMovements(), batches{src: e.natsSource(), size: batchSize, end: head})
	waitFor(t, third, head)
	e.checkAt(head)
}

// fault is how faultySource corrupts the batch holding its position.
type fault int

const (
	gapFirst      fault = iota // Next(at) starts at at+1
	repeatFirst                // Next(at) starts at at-1, already applied
	gapInside                  // the batch holding at, not first, lacks it
	repeatInside               // the batch holding at, not first, has at-1 twice
	tampered                   // the record at at has another payload, its hashes kept
	relinked                   // the record at at is sealed on another prev_hash: self-consistent, off the chain
	forged                     // the batch ends with another event at at, sealed on the chain: chained, not the log's
	otherLedger                // the record at at names another ledger, sealed on the chain
	forgedGarbage              // forged, and its payload no event: refused as not the log's, not as undecodable
	forgedReopen               // forged, and it opens an account open already: refused as not the log's, not as a fold's error
)

// breaksChain says whether the runner refuses f as a broken chain (and
// records it as its checkpoint's fault), rather than as a gap or repeat.
func (f fault) breaksChain() bool { return f >= tampered }

// faultySource corrupts every batch that holds position at while active.
type faultySource struct {
	src    projections.Source
	fault  fault
	at     uint64
	active atomic.Bool
	served atomic.Int32 // corrupted batches served
}

func (f *faultySource) Next(ctx context.Context, from uint64, max int) ([]eventstore.Record, error) {
	if !f.active.Load() {
		return f.src.Next(ctx, from, max)
	}
	switch {
	case f.fault == gapFirst && from == f.at:
		f.served.Add(1)
		return f.src.Next(ctx, from+1, max)
	case f.fault == repeatFirst && from == f.at:
		f.served.Add(1)
		return f.src.Next(ctx, from-1, max)
	}
	recs, err := f.src.Next(ctx, from, max)
	// Gaps and repeats inside a batch are after its first record; a
	// changed record may be the first.
	first := f.fault.breaksChain()
	if err != nil || f.at < from || f.at == from && !first || f.at >= from+uint64(len(recs)) {
		return recs, err
	}
	i := int(f.at - from)
	switch f.fault {
	case gapInside:
		f.served.Add(1)
		return slices.Delete(recs, i, i+1), nil
	case repeatInside:
		f.served.Add(1)
		return append(recs[:i:i], recs[i-1:len(recs)-1]...), nil
	case tampered, relinked, forged, otherLedger, forgedGarbage, forgedReopen:
		f.served.Add(1)
		out := slices.Clone(recs)
		rec := out[i]
		switch f.fault {
		case tampered:
			// One more minor unit somewhere in the event's JSON.
			rec.Payload = bytes.Replace(slices.Clone(rec.Payload), []byte(`"amount":"`), []byte(`"amount":"1`), 1)
		case relinked:
			rec.Seal(eventstore.Hash{1})
		case forged:
			rec.CommandID = "forged"
			rec.Seal(rec.PrevHash)
			out = out[:i+1]
		case otherLedger:
			rec.Ledger += "x"
			rec.Seal(rec.PrevHash)
		case forgedGarbage:
			rec.Payload = []byte("no event")
			rec.Seal(rec.PrevHash)
			out = out[:i+1]
		case forgedReopen:
			e := domain.AccountOpened{ID: accountID("USD", 0), Asset: "USD", Normal: domain.SideDebit}
			rec.Type, rec.SchemaVersion, rec.Payload = e.EventType(), domain.SchemaVersion, domain.AppendEvent(nil, e)
			rec.Seal(rec.PrevHash)
			out = out[:i+1]
		}
		out[i] = rec
		return out, nil
	}
	return recs, nil
}

func TestRunnerRefusesGapOrRepeat(t *testing.T) {
	t.Parallel()
	const batchSize = 5
	for _, tc := range []struct {
		name  string
		fault fault
		at    uint64
		stuck uint64 // the checkpoint the runner cannot pass
	}{
		{"gap first in batch", gapFirst, 36, 35},
		{"repeat first in batch", repeatFirst, 36, 35},
		{"gap inside batch", gapInside, 33, 30},
		{"repeat inside batch", repeatInside, 33, 30},
		{"tampered first in batch", tampered, 36, 35},
		{"tampered inside batch", tampered, 33, 30},
		{"off the chain first in batch", relinked, 36, 35},
		{"off the chain inside batch", relinked, 33, 30},
		{"chained but not the log's, first in batch", forged, 36, 35},
		{"chained but not the log's, inside batch", forged, 33, 30},
		{"another ledger's, first in batch", otherLedger, 36, 35},
		{"chained, not the log's, no event, first in batch", forgedGarbage, 36, 35},
		{"chained, not the log's, no event, inside batch", forgedGarbage, 33, 30},
		{"chained, not the log's, reopening an account, inside batch", forgedReopen, 33, 30},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			head := e.runWorkload(40, 3)
			src := &faultySource{src: batches{src: e.natsSource(), size: batchSize, end: head}, fault: tc.fault, at: tc.at}
			src.active.Store(true)
			proj := projections.NewMovements()
			runner := e.startRunner(t.Context(), proj, src)
			// Refused, retried, refused again.
			testenv.Eventually(t, waitMax, func() error {
				if n := src.served.Load(); n < 3 {
					return fmt.Errorf("corrupted batch served %d times, want 3", n)
				}
				return nil
			})
			if got := runner.Position(); got != tc.stuck {
				t.Fatalf("runner at %d after refusing, want %d", got, tc.stuck)
			}
			e.checkAt(tc.stuck)
			if tc.fault.breaksChain() {
				testenv.Eventually(t, waitMax, func() error {
					if got := e.fault(proj); !strings.Contains(got, "hash chain is broken") {
						return fmt.Errorf("checkpoint's fault %q, want the broken chain", got)
					}
					return nil
				})
			}

			src.active.Store(false)
			waitFor(t, runner, head)
			e.checkAt(head)
			if got := e.fault(proj); got != "" {
				t.Errorf("checkpoint's fault %q once the records are the log's, want none", got)
			}
		})
	}
}

// contendingProjector counts the batches its runner applies. The first batch
// of all the runners sharing started waits, inside its transaction, until
// another transaction of the database waits for a lock: the other runner's
// checkpoint update for the same batch. So the two runners do contend, and
// the loser's update finds the checkpoint moved once the winner commits.
type contendingProjector struct {
	projections.Projector
	t       *testing.T
	pool    *pgxpool.Pool
	started *atomic.Bool
	calls   atomic.Int32
}

func (c *contendingProjector) Apply(ctx context.Context, tx pgx.Tx, ledger string, recs []eventstore.Record) error {
	if c.started.CompareAndSwap(false, true) {
		if err := waitForLockWaiter(ctx, c.pool); err != nil {
			c.t.Errorf("first batch: %v", err)
		}
	}
	c.calls.Add(1)
	return c.Projector.Apply(ctx, tx, ledger, recs)
}

// waitForLockWaiter polls until a session of pool's database waits for a
// lock. It runs in a runner's goroutine, where Eventually cannot fail a test.
func waitForLockWaiter(ctx context.Context, pool *pgxpool.Pool) error {
	ctx, cancel := context.WithTimeout(ctx, waitMax)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		var waiting int
		err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting)
		if err != nil {
			return fmt.Errorf("no session waited for a lock: %w", err)
		}
		if waiting > 0 {
			return nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("no session waited for a lock: %w", ctx.Err())
		}
	}
}

func TestTwoRunnersExactlyOnce(t *testing.T) {
	t.Parallel()
	const batchSize = 7
	e := newEnv(t)
	var started atomic.Bool
	a := &contendingProjector{Projector: projections.NewMovements(), t: t, pool: e.pool, started: &started}
	b := &contendingProjector{Projector: projections.NewMovements(), t: t, pool: e.pool, started: &started}
	// Small batches on both, from the empty ledger on, beside the writer.
	e.startRunner(t.Context(), a, batches{src: e.natsSource(), size: batchSize})
	e.startRunner(t.Context(), b, batches{src: e.natsSource(), size: batchSize})
	head := e.runWorkload(300, 4)
	testenv.Eventually(t, waitMax, func() error {
		if got := e.checkpoint(); got != head {
			return fmt.Errorf("checkpoint %d, want %d", got, head)
		}
		return nil
	})
	e.checkAt(head)
	t.Logf("runners applied %d and %d batches", a.calls.Load(), b.calls.Load())
}

// TestWaiterCutsTheLingerShort: a runner lingering for more records (here up
// to an hour) applies what it holds as soon as someone waits for a position
// it has not applied: a query with a min_position is not kept waiting.
func TestWaiterCutsTheLingerShort(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	head := e.runWorkload(50, 3)
	r := projections.NewRunner(e.pool, e.ledger, projections.NewMovements(), batches{src: e.natsSource(), size: 1},
		testLogger(t)).WithLinger(time.Hour)
	stop := start(t, t.Context(), "runner", r.Run)
	t.Cleanup(stop)
	waitFor(t, &runningRunner{Runner: r, stop: stop}, head)
	e.checkAt(head)
}

// TestFoldedAheadBatchRolledBack: a runner reads, checks, decodes and (for
// a projector that stages its batches) folds the next batch while the last
// one's transaction runs. Here the COPY of the batch holding position
// failAt fails twice, after the batch after it was folded ahead (over the
// movements projector's cache): what that fold applied must not stay. The
// runner, resuming from its checkpoint, must end with the rows one
// transaction of the whole log writes, and the movements with every
// balance a replay gives.
func TestFoldedAheadBatchRolledBack(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		proj  func() projections.Projector
		table string
	}{
		{func() projections.Projector { return projections.NewMovements() }, "movements"},
		// Transfers does not stage its batches (its rebuild is bound by
		// PostgreSQL's COPY, docs/perf.md): its next batch is read,
		// checked and decoded ahead.
		{func() projections.Projector { return projections.Transfers{} }, "transfers"},
	} {
		t.Run(tc.table, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			head := e.runWorkload(300, 5)
			failAt := head / 2
			e.failCopiesAt(tc.table, failAt, 2)
			p := tc.proj()
			r := e.startRunner(t.Context(), p, batches{src: e.natsSource(), size: 7, end: head})
			waitFor(t, r, head)
			if n := e.copyFailures(); n < 3 {
				t.Fatalf("the COPY of position %d was tried %d times, want 3: the failure was not exercised", failAt, n)
			}
			if tc.table == "movements" {
				e.checkAt(head)
			}
			e.checkSameAsOneTransaction(p, head)
		})
	}
}

// failCopiesAt makes the first times inserts into table of a row at
// position fail (a trigger): the transaction of the batch holding it fails
// as many times, then passes. nextval is not rolled back with it.
func (e *env) failCopiesAt(table string, position uint64, times int) {
	e.t.Helper()
	_, err := e.pool.Exec(e.t.Context(), `CREATE SEQUENCE copy_failures;
		CREATE FUNCTION fail_a_row() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.position = `+fmt.Sprint(position)+` AND nextval('copy_failures') <= `+fmt.Sprint(times)+` THEN
				RAISE EXCEPTION 'the test fails the insert of position %', NEW.position;
			END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER fail_a_row BEFORE INSERT ON `+pgx.Identifier{table}.Sanitize()+` FOR EACH ROW EXECUTE FUNCTION fail_a_row()`)
	testenv.NoError(e.t, err)
}

// copyFailures is how many times the row failCopiesAt fails was inserted.
func (e *env) copyFailures() int64 {
	e.t.Helper()
	var n int64
	testenv.NoError(e.t, e.pool.QueryRow(e.t.Context(), `SELECT last_value FROM copy_failures`).Scan(&n))
	return n
}

// checkSameAsOneTransaction checks that p's rows of the ledger are those
// one transaction applying the log up to head writes under another key.
func (e *env) checkSameAsOneTransaction(p projections.Projector, head uint64) {
	e.t.Helper()
	recs, err := e.store.Read(e.t.Context(), e.ledger, 1, int(head))
	testenv.NoError(e.t, err)
	if uint64(len(recs)) != head {
		e.t.Fatalf("read %d records, want %d", len(recs), head)
	}
	whole := e.ledger + "-whole"
	testenv.NoError(e.t, pgx.BeginFunc(e.t.Context(), e.pool, func(tx pgx.Tx) error {
		return p.Apply(e.t.Context(), tx, whole, recs)
	}))
	want := projectortest.Rows(e.t, e.pool, p, whole, nil)
	if got := projectortest.Rows(e.t, e.pool, p, e.ledger, nil); !cmp.Equal(got, want) {
		e.t.Fatalf("the rows differ from one transaction's (-one +batches):\n%s", cmp.Diff(want, got))
	}
}
