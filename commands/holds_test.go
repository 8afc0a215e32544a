package commands_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ledgerd/ledger/commands"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/testenv"
)

// testClock is a clock the test moves by hand. It counts its reads, so that a
// test can tell the writer has gone round its loop.
type testClock struct {
	mu    sync.Mutex
	now   time.Time
	reads int
}

func newTestClock() *testClock { return &testClock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reads++
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func (c *testClock) Reads() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reads
}

// startWriterWith is startWriter with options (Ledger and Store included).
func startWriterWith(t *testing.T, opts commands.Options) (w *commands.Writer, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w = commands.NewWriter(opts)
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return w, stop
}

func holdCmd(id string, from, to int, amount string, timeout uint32) *domain.CreateTransfer {
	c := transferCmd(id, from, to, amount)
	c.Pending, c.TimeoutSeconds = true, timeout
	return c
}

// stateView is what the tests compare of a state: position, open holds, ids
// taken, and each account's four totals and status.
type stateView struct {
	Position         uint64
	Holds, Transfers int
	Accounts         map[string]string
}

func viewOf(s *domain.State, accounts int) stateView {
	v := stateView{Position: s.Position(), Holds: s.HoldCount(), Transfers: s.TransferCount(), Accounts: map[string]string{}}
	for i := 0; i < accounts; i++ {
		if a, ok := s.Account(fmt.Sprintf("a%d", i)); ok {
			v.Accounts[a.ID] = fmt.Sprintf("dp=%s cp=%s dq=%s cq=%s closed=%t", a.DebitsPosted, a.CreditsPosted,
				a.DebitsPending, a.CreditsPending, a.Closed)
		}
	}
	return v
}

func liveView(t *testing.T, w *commands.Writer, accounts int) stateView {
	t.Helper()
	var v stateView
	testenv.NoError(t, w.Read(context.Background(), func(s *domain.State) { v = viewOf(s, accounts) }))
	return v
}

// replayView folds the whole log into a fresh state, as an auditor would.
func replayView(t *testing.T, store *eventstore.Store, ledger string, accounts int) stateView {
	t.Helper()
	s := domain.NewState()
	for _, r := range readLog(t, store, ledger) {
		e, err := domain.UnmarshalEvent(r.Type, r.SchemaVersion, r.Payload)
		testenv.NoError(t, err)
		s.Evolve(r.Position, e)
	}
	return viewOf(s, accounts)
}

// matchesReplay checks that the writer's state is the log's, and returns it.
func matchesReplay(t *testing.T, w *commands.Writer, store *eventstore.Store, ledger string, accounts int) stateView {
	t.Helper()
	live, replay := liveView(t, w, accounts), replayView(t, store, ledger, accounts)
	if !cmp.Equal(live, replay) {
		t.Errorf("live state differs from the replay (-live +replay):\n%s", cmp.Diff(live, replay))
	}
	return live
}

func readLog(t *testing.T, store *eventstore.Store, ledger string) []eventstore.Record {
	t.Helper()
	var all []eventstore.Record
	for {
		recs, err := store.Read(context.Background(), ledger, uint64(len(all))+1, eventstore.ReadMax)
		testenv.NoError(t, err)
		if len(recs) == 0 {
			return all
		}
		all = append(all, recs...)
	}
}

// expiries returns the command ids (hold ids) of the log's PendingExpired events.
func expiries(t *testing.T, store *eventstore.Store, ledger string) []string {
	t.Helper()
	var ids []string
	for _, r := range readLog(t, store, ledger) {
		if r.Type == domain.TypePendingExpired {
			ids = append(ids, r.CommandID)
		}
	}
	return ids
}

func head(t *testing.T, store *eventstore.Store, ledger string) uint64 {
	t.Helper()
	pos, _, err := store.Head(context.Background(), ledger)
	testenv.NoError(t, err)
	return pos
}

func holdOpen(t *testing.T, w *commands.Writer, id string) bool {
	t.Helper()
	var open bool
	testenv.NoError(t, w.Read(context.Background(), func(s *domain.State) { _, open = s.Hold(id) }))
	return open
}

