package commands_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ledgerd/ledger/commands"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func newStore(t *testing.T) *eventstore.Store {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testenv.MigratedPostgresURL(t))
	testenv.NoError(t, err)
	t.Cleanup(pool.Close)
	testenv.NoError(t, eventstore.Migrate(ctx, pool))
	return eventstore.New(pool)
}

// startWriter runs a writer until the test ends (or stop is called).
func startWriter(t *testing.T, ledger string, store commands.Store) (w *commands.Writer, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w = commands.NewWriter(commands.Options{Ledger: ledger, Store: store})
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return w, stop
}

func submit(t *testing.T, w *commands.Writer, cmds ...domain.Command) []commands.Result {
	t.Helper()
	res, err := w.Submit(context.Background(), cmds)
	testenv.NoError(t, err)
	return res
}

func mustCreate(t *testing.T, res []commands.Result) {
	t.Helper()
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("item %d: %v", i, r.Err)
		}
	}
}

func setup(t *testing.T, w *commands.Writer, accounts int) {
	t.Helper()
	mustCreate(t, submit(t, w, &domain.DefineAsset{Code: "USD", Scale: 2}))
	cmds := make([]domain.Command, accounts)
	for i := range cmds {
		cmds[i] = &domain.OpenAccount{ID: fmt.Sprintf("a%d", i), Asset: "USD", Normal: domain.SideCredit}
	}
	mustCreate(t, submit(t, w, cmds...))
}

func transferCmd(id string, from, to int, amount string) *domain.CreateTransfer {
	return &domain.CreateTransfer{ID: id, Postings: []domain.PostingInput{
		{Debit: fmt.Sprintf("a%d", from), Credit: fmt.Sprintf("a%d", to), Asset: "USD", Amount: amount}}}
}

// snapshot is what the tests compare of a state: each account's totals.
func snapshot(s *domain.State, accounts int) map[string][2]string {
	out := make(map[string][2]string, accounts)
	for i := 0; i < accounts; i++ {
		a, ok := s.Account(fmt.Sprintf("a%d", i))
		if !ok {
			continue
		}
		out[a.ID] = [2]string{a.DebitsPosted.String(), a.CreditsPosted.String()}
	}
	return out
}

func liveSnapshot(t *testing.T, w *commands.Writer, accounts int) (map[string][2]string, uint64) {
	t.Helper()
	var (
		snap map[string][2]string
		pos  uint64
	)
	testenv.NoError(t, w.Read(context.Background(), func(s *domain.State) { snap, pos = snapshot(s, accounts), s.Position() }))
	return snap, pos
}

// replaySnapshot folds the whole log into a fresh state.
func replaySnapshot(t *testing.T, store *eventstore.Store, ledger string, accounts int) (map[string][2]string, uint64) {
	t.Helper()
	s := domain.NewState()
	for {
		recs, err := store.Read(context.Background(), ledger, s.Position()+1, eventstore.ReadMax)
		testenv.NoError(t, err)
		if len(recs) == 0 {
			return snapshot(s, accounts), s.Position()
		}
		for _, r := range recs {
			e, err := domain.UnmarshalEvent(r.Type, r.SchemaVersion, r.Payload)
			testenv.NoError(t, err)
			s.Evolve(r.Position, e)
		}
	}
}

func equalSnapshots(t *testing.T, got, want map[string][2]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d accounts, want %d", len(got), len(want))
	}
	for id, g := range got {
		if g != want[id] {
			t.Errorf("%s: debits/credits %v, want %v", id, g, want[id])
		}
	}
}

func TestWriterConcurrentSubmitsMatchReplay(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	ledger := testenv.Name(t)
	w, _ := startWriter(t, ledger, store)
	const accounts, clients, perClient = 20, 16, 40
	setup(t, w, accounts)
	var wg sync.WaitGroup
	var created atomic.Int64
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perClient; i++ {
				cmd := transferCmd(fmt.Sprintf("t-%d-%d", c, i), (c+i)%accounts, (c+i+1)%accounts, fmt.Sprintf("%d.%02d", i+1, c))
				res, err := w.Submit(context.Background(), []domain.Command{cmd})
				if err != nil || res[0].Err != nil {
					t.Errorf("transfer: %v %v", err, res)
					return
				}
				created.Add(1)
			}
		}()
	}
	wg.Wait()
	live, livePos := liveSnapshot(t, w, accounts)
	replayed, replayPos := replaySnapshot(t, store, ledger, accounts)
	if livePos != replayPos || livePos != uint64(1+accounts)+uint64(created.Load()) {
		t.Fatalf("live position %d, replay %d, want %d", livePos, replayPos, 1+accounts+int(created.Load()))
	}
	equalSnapshots(t, live, replayed)
}

