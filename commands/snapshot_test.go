package commands_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ledgerd/ledger/commands"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/testenv"
)

// snapshotEveryTest takes a snapshot every few batches of the workload.
const snapshotEveryTest = 40

func newStoreAndPool(t testing.TB) (*eventstore.Store, *pgxpool.Pool) {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testenv.MigratedPostgresURL(t))
	testenv.NoError(t, err)
	t.Cleanup(pool.Close)
	testenv.NoError(t, eventstore.Migrate(ctx, pool))
	return eventstore.New(pool), pool
}

// logBuffer collects a writer's log lines, for the tests to read what it did.
type logBuffer struct{ testenv.LockedBuffer }

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

var loadLine = regexp.MustCompile(`msg="writer loaded" .*snapshot=(\d+)`)

// loads returns the snapshot position of each load the log tells of (0: the
// whole log was folded).
func (l *logBuffer) loads(t *testing.T) []uint64 {
	t.Helper()
	var out []uint64
	for _, m := range loadLine.FindAllStringSubmatch(l.String(), -1) {
		n, err := strconv.ParseUint(m[1], 10, 64)
		testenv.NoError(t, err)
		out = append(out, n)
	}
	return out
}

// writerWorkload drives a writer with random commands of every kind over
// accounts a0..: transfers, holds with and without timeouts (the clock moves,
// so some expire), full and partial posts, voids, full and partial
// reversals, retries, bounds, metadata and a few closes. Outcomes do not
// matter; what the log holds does.
type writerWorkload struct {
	t        *testing.T
	w        *commands.Writer
	clock    *testClock
	r        *rand.Rand
	accounts int
	next     int
	ids      []string // every id of the transfer id space created
	transfer []string // the ids of transfers and holds created, which retry can send again
	holds    []string
	reverse  []string                         // transfers and posts
	retry    map[string]func() domain.Command // a fresh copy of a created command
}

func newWriterWorkload(t *testing.T, w *commands.Writer, clock *testClock, accounts int) *writerWorkload {
	t.Helper()
	x := &writerWorkload{t: t, w: w, clock: clock, r: rand.New(rand.NewPCG(7, uint64(accounts))), accounts: accounts,
		retry: map[string]func() domain.Command{}}
	mustCreate(t, submit(t, w, &domain.DefineAsset{Code: "USD", Scale: 2}))
	cmds := make([]domain.Command, accounts)
	for i := range cmds {
		open := &domain.OpenAccount{ID: fmt.Sprintf("a%d", i), Asset: "USD", Normal: domain.SideCredit}
		if i%4 == 1 {
			open.MinBalance = ptr("-200.00")
		}
		if i%4 == 2 {
			open.MaxBalance = ptr("300.00")
		}
		cmds[i] = open
	}
	mustCreate(t, submit(t, w, cmds...))
	return x
}

func (x *writerWorkload) fresh(prefix string) string {
	x.next++
	return fmt.Sprintf("%s%d", prefix, x.next)
}

func (x *writerWorkload) amount() string { return fmt.Sprintf("%d.%02d", x.r.IntN(60), 1+x.r.IntN(99)) }

func (x *writerWorkload) pick(ids []string) string { return ids[x.r.IntN(len(ids))] }

// run submits about n commands, in requests of 1 to 8.
func (x *writerWorkload) run(n int) {
	for done := 0; done < n; {
		cmds := make([]domain.Command, 1+x.r.IntN(8))
		for i := range cmds {
			cmds[i] = x.command()
		}
		if x.r.IntN(30) == 0 {
			cmds = append(cmds, x.closing()...)
		}
		for i, r := range submit(x.t, x.w, cmds...) {
			if r.Err == nil {
				x.created(cmds[i])
			}
		}
		done += len(cmds)
		if x.r.IntN(8) == 0 {
			x.clock.Advance(time.Duration(x.r.IntN(120)) * time.Second)
		}
	}
}