// TestWriterExpiresHoldsOnItsClock: a hold with a 60 s timeout is open at 59 s
// and expired, once, by the writer itself after 60 s; a hold posted at 59 s
// never expires.
func TestWriterExpiresHoldsOnItsClock(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	ledger := testenv.Name(t)
	clock := newTestClock()
	w, _ := startWriterWith(t, commands.Options{Ledger: ledger, Store: store, Clock: clock.Now})
	setup(t, w, 3)
	mustCreate(t, submit(t, w, holdCmd("h-exp", 0, 1, "5.00", 60), holdCmd("h-post", 2, 1, "1.00", 60)))

	clock.Advance(59 * time.Second)
	if before := liveView(t, w, 3); before.Holds != 2 || before.Accounts["a0"] != "dp=0 cp=0 dq=500 cq=0 closed=false" {
		t.Fatalf("at 59 s: %+v; want both holds open, 5.00 pending on a0", before)
	}
	mustCreate(t, submit(t, w, &domain.PostPending{ID: "p-post", PendingID: "h-post"}))

	clock.Advance(2 * time.Second)
	testenv.Eventually(t, 5*time.Second, func() error {
		if holdOpen(t, w, "h-exp") {
			return errors.New("h-exp still open at 61 s")
		}
		return nil
	})
	if after := liveView(t, w, 3); after.Holds != 0 || after.Accounts["a0"] != "dp=0 cp=0 dq=0 cq=0 closed=false" ||
		after.Accounts["a1"] != "dp=0 cp=100 dq=0 cq=0 closed=false" {
		t.Errorf("after expiry: %+v; want no holds, a0 untouched, a1 credited only by the post", after)
	}
	res := submit(t, w, &domain.PostPending{ID: "p-late", PendingID: "h-exp"}, &domain.VoidPending{ID: "v-late", PendingID: "h-exp"})
	for i, r := range res {
		if !errors.Is(r.Err, domain.ErrPendingExpired) {
			t.Errorf("resolving an expired hold, item %d: %v, want ErrPendingExpired", i, r.Err)
		}
	}

	// Far past both timeouts, two reads in a row: the second is decided after
	// the writer has checked for due holds at least once at this time.
	clock.Advance(time.Hour)
	for i := 0; i < 2; i++ {
		holdOpen(t, w, "h-post")
	}
	if got := expiries(t, store, ledger); !cmp.Equal(got, []string{"h-exp"}) {
		t.Errorf("expiries in the log: %v, want [h-exp] (once; none for the posted hold)", got)
	}
	matchesReplay(t, w, store, ledger, 3)
}

// TestWriterDecidesDueExpiriesBeforeABatch: docs/architecture.md says expiry
// is "decided before each batch", so a read right after the clock passes a
// hold's timeout sees it expired.
func TestWriterDecidesDueExpiriesBeforeABatch(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	ledger := testenv.Name(t)
	clock := newTestClock()
	w, _ := startWriterWith(t, commands.Options{Ledger: ledger, Store: store, Clock: clock.Now})
	setup(t, w, 2)
	mustCreate(t, submit(t, w, holdCmd("h", 0, 1, "5.00", 60)))
	clock.Advance(59 * time.Second)
	reads := clock.Reads()
	if !holdOpen(t, w, "h") {
		t.Fatal("hold expired at 59 s")
	}
	// The writer reads the clock to decide that read's batch, then to look
	// for due holds and to arm its timer: it is then idle.
	testenv.Eventually(t, 5*time.Second, func() error {
		if n := clock.Reads() - reads; n < 3 {
			return fmt.Errorf("writer read the clock %d times since the read", n)
		}
		return nil
	})
	clock.Advance(2 * time.Second)
	if holdOpen(t, w, "h") {
		t.Errorf("a read decided at 61 s sees the hold (timeout 60 s) still open")
	}
}

