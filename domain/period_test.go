package domain_test

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ledgerd/ledger/domain"
)

// periodLedger is a ledger with USD and BTC accounts and two transfers, each
// effective a day before now.
func periodLedger(t *testing.T) (*domain.State, []domain.Event) {
	t.Helper()
	s := domain.NewState()
	var log []domain.Event
	step := func(c domain.Command) {
		t.Helper()
		e, err := decide(s, c)
		if err != nil {
			t.Fatalf("%T %s: %v", c, c.CommandID(), err)
		}
		s.Evolve(s.Position()+1, e)
		log = append(log, e)
	}
	step(asset("USD", 2))
	step(asset("BTC", 8))
	step(account("world", "USD", domain.SideDebit, "", ""))
	step(account("users:1", "USD", domain.SideCredit, "", ""))
	step(account("users:2", "USD", domain.SideCredit, "", ""))
	step(account("btc:world", "BTC", domain.SideDebit, "", ""))
	t1 := transfer("t1", posting("world", "users:1", "USD", "100.50"))
	t1.EffectiveAt = now.Add(-24 * time.Hour)
	step(t1)
	t2 := transfer("t2", posting("users:1", "users:2", "USD", "0.25"))
	t2.EffectiveAt = now.Add(-23 * time.Hour)
	step(t2)
	return s, log
}

// closing is a ClosePeriod at end.
func closing(end time.Time) *domain.ClosePeriod { return &domain.ClosePeriod{End: end} }

// TestClosingDigestPinned pins the closing digest's encoding: the lines are
// written out here as the documentation says, and the digest of a known
// ledger is a constant. A change of either changes what auditors recompute.
func TestClosingDigestPinned(t *testing.T) {
	s, _ := periodLedger(t)
	canonical := "btc:world\tBTC\t0.00000000\t0.00000000\n" +
		"users:1\tUSD\t0.25\t100.50\n" +
		"users:2\tUSD\t0.00\t0.25\n" +
		"world\tUSD\t100.50\t0.00\n"
	sum := sha256.Sum256([]byte(canonical))
	const pinned = "e2ab669781eef3e4f47a5c241580e172d0ca385af54f3ab0fc171f1dc9d07178"
	got, n := domain.ClosingDigest(s)
	if want := hex.EncodeToString(sum[:]); got != want {
		t.Fatalf("ClosingDigest = %s, want %s (sha256 of the documented lines)", got, want)
	}
	if got != pinned {
		t.Errorf("ClosingDigest = %s, want the pinned %s", got, pinned)
	}
	if n != 4 {
		t.Errorf("ClosingDigest covers %d accounts, want 4", n)
	}
}

func TestClosePeriod(t *testing.T) {
	s, _ := periodLedger(t)
	end := now.Add(-12 * time.Hour)
	e, err := decide(s, closing(end))
	if err != nil {
		t.Fatalf("ClosePeriod: %v", err)
	}
	digest, _ := domain.ClosingDigest(s)
	want := domain.PeriodClosed{End: end, Accounts: 4, ClosingDigest: digest, TrialBalance: []domain.PeriodAssetTotal{
		{Asset: "BTC", DebitsPosted: "0.00000000", CreditsPosted: "0.00000000"},
		{Asset: "USD", DebitsPosted: "100.75", CreditsPosted: "100.75"},
	}}
	if diff := cmp.Diff(e, domain.Event(want)); diff != "" {
		t.Fatalf("PeriodClosed (-got +want):\n%s", diff)
	}
	pos := s.Position() + 1
	s.Evolve(pos, e)
	if gotEnd, gotPos, ok := s.ClosedPeriod(); !ok || !gotEnd.Equal(end) || gotPos != pos {
		t.Fatalf("ClosedPeriod = %s, %d, %v; want %s, %d, true", gotEnd, gotPos, ok, end, pos)
	}

	// The next close starts where this one ended.
	next := now.Add(-time.Hour)
	e, err = decide(s, closing(next))
	if err != nil {
		t.Fatalf("second ClosePeriod: %v", err)
	}
	if pc := e.(domain.PeriodClosed); pc.Start == nil || !pc.Start.Equal(end) || !pc.End.Equal(next) {
		t.Errorf("second close is [%v, %s), want [%s, %s)", pc.Start, pc.End, end, next)
	}
}

// TestClosePeriodOrder: periods close in order; the same end again is a
// retry (EXISTS at the close); an end in the future is refused.
func TestClosePeriodOrder(t *testing.T) {
	s, _ := periodLedger(t)
	end := now.Add(-12 * time.Hour)
	pos := apply(t, s, closing(end))
	for _, tc := range []struct {
		name  string
		end   time.Time
		want  error
		field string
	}{
		{"backwards", end.Add(-time.Hour), domain.ErrPeriodClosed, "end"},
		{"a microsecond before", end.Add(-time.Microsecond), domain.ErrPeriodClosed, "end"},
		{"in the future", now.Add(time.Microsecond), domain.ErrInvalidField, "end"},
		{"missing", time.Time{}, domain.ErrInvalidField, "end"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decide(s, closing(tc.end))
			checkErr(t, err, tc.want, tc.field)
		})
	}
	_, err := decide(s, closing(end.In(time.FixedZone("CET", 3600))))
	checkExists(t, err, pos)
	if got, _, _ := s.ClosedPeriod(); !got.Equal(end) {
		t.Errorf("closed end = %s after refusals, want %s", got, end)
	}
	apply(t, s, closing(now)) // up to now itself
}