func (x *writerWorkload) command() domain.Command {
	from, to := x.r.IntN(x.accounts), x.r.IntN(x.accounts)
	switch n := x.r.IntN(100); {
	case n < 30 || len(x.reverse) == 0:
		id, amount := x.fresh("t"), x.amount()
		x.retry[id] = func() domain.Command { return transferCmd(id, from, to, amount) }
		return transferCmd(id, from, to, amount)
	case n < 50:
		id, amount, timeout := x.fresh("h"), x.amount(), uint32(x.r.IntN(3)*90)
		x.retry[id] = func() domain.Command { return holdCmd(id, from, to, amount, timeout) }
		return holdCmd(id, from, to, amount, timeout)
	case n < 60 && len(x.holds) > 0:
		c := &domain.PostPending{ID: x.fresh("p"), PendingID: x.pick(x.holds)}
		if x.r.IntN(2) == 0 {
			c.Amounts = []string{"1.00"}
		}
		return c
	case n < 66 && len(x.holds) > 0:
		return &domain.VoidPending{ID: x.fresh("v"), PendingID: x.pick(x.holds)}
	case n < 78:
		c := &domain.ReverseTransfer{ID: x.fresh("r"), TransferID: x.pick(x.reverse)}
		if x.r.IntN(2) == 0 {
			c.Amounts = []string{"0.50"}
		}
		return c
	case n < 86:
		return x.retry[x.pick(x.transfer)]()
	case n < 92:
		c := &domain.SetAccountBounds{AccountID: fmt.Sprintf("a%d", from)}
		if x.r.IntN(2) == 0 {
			c.MinBalance = ptr("-" + x.amount())
		}
		return c
	case n < 96:
		return &domain.SetAccountMetadata{AccountID: fmt.Sprintf("a%d", from), Metadata: map[string]string{"k": x.amount()}}
	case n < 99:
		// Categories under cat0, defined and redefined (moved to a root and
		// back, patterns changed): the snapshot must carry the tree.
		name, parent := fmt.Sprintf("cat%d", from%4), "cat0"
		if name == parent || x.r.IntN(3) == 0 {
			parent = ""
		}
		return &domain.DefineCategory{Name: name, Parent: parent, Patterns: []string{fmt.Sprintf("a%d", to), "c:*"}}
	default:
		return &domain.CloseAccount{AccountID: fmt.Sprintf("a%d", from)}
	}
}

// closing opens an account, moves money to it and closes it (the workload's
// own accounts, with holds on them, seldom can close).
func (x *writerWorkload) closing() []domain.Command {
	id, tid := x.fresh("c"), x.fresh("t")
	transfer := func() domain.Command {
		return &domain.CreateTransfer{ID: tid, Postings: []domain.PostingInput{{Debit: "a0", Credit: id, Asset: "USD", Amount: "1.00"}}}
	}
	x.retry[tid] = transfer
	return []domain.Command{&domain.OpenAccount{ID: id, Asset: "USD", Normal: domain.SideCredit}, transfer(), &domain.CloseAccount{AccountID: id}}
}

func (x *writerWorkload) created(c domain.Command) {
	switch c := c.(type) {
	case *domain.CreateTransfer:
		x.ids, x.transfer = append(x.ids, c.ID), append(x.transfer, c.ID)
		if c.Pending {
			x.holds = append(x.holds, c.ID)
		} else {
			x.reverse = append(x.reverse, c.ID)
		}
	case *domain.PostPending:
		x.ids, x.reverse = append(x.ids, c.ID), append(x.reverse, c.ID)
	case *domain.VoidPending, *domain.ReverseTransfer:
		x.ids = append(x.ids, c.CommandID())
	}
}

// fullView is all of a state that can be compared across processes: every
// field (the reversed amounts and the holds included) but the id index,
// whose hashes are keyed per state and which is compared through
// TransferCandidate, id by id, instead; the accounts, whose table's index
// is keyed per state too, compared by id; and the order due holds come in.
type fullView struct {
	State      *domain.State
	Accounts   map[string]domain.Account
	Transfers  int
	Candidates map[string]uint64
	Due        []string
}

var fullViewEqual = cmp.Options{
	cmp.AllowUnexported(domain.State{}, domain.Units{}),
	cmpopts.IgnoreUnexported(domain.Hold{}),
	// The monitoring part (rules, velocity rings) compares whole.
	cmp.Exporter(func(t reflect.Type) bool {
		return t.Name() != "Hold" && t.PkgPath() == "github.com/ledgerd/ledger/domain"
	}),
	// The heap's numbers run ahead in a live state (an atomic request
	// rolled back keeps its number); Due compares the order they give.
	cmpopts.IgnoreFields(domain.State{}, "ids", "accounts", "collided", "key", "expiries", "expirySeq", "journal", "moved"),
}

func viewFull(s *domain.State, ids []string) fullView {
	v := fullView{State: s, Accounts: map[string]domain.Account{}, Transfers: s.TransferCount(), Candidates: map[string]uint64{}}
	for a := range s.Accounts() {
		v.Accounts[a.ID] = *a
		// The index finds it: a state whose look-ups miss an account it
		// holds is not the replay's, whatever its accounts.
		if b, ok := s.Account(a.ID); !ok || b != a {
			v.Accounts["unfound "+a.ID] = *a
		}
	}
	for _, id := range append(ids, "never-taken") {
		if pos, ok := s.TransferCandidate(id); ok {
			v.Candidates[id] = pos
		}
	}
	v.Due = s.DueHolds(time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC), domain.HoldsMax)
	return v
}