// TestWriterExpiresHoldsDueWhileStopped: a hold that came due while no writer
// ran expires right after the next one loads, once, and never again.
func TestWriterExpiresHoldsDueWhileStopped(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	ledger := testenv.Name(t)
	clock := newTestClock()
	opts := commands.Options{Ledger: ledger, Store: store, Clock: clock.Now}
	w, stop := startWriterWith(t, opts)
	setup(t, w, 2)
	mustCreate(t, submit(t, w, holdCmd("h", 0, 1, "3.00", 10)))
	stop()

	clock.Advance(20 * time.Second)
	w2, stop2 := startWriterWith(t, opts)
	testenv.Eventually(t, 5*time.Second, func() error {
		if holdOpen(t, w2, "h") {
			return errors.New("hold still open after the restart")
		}
		return nil
	})
	if got := expiries(t, store, ledger); !cmp.Equal(got, []string{"h"}) {
		t.Fatalf("expiries after the first restart: %v, want [h]", got)
	}
	pos := head(t, store, ledger)
	stop2()

	w3, _ := startWriterWith(t, opts)
	for i := 0; i < 2; i++ { // the second read follows a full turn of the loop
		if holdOpen(t, w3, "h") {
			t.Fatal("expired hold open again after the second restart")
		}
	}
	if got := expiries(t, store, ledger); !cmp.Equal(got, []string{"h"}) || head(t, store, ledger) != pos {
		t.Errorf("after the second restart: expiries %v, head %d; want [h], head %d", got, head(t, store, ledger), pos)
	}
	matchesReplay(t, w3, store, ledger, 2)
}

// TestWriterRolledBackHoldLeavesNoExpiry: a hold with a timeout decided in an
// atomic request that fails must leave nothing behind, even when a hold of the
// same id, without a timeout, takes the same position afterwards. (Its stale
// expiry entry once made the writer spin, deaf to its context.)
func TestWriterRolledBackHoldLeavesNoExpiry(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	ledger := testenv.Name(t)
	clock := newTestClock()
	// Not startWriter: a writer that does not stop must not hang the cleanup.
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	w := commands.NewWriter(commands.Options{Ledger: ledger, Store: store, Clock: clock.Now})
	stopped := make(chan struct{})
	go func() { defer close(stopped); _ = w.Run(ctx) }()
	setup(t, w, 2)
	// An earlier hold keeps the rolled-back one's entry from the top of the
	// heap, where the writer would drop it before the retry.
	mustCreate(t, submit(t, w, holdCmd("early", 1, 0, "1.00", 5)))
	pos := head(t, store, ledger)
	res, err := w.SubmitWith(context.Background(), []domain.Command{holdCmd("h", 0, 1, "1.00", 10), transferCmd("bad", 0, 9, "1.00")},
		commands.SubmitOptions{Atomic: true})
	testenv.NoError(t, err)
	if !errors.Is(res[1].Err, domain.ErrAccountNotFound) {
		t.Fatalf("atomic request: %v", res)
	}
	retry := submit(t, w, holdCmd("h", 0, 1, "1.00", 0)) // the same id, now without a timeout
	if retry[0].Err != nil || retry[0].Position != pos+1 {
		t.Fatalf("retry: %v at %d, want created at %d (where the rolled-back hold was)", retry[0].Err, retry[0].Position, pos+1)
	}
	clock.Advance(time.Minute)
	holdOpen(t, w, "h") // the writer's next turn finds the stale entry due
	reads := clock.Reads()
	// An idle writer reads its clock a few times a second; there is no event
	// to wait for, so this watches a short window.
	<-time.After(200 * time.Millisecond)
	if n := clock.Reads() - reads; n > 20 {
		t.Errorf("idle writer read its clock %d times in 200 ms: it is spinning", n)
	}
	if got := expiries(t, store, ledger); !holdOpen(t, w, "h") || !cmp.Equal(got, []string{"early"}) {
		t.Errorf("expiries %v, want [early] and h (no timeout) open", got)
	}
	cancel()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("writer still running 5 s after its context ended") // and leaked
	}
}

func submitAtomic(t *testing.T, w *commands.Writer, ret bool, cmds ...domain.Command) []commands.Result {
	t.Helper()
	res, err := w.SubmitWith(context.Background(), cmds, commands.SubmitOptions{Atomic: true, ReturnBalances: ret})
	testenv.NoError(t, err)
	return res
}

// wantLinkedFailure checks that item bad failed with want and every other
// item with ErrLinkedItemFailed, none with a position.
func wantLinkedFailure(t *testing.T, res []commands.Result, bad int, want error) {
	t.Helper()
	for i, r := range res {
		wantErr := commands.ErrLinkedItemFailed
		if i == bad {
			wantErr = want
		}
		if !errors.Is(r.Err, wantErr) || r.Position != 0 || r.Balances != nil {
			t.Errorf("item %d: %v at %d (balances %v), want %v and nothing applied", i, r.Err, r.Position, r.Balances, wantErr)
		}
	}
}