func TestWriterIdempotentAcrossRestart(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	ledger := testenv.Name(t)
	w, stop := startWriter(t, ledger, store)
	setup(t, w, 3)
	first := submit(t, w, transferCmd("t1", 0, 1, "10.00"), transferCmd("t2", 1, 2, "2.50"))
	mustCreate(t, first)
	stop()

	w2, _ := startWriter(t, ledger, store)
	again := submit(t, w2, transferCmd("t1", 0, 1, "10.00"), transferCmd("t2", 1, 2, "2.5"), transferCmd("t3", 0, 2, "1.00"))
	for i := 0; i < 2; i++ {
		var exists *domain.ExistsError
		if !errors.As(again[i].Err, &exists) || again[i].Position != first[i].Position {
			t.Errorf("retry %d: %v at %d, want EXISTS at %d", i, again[i].Err, again[i].Position, first[i].Position)
		}
	}
	if again[2].Err != nil || again[2].Position != first[1].Position+1 {
		t.Errorf("new transfer: %v at %d, want created at %d", again[2].Err, again[2].Position, first[1].Position+1)
	}
	diff := submit(t, w2, transferCmd("t1", 0, 1, "10.01"))
	if !errors.Is(diff[0].Err, domain.ErrExistsWithDifferentFields) || domain.FieldOf(diff[0].Err) != "postings[0].amount" {
		t.Errorf("changed retry: %v (field %q), want EXISTS_WITH_DIFFERENT_FIELDS on postings[0].amount", diff[0].Err, domain.FieldOf(diff[0].Err))
	}
}

func TestWriterBadInputAppendsNothing(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	ledger := testenv.Name(t)
	w, _ := startWriter(t, ledger, store)
	setup(t, w, 2)
	mustCreate(t, submit(t, w, &domain.OpenAccount{ID: "eur", Asset: "USD", Normal: domain.SideCredit}))
	head, _, err := store.Head(context.Background(), ledger)
	testenv.NoError(t, err)
	bad := []struct {
		cmd  domain.Command
		want error
	}{
		{transferCmd("x1", 0, 7, "1.00"), domain.ErrAccountNotFound},
		{transferCmd("x2", 0, 0, "1.00"), domain.ErrSameAccount},
		{transferCmd("x3", 0, 1, "1.001"), domain.ErrInvalidAmount},
		{transferCmd("x4", 0, 1, "0"), domain.ErrInvalidAmount},
		{transferCmd("x5", 0, 1, "-1.00"), domain.ErrInvalidAmount},
		{transferCmd("bad id", 0, 1, "1.00"), domain.ErrInvalidField},
		{&domain.CreateTransfer{ID: "x6", Postings: []domain.PostingInput{{Debit: "a0", Credit: "a1", Asset: "EUR", Amount: "1"}}}, domain.ErrAssetNotFound},
	}
	cmds := make([]domain.Command, len(bad))
	for i, b := range bad {
		cmds[i] = b.cmd
	}
	res := submit(t, w, cmds...)
	for i, b := range bad {
		if !errors.Is(res[i].Err, b.want) {
			t.Errorf("item %d: %v, want %v", i, res[i].Err, b.want)
		}
	}
	after, _, err := store.Head(context.Background(), ledger)
	testenv.NoError(t, err)
	if after != head {
		t.Errorf("head moved from %d to %d on refused input", head, after)
	}
}