// equalsReplay checks that the writer's whole state is the one a fold of
// the whole log gives.
func equalsReplay(t *testing.T, w *commands.Writer, store *eventstore.Store, ledger string, ids []string) {
	t.Helper()
	replay := domain.NewState()
	for _, r := range readLog(t, store, ledger) {
		e, err := domain.UnmarshalEvent(r.Type, r.SchemaVersion, r.Payload)
		testenv.NoError(t, err)
		replay.Evolve(r.Position, e)
	}
	want := viewFull(replay, ids)
	var diff string
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // a writer that cannot load never answers
	defer cancel()
	testenv.NoError(t, w.Read(ctx, func(s *domain.State) { diff = cmp.Diff(viewFull(s, ids), want, fullViewEqual) }))
	if diff != "" {
		t.Errorf("writer state differs from a replay of the whole log (-writer +replay):\n%s", diff)
	}
}

// snapshotPositions lists the ledger's snapshots, newest first.
func snapshotPositions(t *testing.T, store *eventstore.Store, ledger string) []uint64 {
	t.Helper()
	list, err := store.ListSnapshots(context.Background(), ledger)
	testenv.NoError(t, err)
	var out []uint64
	for _, s := range list {
		out = append(out, s.Position)
	}
	return out
}

// TestWriterRestartsFromSnapshot: a writer takes snapshots as it goes; one
// restarted later loads the newest, folds the log after it, and then equals a
// replay of the whole log, answers retries of transfers from before the
// snapshot (read back from the log: its recent ring starts empty), resolves
// holds placed before it, and goes on deciding as a replay would.
func TestWriterRestartsFromSnapshot(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	ledger := testenv.Name(t)
	clock := newTestClock()
	logs := &logBuffer{}
	spoolDir := t.TempDir()
	opts := commands.Options{Ledger: ledger, Store: store, Clock: clock.Now, Logger: logs.logger(), SnapshotEvery: snapshotEveryTest,
		SnapshotSpoolDir: spoolDir}
	w, stop := startWriterWith(t, opts)
	x := newWriterWorkload(t, w, clock, 12)
	x.run(600)
	stop() // waits for the snapshot being written
	if n := strings.Count(logs.String(), "spooled=file"); n < eventstore.SnapshotsKept {
		t.Errorf("%d snapshots saved from a spool file, want every one (%d at least)", n, eventstore.SnapshotsKept)
	}
	if names, err := os.ReadDir(spoolDir); err != nil || len(names) != 0 {
		t.Errorf("the spool directory holds %v (%v) once the writer stopped, want nothing", names, err)
	}
	if n := commands.SnapshotSpoolsOpen(w); n != 0 {
		t.Errorf("%d snapshot spools left open once the writer stopped", n)
	}
	types := map[string]int{}
	for _, r := range readLog(t, store, ledger) {
		types[r.Type]++
	}
	for _, typ := range []string{domain.TypeTransferPending, domain.TypePendingPosted, domain.TypePendingVoided, domain.TypePendingExpired,
		domain.TypeTransferReversed, domain.TypeAccountClosed, domain.TypeAccountBoundsChanged, domain.TypeAccountMetadataSet,
		domain.TypeCategoryDefined} {
		if types[typ] == 0 {
			t.Errorf("the workload wrote no %s: it tests less than it claims (%v)", typ, types)
		}
	}
	snaps := snapshotPositions(t, store, ledger)
	if len(snaps) != eventstore.SnapshotsKept {
		t.Fatalf("snapshots %v, want the %d newest kept", snaps, eventstore.SnapshotsKept)
	}

	// A tail the snapshots do not cover: a writer with snapshots off.
	noSnapshots := opts
	noSnapshots.SnapshotEvery = 0
	w, stop = startWriterWith(t, noSnapshots)
	x.w = w
	x.run(250)
	stop()
	if got := snapshotPositions(t, store, ledger); !cmp.Equal(got, snaps) {
		t.Fatalf("a writer with SnapshotEvery 0 changed the snapshots: %v, were %v", got, snaps)
	}

	w, _ = startWriterWith(t, opts)
	x.w = w
	equalsReplay(t, w, store, ledger, x.ids)
	loads := logs.loads(t)
	if want := []uint64{0, 0, snaps[0]}; !cmp.Equal(loads, want) {
		t.Fatalf("loads from snapshots at %v, want %v (the last from the newest snapshot)", loads, want)
	}
	if head(t, store, ledger) <= snaps[0]+50 {
		t.Fatalf("head %d: the tail after the snapshot at %d is too short to test", head(t, store, ledger), snaps[0])
	}
	first := x.transfer[0]
	pos, _ := liveCandidate(t, w, first)
	res := submit(t, w, x.retry[first]())
	var exists *domain.ExistsError
	if res[0].Position != pos || !errors.As(res[0].Err, &exists) {
		t.Errorf("retry of %s after the restart: %v at %d, want EXISTS at %d", first, res[0].Err, res[0].Position, pos)
	}
	x.run(200)
	equalsReplay(t, w, store, ledger, x.ids)
}