func TestWriterAtomicRequests(t *testing.T) {
	t.Parallel()
	store := newStore(t)

	t.Run("third of five fails", func(t *testing.T) {
		t.Parallel()
		ledger := testenv.Name(t)
		w, _ := startWriterWith(t, commands.Options{Ledger: ledger, Store: store})
		setup(t, w, 4)
		good := []domain.Command{transferCmd("t1", 0, 1, "1.00"), holdCmd("h1", 1, 2, "2.00", 0),
			transferCmd("t2", 2, 3, "3.00"), &domain.PostPending{ID: "p1", PendingID: "h1"}}
		before := liveView(t, w, 4)
		pos := head(t, store, ledger)
		cmds := append(append(good[:2:2], transferCmd("t-bad", 0, 9, "1.00")), good[2:]...)
		wantLinkedFailure(t, submitAtomic(t, w, false, cmds...), 2, domain.ErrAccountNotFound)
		if live := matchesReplay(t, w, store, ledger, 4); !cmp.Equal(live, before) { // the log's head included
			t.Errorf("rolled back (-after +before):\n%s", cmp.Diff(live, before))
		}
		// As if the atomic request had never been: its good ids are new.
		res := submit(t, w, good...)
		for i, r := range res {
			if r.Err != nil || r.Position != pos+1+uint64(i) {
				t.Errorf("item %d after the rollback: %v at %d, want created at %d", i, r.Err, r.Position, pos+1+uint64(i))
			}
		}
		matchesReplay(t, w, store, ledger, 4)
	})

	t.Run("invalid item answers without queueing", func(t *testing.T) {
		t.Parallel()
		// Never run, and the context is already over: anything queued would
		// answer with the context's error.
		w := commands.NewWriter(commands.Options{Ledger: testenv.Name(t), Store: store})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		for _, c := range []struct {
			name string
			bad  domain.Command
			want error
		}{
			{"bad id", transferCmd("bad id", 0, 1, "1.00"), domain.ErrInvalidField},
			{"zero amount", transferCmd("t0", 0, 1, "0"), domain.ErrInvalidAmount},
			{"client expiry", &domain.ExpirePending{PendingID: "h"}, domain.ErrInvalidField},
		} {
			res, err := w.SubmitWith(ctx, []domain.Command{transferCmd("ok1", 0, 1, "1.00"), c.bad, transferCmd("ok2", 1, 0, "1.00")},
				commands.SubmitOptions{Atomic: true})
			if err != nil {
				t.Fatalf("%s: %v, want answers without queueing", c.name, err)
			}
			wantLinkedFailure(t, res, 1, c.want)
		}
	})

	t.Run("mixed request fails at the end", func(t *testing.T) {
		t.Parallel()
		ledger := testenv.Name(t)
		w, _ := startWriterWith(t, commands.Options{Ledger: ledger, Store: store})
		setup(t, w, 4)
		mustCreate(t, submit(t, w, holdCmd("hp", 0, 1, "5.00", 0), holdCmd("hv", 2, 0, "2.00", 0), transferCmd("tr", 2, 3, "4.00")))
		mixed := []domain.Command{
			holdCmd("hn", 1, 2, "1.00", 0),
			&domain.PostPending{ID: "pp", PendingID: "hp", Amounts: []string{"3.00"}},
			&domain.VoidPending{ID: "vv", PendingID: "hv"},
			&domain.ReverseTransfer{ID: "rv", TransferID: "tr", Amounts: []string{"1.50"}},
			&domain.ReverseTransfer{ID: "rv2", TransferID: "pp"}, // a post made by this very request
			&domain.CloseAccount{AccountID: "a3"},
		}
		before := liveView(t, w, 4)
		pos := head(t, store, ledger)
		res := submitAtomic(t, w, true, append(mixed, transferCmd("late", 3, 0, "1.00"))...)
		wantLinkedFailure(t, res, len(mixed), domain.ErrAccountClosed)
		if after := liveView(t, w, 4); !cmp.Equal(after, before) || head(t, store, ledger) != pos {
			t.Errorf("rolled back (-after +before):\n%s", cmp.Diff(after, before))
		}

		// The same request without its failing item applies everything.
		res = submitAtomic(t, w, true, mixed...)
		for i, r := range res {
			if r.Err != nil || r.Position != pos+1+uint64(i) {
				t.Errorf("item %d: %v at %d, want created at %d", i, r.Err, r.Position, pos+1+uint64(i))
			}
		}
		want := stateView{Position: pos + 6, Holds: 1, Transfers: before.Transfers + 5, Accounts: map[string]string{
			"a0": "dp=300 cp=300 dq=0 cq=0 closed=false",
			"a1": "dp=300 cp=300 dq=100 cq=0 closed=false",
			"a2": "dp=400 cp=150 dq=0 cq=100 closed=false",
			"a3": "dp=150 cp=400 dq=0 cq=0 closed=true",
		}}
		if live := matchesReplay(t, w, store, ledger, 4); !cmp.Equal(live, want) {
			t.Errorf("after the good request (-live +want):\n%s", cmp.Diff(live, want))
		}
	})

	t.Run("failures beside other clients", func(t *testing.T) {
		t.Parallel()
		ledger := testenv.Name(t)
		w, _ := startWriterWith(t, commands.Options{Ledger: ledger, Store: store})
		const accounts, clients, rounds = 8, 4, 20
		setup(t, w, accounts)
		var wg sync.WaitGroup
		var applied atomic.Int64
		for c := 0; c < clients; c++ {
			wg.Add(2)
			go func() { // atomic: every other request fails on its last item
				defer wg.Done()
				for i := 0; i < rounds; i++ {
					id := fmt.Sprintf("at-%d-%d", c, i)
					cmds := []domain.Command{transferCmd(id+"-t", c, c+1, "1.00"), holdCmd(id+"-h", c+1, c, "0.50", 0),
						&domain.PostPending{ID: id + "-p", PendingID: id + "-h"}}
					if i%2 == 1 {
						cmds = append(cmds, transferCmd(id+"-bad", c, 99, "1.00"))
					}
					res, err := w.SubmitWith(context.Background(), cmds, commands.SubmitOptions{Atomic: true})
					if err != nil {
						t.Errorf("%s: %v", id, err)
						return
					}
					if i%2 == 1 {
						wantLinkedFailure(t, res, 3, domain.ErrAccountNotFound)
						continue
					}
					for k, r := range res {
						if r.Err != nil {
							t.Errorf("%s item %d: %v", id, k, r.Err)
						}
					}
					applied.Add(3)
				}
			}()
			go func() { // plain requests from another client
				defer wg.Done()
				for i := 0; i < rounds; i++ {
					id := fmt.Sprintf("pl-%d-%d", c, i)
					res, err := w.Submit(context.Background(), []domain.Command{transferCmd(id+"-a", c+4, c, "2.00"), transferCmd(id+"-b", c, c+4, "1.00")})
					if err != nil || res[0].Err != nil || res[1].Err != nil {
						t.Errorf("%s: %v %v", id, err, res)
						return
					}
					applied.Add(2)
				}
			}()
		}
		wg.Wait()
		live := matchesReplay(t, w, store, ledger, accounts)
		if want := uint64(1+accounts) + uint64(applied.Load()); live.Position != want || live.Holds != 0 {
			t.Errorf("log ends at %d with %d holds open, want %d and none", live.Position, live.Holds, want)
		}
	})
}