// TestPeriodClosedRefusesEffectiveAt: every command with an effective time in
// a closed period is refused with PERIOD_CLOSED naming effective_at, and
// changes nothing; the same correction in the open period is accepted.
func TestPeriodClosedRefusesEffectiveAt(t *testing.T) {
	s, _ := periodLedger(t)
	hold := transfer("h1", posting("users:1", "users:2", "USD", "1.00"))
	hold.Pending = true
	holdPos := apply(t, s, hold)
	end := now.Add(-12 * time.Hour)
	apply(t, s, closing(end))
	ids := []string{"world", "users:1", "users:2"}
	before := snapshot(s, ids)
	position := s.Position()
	closed := end.Add(-time.Microsecond)

	late := transfer("late", posting("world", "users:1", "USD", "5.00"))
	late.EffectiveAt = closed
	latePending := transfer("late-hold", posting("world", "users:1", "USD", "5.00"))
	latePending.EffectiveAt, latePending.Pending = closed, true
	reversal := &domain.ReverseTransfer{ID: "r1", TransferID: "t1", EffectiveAt: closed}
	for _, tc := range []struct {
		name  string
		cmd   domain.Command
		clock time.Time
	}{
		{"transfer", late, now},
		{"pending transfer", latePending, now},
		{"reversal", reversal, now},
		// A clock behind the close (another node's): the recorded time is
		// the effective time, and it is in the closed period.
		{"transfer at the clock", transfer("skew", posting("world", "users:1", "USD", "5.00")), closed},
		{"post", &domain.PostPending{ID: "p1", PendingID: "h1"}, closed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decideAt(s, tc.cmd, tc.clock)
			checkErr(t, err, domain.ErrPeriodClosed, "effective_at")
			if s.Position() != position {
				t.Fatalf("position %d after a refusal, want %d", s.Position(), position)
			}
			if diff := cmp.Diff(snapshot(s, ids), before, unitsEqual); diff != "" {
				t.Errorf("accounts changed (-got +want):\n%s", diff)
			}
		})
	}

	// Corrections go into the open period.
	fix := transfer("late", posting("world", "users:1", "USD", "5.00"))
	fix.EffectiveAt = end
	apply(t, s, fix)
	apply(t, s, &domain.ReverseTransfer{ID: "r1", TransferID: "t1", Amounts: []string{"1.00"}})
	apply(t, s, &domain.PostPending{ID: "p1", PendingID: "h1"})
	if _, ok := s.Hold("h1"); ok {
		t.Errorf("hold h1 (placed at %d) still open after its post", holdPos)
	}
	// A void has no business time and moves no posted total: never refused.
	hold2 := transfer("h2", posting("users:1", "users:2", "USD", "1.00"))
	hold2.Pending = true
	apply(t, s, hold2)
	applyAt(t, s, &domain.VoidPending{ID: "v2", PendingID: "h2"}, closed)
}

// TestPeriodReplay: folding the log again, and a snapshot, give the same
// state, periods included; the log's own event is asserted to continue.
func TestPeriodReplay(t *testing.T) {
	s, log := periodLedger(t)
	for _, end := range []time.Time{now.Add(-12 * time.Hour), now.Add(-time.Hour)} {
		e, err := decide(s, closing(end))
		if err != nil {
			t.Fatalf("ClosePeriod %s: %v", end, err)
		}
		s.Evolve(s.Position()+1, e)
		log = append(log, e)
	}
	replayed := domain.NewState()
	for i, e := range log {
		replayed.Evolve(uint64(i+1), e)
	}
	wantEnd, wantPos, _ := s.ClosedPeriod()
	if end, pos, ok := replayed.ClosedPeriod(); !ok || !end.Equal(wantEnd) || pos != wantPos {
		t.Fatalf("replayed ClosedPeriod = %s, %d, %v; want %s, %d", end, pos, ok, wantEnd, wantPos)
	}
	back := unmarshalSnapshot(t, marshalSnapshot(t, s))
	if end, pos, ok := back.ClosedPeriod(); !ok || !end.Equal(wantEnd) || pos != wantPos {
		t.Fatalf("ClosedPeriod from a snapshot = %s, %d, %v; want %s, %d", end, pos, ok, wantEnd, wantPos)
	}
	if diff := cmp.Diff(back, s, stateEqual); diff != "" {
		t.Errorf("state from its snapshot (-got +want):\n%s", diff)
	}

	// A close that does not continue the last one is a corrupt log.
	defer func() {
		if recover() == nil {
			t.Errorf("Evolve applied a PeriodClosed that does not continue the last close")
		}
	}()
	replayed.Evolve(replayed.Position()+1, domain.PeriodClosed{End: now})
}