// TestWriterSnapshotsWithoutATemporaryFile: where no temporary file can be
// made, snapshots are held in memory until written, with a warning, and a
// restart loads the newest and equals a replay.
func TestWriterSnapshotsWithoutATemporaryFile(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	ledger := testenv.Name(t)
	clock := newTestClock()
	logs := &logBuffer{}
	opts := commands.Options{Ledger: ledger, Store: store, Clock: clock.Now, Logger: logs.logger(), SnapshotEvery: snapshotEveryTest,
		SnapshotSpoolDir: filepath.Join(t.TempDir(), "missing")}
	w, stop := startWriterWith(t, opts)
	x := newWriterWorkload(t, w, clock, 6)
	x.run(200)
	stop()
	snaps := snapshotPositions(t, store, ledger)
	if len(snaps) == 0 {
		t.Fatal("no snapshot saved")
	}
	if !strings.Contains(logs.String(), "snapshot spooled in memory") || !strings.Contains(logs.String(), "spooled=memory") {
		t.Errorf("no warning that snapshots were held in memory:\n%s", logs.String())
	}
	w, _ = startWriterWith(t, opts)
	x.w = w
	equalsReplay(t, w, store, ledger, x.ids)
	if loads := logs.loads(t); len(loads) != 2 || loads[1] != snaps[0] {
		t.Fatalf("loads from snapshots at %v, want the second from the newest, %d", loads, snaps[0])
	}
}

// TestWriterSnapshotSpoolFails: a snapshot whose spool fails (a full disk)
// is dropped with a warning, its spool closed, and the next is due
// SnapshotEvery events later, not at every batch; commands go on.
func TestWriterSnapshotSpoolFails(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	ledger := testenv.Name(t)
	clock := newTestClock()
	logs := &logBuffer{}
	opts := commands.Options{Ledger: ledger, Store: store, Clock: clock.Now, Logger: logs.logger(), SnapshotEvery: snapshotEveryTest}
	commands.FailSnapshotSpools(&opts)
	w, stop := startWriterWith(t, opts)
	x := newWriterWorkload(t, w, clock, 6)
	x.run(200)
	stop()
	if snaps := snapshotPositions(t, store, ledger); len(snaps) != 0 {
		t.Fatalf("snapshots %v saved from spools that failed", snaps)
	}
	dropped := strings.Count(logs.String(), "snapshot not taken")
	if due := int(head(t, store, ledger) / snapshotEveryTest); dropped < 1 || dropped > due {
		t.Errorf("%d snapshots dropped over %d events, want 1 to %d: one each %d events", dropped,
			head(t, store, ledger), due, snapshotEveryTest)
	}
	if n := commands.SnapshotSpoolsOpen(w); n != 0 {
		t.Errorf("%d snapshot spools left open", n)
	}
	w, _ = startWriterWith(t, commands.Options{Ledger: ledger, Store: store, Clock: clock.Now, Logger: logs.logger()})
	x.w = w
	equalsReplay(t, w, store, ledger, x.ids)
}

// TestWriterSnapshotDroppedWithItsBatch: a snapshot is taken once its batch
// is decided, before that batch's append. When the append then fails, the
// snapshot holds a state the log never had: it is dropped, not saved, and its
// spool closed; a writer started afterwards equals a replay of the log.
func TestWriterSnapshotDroppedWithItsBatch(t *testing.T) {
	t.Parallel()
	store, pool := newStoreAndPool(t)
	ledger := testenv.Name(t)
	logs := &logBuffer{}
	spoolDir := t.TempDir()
	var (
		armed      atomic.Bool
		archiveErr = make(chan error, 1)
	)
	opts := commands.Options{Ledger: ledger, Store: store, Logger: logs.logger(), SnapshotEvery: snapshotEveryTest,
		SnapshotSpoolDir: spoolDir}
	commands.SetBeforeAppend(&opts, func(uint64) {
		if armed.CompareAndSwap(true, false) {
			// Archived under the append: its check of the status fails it.
			_, err := pool.Exec(context.Background(), `UPDATE ledgers SET status = 'archived' WHERE ledger = $1`, ledger)
			archiveErr <- err
		}
	})
	w, stop := startWriterWith(t, opts)
	setup(t, w, 2)
	before := head(t, store, ledger)
	armed.Store(true)
	cmds := make([]domain.Command, snapshotEveryTest)
	for i := range cmds {
		cmds[i] = transferCmd(fmt.Sprintf("t%d", i), 0, 1, "1.00")
	}
	if _, err := w.Submit(context.Background(), cmds); err == nil {
		t.Fatal("a batch whose append failed was acknowledged")
	}
	testenv.NoError(t, <-archiveErr)
	stop()
	dropped := regexp.MustCompile(fmt.Sprintf(`msg="snapshot dropped: its batch failed" ledger=\S+ position=%d\n`, before+snapshotEveryTest))
	if !dropped.MatchString(logs.String()) {
		t.Fatalf("no %s in the writer's log:\n%s", dropped, logs.String())
	}
	// The store would refuse it (its position is not in the log): the
	// writer must not have tried.
	if strings.Contains(logs.String(), "snapshot not saved") {
		t.Fatalf("the writer tried to save the snapshot of a failed batch:\n%s", logs.String())
	}
	if snaps := snapshotPositions(t, store, ledger); len(snaps) != 0 {
		t.Fatalf("snapshots %v saved, want none: the batch they follow failed", snaps)
	}
	if n := commands.SnapshotSpoolsOpen(w); n != 0 {
		t.Errorf("%d snapshot spools left open", n)
	}
	if names, err := os.ReadDir(spoolDir); err != nil || len(names) != 0 {
		t.Errorf("the spool directory holds %v (%v), want nothing", names, err)
	}
	if got := head(t, store, ledger); got != before {
		t.Fatalf("head %d after the failed append, want %d", got, before)
	}
	_, err := pool.Exec(context.Background(), `UPDATE ledgers SET status = 'active' WHERE ledger = $1`, ledger)
	testenv.NoError(t, err)
	w, _ = startWriterWith(t, commands.Options{Ledger: ledger, Store: store, Logger: logs.logger()})
	mustCreate(t, submit(t, w, cmds...))
	equalsReplay(t, w, store, ledger, []string{"a0", "a1"})
}