func balanceString(b commands.Balance) string {
	return fmt.Sprintf("%s %s/%d %s dp=%s cp=%s dq=%s cq=%s", b.Account, b.Asset, b.Scale, b.Normal, b.DebitsPosted.Format(b.Scale),
		b.CreditsPosted.Format(b.Scale), b.DebitsPending.Format(b.Scale), b.CreditsPending.Format(b.Scale))
}

// TestWriterReturnsBalancesAfterEachItem: each applied item carries the
// balances of the accounts it moved just after it, not at the end of the
// request; refused items and EXISTS carry none.
func TestWriterReturnsBalancesAfterEachItem(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	ledger := testenv.Name(t)
	w, _ := startWriterWith(t, commands.Options{Ledger: ledger, Store: store})
	setup(t, w, 3)
	cmds := []domain.Command{
		transferCmd("t", 0, 1, "10.00"),
		holdCmd("h", 1, 2, "3.00", 0),
		&domain.PostPending{ID: "p", PendingID: "h", Amounts: []string{"2.00"}},
		&domain.ReverseTransfer{ID: "r", TransferID: "t", Amounts: []string{"4.00"}},
		transferCmd("bad", 0, 7, "1.00"),
		transferCmd("t", 0, 1, "10.00"),
		&domain.OpenAccount{ID: "a9", Asset: "USD", Normal: domain.SideDebit},
	}
	want := [][]string{
		{"a0 USD/2 credit dp=10.00 cp=0.00 dq=0.00 cq=0.00", "a1 USD/2 credit dp=0.00 cp=10.00 dq=0.00 cq=0.00"},
		{"a1 USD/2 credit dp=0.00 cp=10.00 dq=3.00 cq=0.00", "a2 USD/2 credit dp=0.00 cp=0.00 dq=0.00 cq=3.00"},
		{"a1 USD/2 credit dp=2.00 cp=10.00 dq=0.00 cq=0.00", "a2 USD/2 credit dp=0.00 cp=2.00 dq=0.00 cq=0.00"},
		{"a1 USD/2 credit dp=6.00 cp=10.00 dq=0.00 cq=0.00", "a0 USD/2 credit dp=10.00 cp=4.00 dq=0.00 cq=0.00"},
		nil, nil,
		{"a9 USD/2 debit dp=0.00 cp=0.00 dq=0.00 cq=0.00"},
	}
	checkBalances(t, w, cmds, want, false)

	// Atomic, on a fresh ledger: the same, less the refused and repeated items.
	w, _ = startWriterWith(t, commands.Options{Ledger: ledger + "-x", Store: store})
	setup(t, w, 3)
	checkBalances(t, w, append(cmds[:4:4], cmds[6]), append(want[:4:4], want[6]), true)
}