// TestWriterFencedStepsDownAndReloads: two writers on one ledger, as after a
// botched failover. The one whose head is stale is fenced off, reloads, and the
// log stays one gapless chain holding each acknowledged transfer once.
func TestWriterFencedStepsDownAndReloads(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	ledger := testenv.Name(t)
	a, _ := startWriter(t, ledger, store)
	setup(t, a, 4)
	b, _ := startWriter(t, ledger, store)
	testenv.NoError(t, b.Read(context.Background(), func(*domain.State) {})) // b has loaded
	mustCreate(t, submit(t, a, transferCmd("ta", 0, 1, "1.00")))
	// b's state is stale: its append is fenced and it answers Unavailable.
	if _, err := b.Submit(context.Background(), []domain.Command{transferCmd("tb", 2, 3, "1.00")}); !errors.Is(err, commands.ErrUnavailable) {
		t.Fatalf("stale writer: err = %v, want ErrUnavailable", err)
	}
	// After reloading, b knows ta and applies tb on top.
	testenv.Eventually(t, 10*time.Second, func() error {
		res, err := b.Submit(context.Background(), []domain.Command{transferCmd("ta", 0, 1, "1.00"), transferCmd("tb", 2, 3, "1.00")})
		if err != nil {
			return err
		}
		if !errors.Is(res[0].Err, domain.ErrExists) || res[1].Err != nil {
			return fmt.Errorf("results %v", res)
		}
		return nil
	})
	replayed, pos := replaySnapshot(t, store, ledger, 4)
	if pos != 1+4+2 {
		t.Errorf("log ends at %d, want %d", pos, 1+4+2)
	}
	live, _ := liveSnapshot(t, b, 4)
	equalSnapshots(t, live, replayed)
}

// failingStore fails the appends it is told to, around the real store.
type failingStore struct {
	*eventstore.Store
	failNext atomic.Int32
}

func (f *failingStore) Append(ctx context.Context, ledger string, expected uint64, prev eventstore.Hash, recs []eventstore.Record) error {
	if f.failNext.Add(-1) >= 0 {
		return errors.New("injected append failure")
	}
	return f.Store.Append(ctx, ledger, expected, prev, recs)
}

// TestWriterAppendFailureLosesAndDuplicatesNothing: a failed append fails its
// batch and every batch decided on top of it; the writer reloads from the log,
// and retries apply each transfer exactly once.
func TestWriterAppendFailureLosesAndDuplicatesNothing(t *testing.T) {
	t.Parallel()
	store := &failingStore{Store: newStore(t)}
	ledger := testenv.Name(t)
	w, _ := startWriter(t, ledger, store)
	const accounts = 10
	setup(t, w, accounts)
	store.failNext.Store(1)
	var wg sync.WaitGroup
	var acked sync.Map
	for c := 0; c < 8; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				cmd := transferCmd(fmt.Sprintf("t-%d-%d", c, i), c, (c+1)%accounts, "1.00")
				for { // a client retrying on Unavailable, with the same id
					res, err := w.Submit(context.Background(), []domain.Command{cmd})
					if errors.Is(err, commands.ErrUnavailable) {
						continue
					}
					if err != nil || (res[0].Err != nil && !errors.Is(res[0].Err, domain.ErrExists)) {
						t.Errorf("%s: %v %v", cmd.ID, err, res)
						return
					}
					acked.Store(cmd.ID, true)
					break
				}
			}
		}()
	}
	wg.Wait()
	n := 0
	acked.Range(func(any, any) bool { n++; return true })
	if n != 160 {
		t.Fatalf("%d transfers acknowledged, want 160", n)
	}
	replayed, pos := replaySnapshot(t, store.Store, ledger, accounts)
	if pos != 1+accounts+160 {
		t.Errorf("log ends at %d, want %d: each transfer exactly once", pos, 1+accounts+160)
	}
	for c := 0; c < 8; c++ {
		if got := replayed[fmt.Sprintf("a%d", c)][0]; got != "2000" {
			t.Errorf("a%d debits %s units, want 2000 (20 transfers of 1.00)", c, got)
		}
	}
	live, _ := liveSnapshot(t, w, accounts)
	equalSnapshots(t, live, replayed)
}