func liveCandidate(t *testing.T, w *commands.Writer, id string) (uint64, bool) {
	t.Helper()
	var (
		pos uint64
		ok  bool
	)
	testenv.NoError(t, w.Read(context.Background(), func(s *domain.State) { pos, ok = s.TransferCandidate(id) }))
	return pos, ok
}

// formatColumnSet says the newest snapshot is of format version (its row's
// column only, its data as it is: relabel rewrites the data);
// the writer must then load the one before it.
func formatColumnSet(version int) func(t *testing.T, pool *pgxpool.Pool, ledger string, snaps []uint64) uint64 {
	return func(t *testing.T, pool *pgxpool.Pool, ledger string, snaps []uint64) uint64 {
		_, err := pool.Exec(context.Background(), `UPDATE snapshots SET format_version = $3 WHERE ledger = $1 AND position = $2`,
			ledger, int64(snaps[0]), version)
		testenv.NoError(t, err)
		return snaps[1]
	}
}

// TestWriterIgnoresBadSnapshots: a snapshot that fails any check is ignored
// with a warning, and the writer falls back to the next older one, or to the
// whole log; either way its state is the log's.
func TestWriterIgnoresBadSnapshots(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// damage runs on the ledger's snapshots, positions newest first.
		damage func(t *testing.T, pool *pgxpool.Pool, ledger string, snaps []uint64) (fallback uint64)
		reason string
	}{
		{"flipped byte", func(t *testing.T, pool *pgxpool.Pool, ledger string, snaps []uint64) uint64 {
			flipByte(t, pool, ledger, snaps[0], false)
			return snaps[1]
		}, "checksum mismatch"},
		{"checksum not the data's", func(t *testing.T, pool *pgxpool.Pool, ledger string, snaps []uint64) uint64 {
			_, err := pool.Exec(context.Background(), `UPDATE snapshots SET checksum = sha256('another'::bytea)
				WHERE ledger = $1 AND position = $2`, ledger, int64(snaps[0]))
			testenv.NoError(t, err)
			return snaps[1]
		}, "checksum mismatch"},
		{"flipped byte under a recomputed checksum", func(t *testing.T, pool *pgxpool.Pool, ledger string, snaps []uint64) uint64 {
			flipByte(t, pool, ledger, snaps[0], true)
			return snaps[1]
		}, "snapshot corrupt"},
		{"hash not the log's", func(t *testing.T, pool *pgxpool.Pool, ledger string, snaps []uint64) uint64 {
			_, err := pool.Exec(context.Background(), `UPDATE snapshots SET hash = (SELECT hash FROM events WHERE ledger = $1 AND position = 1)
				WHERE ledger = $1 AND position = $2`, ledger, int64(snaps[0]))
			testenv.NoError(t, err)
			return snaps[1]
		}, "not the log's"},
		{"format unknown", formatColumnSet(99), "format 99"},
		{"format before 40-bit hashes", formatColumnSet(4), "format 4, this build reads"},
		{"data of format 4 under good checksums", func(t *testing.T, pool *pgxpool.Pool, ledger string, snaps []uint64) uint64 {
			relabel(t, pool, ledger, snaps[0], 4)
			return snaps[1]
		}, "its id index holds 64-bit hashes"},
		{"every snapshot bad", func(t *testing.T, pool *pgxpool.Pool, ledger string, snaps []uint64) uint64 {
			for _, pos := range snaps {
				flipByte(t, pool, ledger, pos, true)
			}
			return 0
		}, "snapshot corrupt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := newSnapshotted(t, 300)
			store, pool, ledger, opts, x, snaps := l.store, l.pool, l.ledger, l.opts, l.x, l.snaps
			if len(snaps) < 2 {
				t.Fatalf("snapshots %v, want at least 2", snaps)
			}
			want := tc.damage(t, pool, ledger, snaps)

			logs := &logBuffer{}
			opts.Logger = logs.logger()
			w, _ := startWriterWith(t, opts)
			x.w = w
			equalsReplay(t, w, store, ledger, x.ids)
			if got := logs.loads(t); !cmp.Equal(got, []uint64{want}) {
				t.Errorf("loaded from the snapshot at %v, want [%d]", got, want)
			}
			warning := fmt.Sprintf(`level=WARN msg="snapshot ignored: falling back to an older one or the log" ledger=%s position=%d`, ledger, snaps[0])
			if text := logs.String(); !strings.Contains(text, warning) || !strings.Contains(text, tc.reason) {
				t.Errorf("log does not warn of the snapshot at %d (%q):\n%s", snaps[0], tc.reason, text)
			}
			x.run(50)
			equalsReplay(t, w, store, ledger, x.ids)
		})
	}
}