func checkBalances(t *testing.T, w *commands.Writer, cmds []domain.Command, want [][]string, atomicReq bool) {
	t.Helper()
	res, err := w.SubmitWith(context.Background(), cmds, commands.SubmitOptions{Atomic: atomicReq, ReturnBalances: true})
	testenv.NoError(t, err)
	for i, r := range res {
		var got []string
		for _, b := range r.Balances {
			got = append(got, balanceString(b))
		}
		if !cmp.Equal(got, want[i]) {
			t.Errorf("atomic %t, item %d (%v): balances (-got +want):\n%s", atomicReq, i, r.Err, cmp.Diff(got, want[i]))
		}
	}
}

// countingStore counts the reads of prior events.
type countingStore struct {
	*eventstore.Store
	positionReads atomic.Int32
}

func (s *countingStore) ReadPositions(ctx context.Context, ledger string, positions []uint64) ([]eventstore.Record, error) {
	s.positionReads.Add(1)
	return s.Store.ReadPositions(ctx, ledger, positions)
}

// TestWriterRetryStormReadsPriorsOnce: 2,000 transfers long out of memory,
// retried in one request, all answer EXISTS at their positions from one read
// of the log, and append nothing.
func TestWriterRetryStormReadsPriorsOnce(t *testing.T) {
	t.Parallel()
	store := &countingStore{Store: newStore(t)}
	ledger := testenv.Name(t)
	w, stop := startWriterWith(t, commands.Options{Ledger: ledger, Store: store})
	const accounts, transfers = 10, 2000
	setup(t, w, accounts)
	storm := func() []domain.Command { // fresh commands each time, as a client would resend them
		cmds := make([]domain.Command, transfers)
		for i := range cmds {
			cmds[i] = transferCmd(fmt.Sprintf("storm-%d", i), i%accounts, (i+1)%accounts, fmt.Sprintf("%d.%02d", 1+i/100, i%100))
		}
		return cmds
	}
	first := submit(t, w, storm()...)
	mustCreate(t, first)
	stop()

	opts := commands.Options{Ledger: ledger, Store: store, BatchMax: 8}
	commands.SetRecentMax(&opts, 25) // the least above three batches of 8
	w2, _ := startWriterWith(t, opts)
	pos := head(t, store.Store, ledger)
	reads := store.positionReads.Load()
	again := submit(t, w2, storm()...)
	for i, r := range again {
		var exists *domain.ExistsError
		if !errors.As(r.Err, &exists) || r.Position != first[i].Position {
			t.Fatalf("retry %d: %v at %d, want EXISTS at %d", i, r.Err, r.Position, first[i].Position)
		}
	}
	if got := store.positionReads.Load() - reads; got != 1 {
		t.Errorf("%d reads of prior events for one batch, want 1", got)
	}
	if got := head(t, store.Store, ledger); got != pos {
		t.Errorf("head moved from %d to %d: retries must append nothing", pos, got)
	}
}