// TestWriterRetryOfOldTransferReadsTheLog: transfers long out of the writer's
// memory are still recognised, forever: their ids are indexed, and the
// original is read back from the log to answer EXISTS, or to name the field
// that differs.
func TestWriterRetryOfOldTransferReadsTheLog(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	ledger := testenv.Name(t)
	opts := commands.Options{Ledger: ledger, Store: store, BatchMax: 8}
	commands.SetRecentMax(&opts, 25) // the least above three batches of 8
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := commands.NewWriter(opts)
	go func() { _ = w.Run(ctx) }()
	setup(t, w, 4)
	var firstPos []uint64
	for i := 0; i < 60; i++ { // far more than the 25 kept in memory
		res := submit(t, w, transferCmd(fmt.Sprintf("old-%d", i), i%4, (i+1)%4, "1.00"))
		mustCreate(t, res)
		firstPos = append(firstPos, res[0].Position)
	}
	cmds := []domain.Command{
		transferCmd("old-0", 0, 1, "1.00"),  // identical: EXISTS
		transferCmd("old-1", 1, 2, "9.99"),  // changed: EXISTS_WITH_DIFFERENT_FIELDS
		transferCmd("new-1", 0, 3, "1.00"),  // new
		transferCmd("new-1", 0, 3, "1.00"),  // repeated within the batch: EXISTS
		transferCmd("old-59", 3, 0, "1.00"), // recent: EXISTS from memory
	}
	res := submit(t, w, cmds...)
	var exists *domain.ExistsError
	if !errors.As(res[0].Err, &exists) || res[0].Position != firstPos[0] {
		t.Errorf("old-0: %v at %d, want EXISTS at %d", res[0].Err, res[0].Position, firstPos[0])
	}
	if !errors.Is(res[1].Err, domain.ErrExistsWithDifferentFields) || domain.FieldOf(res[1].Err) != "postings[0].amount" {
		t.Errorf("old-1 changed: %v, want EXISTS_WITH_DIFFERENT_FIELDS on postings[0].amount", res[1].Err)
	}
	if res[2].Err != nil || !errors.As(res[3].Err, &exists) || res[3].Position != res[2].Position {
		t.Errorf("new-1 twice in a batch: %v / %v, want created then EXISTS at the same position", res[2], res[3])
	}
	if !errors.As(res[4].Err, &exists) || res[4].Position != firstPos[59] {
		t.Errorf("old-59: %v, want EXISTS at %d", res[4].Err, firstPos[59])
	}
	_, pos := replaySnapshot(t, store, ledger, 4)
	if want := uint64(1 + 4 + 60 + 1); pos != want {
		t.Errorf("log ends at %d, want %d: retries must append nothing", pos, want)
	}
}

// TestWriterRefusesAnEventOverTheLogsBound: an event over the log's bound
// would stall every reader of the log, so the writer refuses its command
// (the bound lowered here: every event Decide makes fits the real one) and
// applies nothing of it, alone or in an atomic request; the commands beside
// it go on.
func TestWriterRefusesAnEventOverTheLogsBound(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	ledger := testenv.Name(t)
	opts := commands.Options{Ledger: ledger, Store: store}
	commands.SetEventPayloadMax(&opts, 400)
	w, _ := startWriterWith(t, opts)
	setup(t, w, 2)
	head, _, err := store.Head(context.Background(), ledger)
	testenv.NoError(t, err)

	big := transferCmd("big", 0, 1, "5.00")
	big.Metadata = map[string]string{"note": strings.Repeat("x", 400)}
	res := submit(t, w, transferCmd("s1", 0, 1, "1.00"), big, transferCmd("s2", 0, 1, "2.00"))
	if res[0].Err != nil || res[2].Err != nil {
		t.Fatalf("the commands beside it: %v, %v", res[0].Err, res[2].Err)
	}
	if !errors.Is(res[1].Err, domain.ErrInvalidField) || !strings.Contains(res[1].Err.Error(), "over the log's bound of 400") {
		t.Fatalf("over the bound: %v, want ErrInvalidField naming the bound", res[1].Err)
	}
	if res[2].Position != res[0].Position+1 {
		t.Errorf("positions %d and %d: the refused event took a place", res[0].Position, res[2].Position)
	}

	atomic, err := w.SubmitWith(context.Background(),
		[]domain.Command{transferCmd("s3", 0, 1, "3.00"), big}, commands.SubmitOptions{Atomic: true})
	testenv.NoError(t, err)
	if !errors.Is(atomic[0].Err, commands.ErrLinkedItemFailed) || !errors.Is(atomic[1].Err, domain.ErrInvalidField) {
		t.Fatalf("atomic: %v, %v; want linked item failed and invalid field", atomic[0].Err, atomic[1].Err)
	}

	after, _, err := store.Head(context.Background(), ledger)
	testenv.NoError(t, err)
	if after != head+2 {
		t.Errorf("head %d, want %d: the two transfers beside the refused one", after, head+2)
	}
	live, livePos := liveSnapshot(t, w, 2)
	replayed, replayPos := replaySnapshot(t, store, ledger, 2)
	if livePos != replayPos {
		t.Errorf("writer at %d, log at %d", livePos, replayPos)
	}
	equalSnapshots(t, live, replayed)
	if got := live["a1"][1]; got != "300" {
		t.Errorf("a1 credited %s minor units, want 300 (s1 and s2 alone)", got)
	}
	mustCreate(t, submit(t, w, transferCmd("s4", 0, 1, "4.00")))
}