// TestWriterLoadsOnOneConnection: a writer whose store has a single
// connection loads its snapshot, whose data streams in while the writer
// checks the snapshot against the log: the data's statement is sent only
// once that check is done (a load that held it first waited for itself).
func TestWriterLoadsOnOneConnection(t *testing.T) {
	t.Parallel()
	l := newSnapshotted(t, 200)
	opts, snaps := l.opts, l.snaps
	if len(snaps) == 0 {
		t.Fatal("no snapshot taken")
	}
	cfg := l.pool.Config().Copy()
	cfg.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	testenv.NoError(t, err)
	t.Cleanup(pool.Close)
	logs := &logBuffer{}
	opts.Store, opts.Logger = eventstore.New(pool), logs.logger()
	w, _ := startWriterWith(t, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	testenv.NoError(t, w.Read(ctx, func(*domain.State) {}))
	if got := logs.loads(t); !cmp.Equal(got, []uint64{snaps[0]}) {
		t.Errorf("loaded from the snapshot at %v, want [%d]:\n%s", got, snaps[0], logs.String())
	}
}

// snapshotted is a fresh ledger after a workload of commands with snapshots
// on, its writer stopped.
type snapshotted struct {
	store  *eventstore.Store
	pool   *pgxpool.Pool
	ledger string
	opts   commands.Options
	x      *writerWorkload
	snaps  []uint64 // newest first
}

func newSnapshotted(t *testing.T, commandsRun int) *snapshotted {
	t.Helper()
	l := &snapshotted{ledger: testenv.Name(t)}
	l.store, l.pool = newStoreAndPool(t)
	clock := newTestClock()
	l.opts = commands.Options{Ledger: l.ledger, Store: l.store, Clock: clock.Now, SnapshotEvery: snapshotEveryTest}
	w, stop := startWriterWith(t, l.opts)
	l.x = newWriterWorkload(t, w, clock, 8)
	l.x.run(commandsRun)
	// No snapshot is taken while the one before is being written: on a
	// busy box the workload may leave fewer than two, which the tests need.
	for range snapshottedRunsMax {
		if len(snapshotPositions(t, l.store, l.ledger)) >= 2 {
			break
		}
		l.x.run(commandsRun / 4)
	}
	stop()
	l.snaps = snapshotPositions(t, l.store, l.ledger)
	return l
}

// snapshottedRunsMax bounds the workloads newSnapshotted adds for a second
// snapshot.
const snapshottedRunsMax = 20

// flipByte flips a bit in the middle of a snapshot's data; with checksum, the
// column's checksum is recomputed, so that only the encoding's own finds it.
func flipByte(t *testing.T, pool *pgxpool.Pool, ledger string, pos uint64, checksum bool) {
	t.Helper()
	sql := `UPDATE snapshots SET data = set_byte(data, length(data) / 2, get_byte(data, length(data) / 2) # 16)
		WHERE ledger = $1 AND position = $2`
	if checksum {
		sql = `UPDATE snapshots SET data = d, checksum = sha256(d)
			FROM (SELECT set_byte(data, length(data) / 2, get_byte(data, length(data) / 2) # 16) AS d
				FROM snapshots WHERE ledger = $1 AND position = $2) AS flipped
			WHERE ledger = $1 AND position = $2`
	}
	tag, err := pool.Exec(context.Background(), sql, ledger, int64(pos))
	testenv.NoError(t, err)
	if tag.RowsAffected() != 1 {
		t.Fatalf("flip a byte of the snapshot at %d: %d rows", pos, tag.RowsAffected())
	}
}

// relabel gives the data of the snapshot at pos the format version v (one
// byte after the magic), with its own checksum and the store's recomputed:
// a snapshot of another format that passes every checksum.
func relabel(t *testing.T, pool *pgxpool.Pool, ledger string, pos uint64, v byte) {
	t.Helper()
	tag, err := pool.Exec(context.Background(), `UPDATE snapshots SET data = d, checksum = sha256(d)
		FROM (SELECT body || sha256(body) AS d
			FROM (SELECT set_byte(substring(data FROM 1 FOR length(data) - 32), 8, $3) AS body
				FROM snapshots WHERE ledger = $1 AND position = $2) AS relabelled) AS summed
		WHERE ledger = $1 AND position = $2`, ledger, int64(pos), int32(v))
	testenv.NoError(t, err)
	if tag.RowsAffected() != 1 {
		t.Fatalf("relabel the snapshot at %d: %d rows", pos, tag.RowsAffected())
	}
}

// slowSnapshots holds every snapshot write until released, counting the
// writes in flight.
type slowSnapshots struct {
	*eventstore.Store
	release            chan struct{}
	calls, inFlight    atomic.Int32
	maxInFlight        atomic.Int32
	firstCall          chan struct{}
	firstCallSignalled sync.Once
}

func (s *slowSnapshots) SaveSnapshotFrom(ctx context.Context, snap eventstore.Snapshot, size int, data io.Reader) error {
	s.calls.Add(1)
	n := s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	for m := s.maxInFlight.Load(); n > m && !s.maxInFlight.CompareAndSwap(m, n); m = s.maxInFlight.Load() {
	}
	s.firstCallSignalled.Do(func() { close(s.firstCall) })
	select {
	case <-s.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.Store.SaveSnapshotFrom(ctx, snap, size, data)
}

// TestWriterSnapshotWritesDoNotBlock: while a snapshot is being written,
// commands go on committing, and no other snapshot write starts: at most one
// is in flight; the next is taken once it is done.
func TestWriterSnapshotWritesDoNotBlock(t *testing.T) {
	t.Parallel()
	store := &slowSnapshots{Store: newStore(t), release: make(chan struct{}), firstCall: make(chan struct{})}
	ledger := testenv.Name(t)
	clock := newTestClock()
	w, stop := startWriterWith(t, commands.Options{Ledger: ledger, Store: store, Clock: clock.Now, SnapshotEvery: 5})
	x := newWriterWorkload(t, w, clock, 6)
	x.run(20)
	select {
	case <-store.firstCall:
	case <-time.After(10 * time.Second):
		t.Fatal("no snapshot write started in 10 s")
	}
	before := head(t, store.Store, ledger)
	x.run(300) // every request returns while the write is held
	if after := head(t, store.Store, ledger); after < before+50 || store.calls.Load() != 1 {
		t.Fatalf("while a snapshot write was held: head %d -> %d, %d writes started; want commits and 1 write",
			before, after, store.calls.Load())
	}
	close(store.release)
	// The held write finishes on its own goroutine; until it has, the writer
	// rightly takes no other snapshot.
	testenv.Eventually(t, 10*time.Second, func() error {
		if n := store.inFlight.Load(); n != 0 {
			return fmt.Errorf("%d snapshot writes still in flight", n)
		}
		return nil
	})
	x.run(100)
	testenv.Eventually(t, 10*time.Second, func() error {
		if n := store.calls.Load(); n < 2 {
			return fmt.Errorf("%d snapshot writes so far", n)
		}
		return nil
	})
	stop()
	if n, m := store.calls.Load(), store.maxInFlight.Load(); n < 2 || m != 1 {
		t.Errorf("%d snapshot writes, at most %d at once; want more than one, one at a time", n, m)
	}
	w, _ = startWriterWith(t, commands.Options{Ledger: ledger, Store: store.Store, Clock: clock.Now, SnapshotEvery: 5})
	equalsReplay(t, w, store.Store, ledger, x.ids)
}

// BenchmarkLoad measures a writer's start-up on a ledger of N events
// (LEDGER_BENCH_LOAD_EVENTS, default 200,000: transfers over 10,000 accounts,
// one in a hundred a hold left open): folding the whole log ("log"), and
// loading a snapshot taken at the head ("snapshot"; a snapshot taken every
// SnapshotEvery events leaves a tail of up to that many to fold, at the rate
// "log" shows). The ledger is written straight into the store, sealed, in
// AppendMax chunks. At ten million events (some 3 GB of log, 20 minutes to
// write, 2 GB of memory):
//
//	LEDGER_BENCH_LOAD_EVENTS=10000000 go test -run '^$' -bench BenchmarkLoad -benchtime 1x -timeout 2h ./commands
func BenchmarkLoad(b *testing.B) {
	events := 200_000
	if v := os.Getenv("LEDGER_BENCH_LOAD_EVENTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 10_002 {
			b.Fatalf("LEDGER_BENCH_LOAD_EVENTS=%q: want a number of events over 10,001", v)
		}
		events = n
	}
	store, _ := newStoreAndPool(b)
	ledger := testenv.Name(b)
	began := time.Now()
	s, hash := writeBenchLog(b, store, ledger, events)
	wrote := time.Since(began)
	began = time.Now()
	var data bytes.Buffer
	if err := s.MarshalSnapshot(&data); err != nil {
		b.Fatal(err)
	}
	encoded := time.Since(began)
	testenv.NoError(b, store.SaveSnapshot(context.Background(), eventstore.Snapshot{Ledger: ledger, Position: uint64(events),
		Hash: hash, FormatVersion: domain.SnapshotFormatVersion, Data: data.Bytes()}))
	b.Logf("%d events written in %v; snapshot of %d bytes (%.1f a transfer) encoded in %v", events, wrote.Round(time.Millisecond),
		data.Len(), float64(data.Len())/float64(s.TransferCount()), encoded.Round(time.Millisecond))
	s = nil
	for _, tc := range []struct {
		name  string
		every int
	}{{"log", 0}, {"snapshot", 10 * events}} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				if pos := loadOnce(b, store, ledger, tc.every); pos != uint64(events) {
					b.Fatalf("loaded at %d, want %d", pos, events)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/start")
		})
	}
}