// TestWriterRecordedTimeNeverGoesBack: a clock that steps back does not make
// recorded_at go back; it holds at the last recorded time.
func TestWriterRecordedTimeNeverGoesBack(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	ledger := testenv.Name(t)
	clock := newTestClock()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := commands.NewWriter(commands.Options{Ledger: ledger, Store: store, Clock: clock.Now})
	go func() { _ = w.Run(ctx) }()
	setup(t, w, 2)
	mustCreate(t, submit(t, w, transferCmd("t1", 0, 1, "1.00")))
	clock.Advance(-time.Hour)
	mustCreate(t, submit(t, w, transferCmd("t2", 0, 1, "1.00")))
	recs, err := store.Read(context.Background(), ledger, 1, 100)
	testenv.NoError(t, err)
	for i := 1; i < len(recs); i++ {
		if recs[i].RecordedAt.Before(recs[i-1].RecordedAt) {
			t.Fatalf("recorded_at went back at position %d: %v after %v", recs[i].Position, recs[i].RecordedAt, recs[i-1].RecordedAt)
		}
	}
}

// smallAppendsFail fails, while fail is set, every append of fewer than
// recordsMin records, around the real store.
type smallAppendsFail struct {
	*eventstore.Store
	recordsMin int
	fail       atomic.Bool
}

func (f *smallAppendsFail) Append(ctx context.Context, ledger string, expected uint64, prev eventstore.Hash, recs []eventstore.Record) error {
	if f.fail.Load() && len(recs) < f.recordsMin {
		return errors.New("injected append failure")
	}
	return f.Store.Append(ctx, ledger, expected, prev, recs)
}

// TestWriterExpiresOnTheRecordedTimeWhenTheClockIsBehind: a writer whose
// clock is behind the last recorded time (stepped back, or a node taking
// over) decides at the recorded time, and expires the holds due by it too:
// a post of such a hold is refused PENDING_EXPIRED and the hold no longer
// holds its amount. Here one hold past its timeout is left open by a first
// batch of expiries (at most expiriesPerBatchMax, 4,096, a batch) whose
// recorded time is past it, and its own expiry fails until the clock is
// back 30 s.
func TestWriterExpiresOnTheRecordedTimeWhenTheClockIsBehind(t *testing.T) {
	t.Parallel()
	const holds = 4096 + 1
	store := &smallAppendsFail{Store: newStore(t), recordsMin: 4096}
	ledger := testenv.Name(t)
	clock := newTestClock()
	w, _ := startWriterWith(t, commands.Options{Ledger: ledger, Store: store, Clock: clock.Now})
	setup(t, w, 2)
	for i := 0; i < holds; i += 1000 {
		var cmds []domain.Command
		for j := i; j < min(i+1000, holds); j++ {
			cmds = append(cmds, holdCmd(fmt.Sprintf("h%d", j), 0, 1, "0.01", 60))
		}
		mustCreate(t, submit(t, w, cmds...))
	}
	head, _, err := store.Head(t.Context(), ledger)
	testenv.NoError(t, err)
	store.fail.Store(true)
	clock.Advance(61 * time.Second) // the writer expires 4,096 holds at 61 s, then fails to expire the last
	testenv.Eventually(t, 10*time.Second, func() error {
		if now, _, err := store.Head(t.Context(), ledger); err != nil || now != head+4096 {
			return fmt.Errorf("head %d (%v), want %d", now, err, head+4096)
		}
		return nil
	})
	clock.Advance(-31 * time.Second)
	time.Sleep(200 * time.Millisecond) // the writer retries, now on the clock at 30 s
	store.fail.Store(false)
	res := submit(t, w, &domain.PostPending{ID: "late", PendingID: fmt.Sprintf("h%d", holds-1)})
	if !errors.Is(res[0].Err, domain.ErrPendingExpired) {
		t.Fatalf("a post of a hold past its timeout on the recorded time: %v, want PENDING_EXPIRED", res[0].Err)
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		if v := liveView(t, w, 2); v.Holds != 0 || v.Accounts["a0"] != "dp=0 cp=0 dq=0 cq=0 closed=false" {
			return fmt.Errorf("%d holds open, a0 %s: the hold refused as expired still holds its amount", v.Holds, v.Accounts["a0"])
		}
		return nil
	})
}