// loadOnce starts a writer, waits until it serves, and stops it.
func loadOnce(b *testing.B, store *eventstore.Store, ledger string, every int) uint64 {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := commands.NewWriter(commands.Options{Ledger: ledger, Store: store, SnapshotEvery: every, Logger: slog.New(slog.DiscardHandler)})
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(ctx) }()
	var pos uint64
	testenv.NoError(b, w.Read(ctx, func(s *domain.State) { pos = s.Position() }))
	cancel()
	<-done
	return pos
}

// writeBenchLog appends events to ledger: an asset, 10,000 accounts, and
// transfers, one in a hundred a hold without timeout. It returns the state
// they fold into and the head's hash.
func writeBenchLog(b *testing.B, store *eventstore.Store, ledger string, events int) (*domain.State, eventstore.Hash) {
	b.Helper()
	const accounts = 10_000
	ctx := context.Background()
	s := domain.NewState()
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	var (
		prev, head eventstore.Hash
		recs       []eventstore.Record
		arena      []byte
		expected   uint64
	)
	flush := func() {
		testenv.NoError(b, store.Append(ctx, ledger, expected, head, recs))
		expected, head = recs[len(recs)-1].Position, recs[len(recs)-1].Hash
		recs, arena = recs[:0], nil
	}
	for pos := uint64(1); pos <= uint64(events); pos++ {
		var (
			e  domain.Event
			id string
		)
		switch i := int(pos) - 2; {
		case pos == 1:
			e, id = domain.AssetDefined{Code: "USD", Scale: 2}, "USD"
		case i < accounts:
			id = fmt.Sprintf("acc-%d", i)
			e = domain.AccountOpened{ID: id, Asset: "USD", Normal: domain.SideDebit}
		default:
			id = fmt.Sprintf("t-%d", i)
			postings := []domain.Posting{{Debit: fmt.Sprintf("acc-%d", i%accounts), Credit: fmt.Sprintf("acc-%d", (i/accounts+i+1)%accounts),
				Asset: "USD", Amount: domain.Amount{Units: domain.UnitsFromInt64(int64(1 + i%10_000)), Scale: 2}}}
			if i%100 == 0 {
				e = domain.TransferPending{ID: id, Postings: postings, EffectiveAt: at}
			} else {
				e = domain.TransferCommitted{ID: id, Postings: postings, EffectiveAt: at}
			}
		}
		s.Evolve(pos, e)
		if arena == nil {
			arena = make([]byte, 0, 256*eventstore.AppendMax)
		}
		start := len(arena)
		arena = domain.AppendEvent(arena, e)
		r := eventstore.Record{Ledger: ledger, Position: pos, Type: e.EventType(), SchemaVersion: domain.SchemaVersion,
			RecordedAt: at, CommandID: id, Payload: arena[start:len(arena):len(arena)]}
		r.Seal(prev)
		prev = r.Hash
		recs = append(recs, r)
		if len(recs) == eventstore.AppendMax {
			flush()
		}
	}
	if len(recs) > 0 {
		flush()
	}
	return s, head
}

func ptr(s string) *string { return &s }
