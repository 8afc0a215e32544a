package domain_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/ledgerd/ledger/domain"
)

// movementText prints a movement on one line, every field of it:
// "#posting account side posted|pending amount asset vs counterparty (transfer)".
func movementText(m domain.Movement) string {
	total := "posted"
	if m.Pending {
		total = "pending"
	}
	return fmt.Sprintf("#%d %s %s %s %s %s vs %s (%s)", m.Posting, m.Account, m.Side, total,
		m.Amount.Format(m.Scale), m.Asset, m.Counterparty, m.Transfer)
}

// wantMovements pins, per golden event (events_test.go), the movements it
// yields: every event type of the contract is here, and a new one fails
// TestMovementsOfEveryEvent until it is added.
var wantMovements = map[string][]string{
	"asset_defined":                  nil,
	"asset_defined_scale_18":         nil,
	"account_opened":                 nil,
	"account_opened_bounds_metadata": nil,
	"account_opened_min_zero":        nil,
	"transfer_committed": {
		"#0 users:42:wallet debit posted 100.50 USD vs fx:usd (fx-2026-0001)",
		"#0 fx:usd credit posted 100.50 USD vs users:42:wallet (fx-2026-0001)",
		"#1 fx:btc debit posted 0.00012345 BTC vs users:42:btc (fx-2026-0001)",
		"#1 users:42:btc credit posted 0.00012345 BTC vs fx:btc (fx-2026-0001)",
	},
	"transfer_committed_minimal": {
		"#0 world debit posted 500 JPY vs users:42:wallet (t1)",
		"#0 users:42:wallet credit posted 500 JPY vs world (t1)",
	},
	"transfer_committed_38_digits": {
		"#0 a debit posted 99999999999999999999.999999999999999999 ETH vs b (big)",
		"#0 b credit posted 99999999999999999999.999999999999999999 ETH vs a (big)",
	},
	"transfer_pending": {
		"#0 users:42:wallet debit pending 100.00 USD vs merchants:7:settlement (auth-2026-0001)",
		"#0 merchants:7:settlement credit pending 100.00 USD vs users:42:wallet (auth-2026-0001)",
	},
	"transfer_pending_alert_hold": {
		"#0 users:2 debit pending 900.00 USD vs suspense:review (alert-hold:d3c735028b067ec8d582a6e0565c5638a865df91)",
		"#0 suspense:review credit pending 900.00 USD vs users:2 (alert-hold:d3c735028b067ec8d582a6e0565c5638a865df91)",
	},
	"transfer_pending_expiry": {
		"#0 users:42:wallet debit pending 100.50 USD vs fx:usd (auth-2026-0002)",
		"#0 fx:usd credit pending 100.50 USD vs users:42:wallet (auth-2026-0002)",
		"#1 fx:btc debit pending 0.00012345 BTC vs users:42:btc (auth-2026-0002)",
		"#1 users:42:btc credit pending 0.00012345 BTC vs fx:btc (auth-2026-0002)",
	},
	// A post releases what was held, then posts; a posting posted for
	// nothing is only released.
	"pending_posted_partial": {
		"#0 users:42:wallet debit pending -100.50 USD vs fx:usd (capture-2026-0001)",
		"#0 fx:usd credit pending -100.50 USD vs users:42:wallet (capture-2026-0001)",
		"#0 users:42:wallet debit posted 42.50 USD vs fx:usd (capture-2026-0001)",
		"#0 fx:usd credit posted 42.50 USD vs users:42:wallet (capture-2026-0001)",
		"#1 fx:btc debit pending -0.00012345 BTC vs users:42:btc (capture-2026-0001)",
		"#1 users:42:btc credit pending -0.00012345 BTC vs fx:btc (capture-2026-0001)",
	},
	"pending_voided": {
		"#0 users:42:wallet debit pending -100.00 USD vs merchants:7:settlement (void-2026-0001)",
		"#0 merchants:7:settlement credit pending -100.00 USD vs users:42:wallet (void-2026-0001)",
	},
	// An expiry has no id of its own: its movements are the hold's.
	"pending_expired": {
		"#0 users:43:wallet debit pending -500 JPY vs merchants:7:settlement (auth-2026-0003)",
		"#0 merchants:7:settlement credit pending -500 JPY vs users:43:wallet (auth-2026-0003)",
	},
	// A reversal posts as a transfer does, a posting of nothing included.
	"transfer_reversed": {
		"#0 fx:usd debit posted 50.25 USD vs users:42:wallet (refund-2026-0001)",
		"#0 users:42:wallet credit posted 50.25 USD vs fx:usd (refund-2026-0001)",
		"#1 users:42:btc debit posted 0.00000000 BTC vs fx:btc (refund-2026-0001)",
		"#1 fx:btc credit posted 0.00000000 BTC vs users:42:btc (refund-2026-0001)",
	},
	"account_bounds_changed":       nil,
	"account_bounds_changed_none":  nil,
	"account_metadata_set":         nil,
	"account_metadata_set_cleared": nil,
	"account_closed":               nil,
	"statement_imported":           nil,
	"statement_imported_minimal":   nil,
	"matching_rules_set":           nil,
	"matched_manually":             nil,
	"unmatched_line":               nil,
	"unmatched_movement":           nil,
	"period_closed_first":          nil,
	"period_closed":                nil,
	"category_defined_root":        nil,
	"category_defined":             nil,
	"account_frozen":               nil,
	"account_frozen_alert":         nil,
	"account_unfrozen":             nil,
	"rule_defined_threshold":       nil,
	"rule_defined_velocity":        nil,
	"rule_defined_crossing":        nil,
	"rule_defined_counterparty":    nil,
	"rule_defined_dormant":         nil,
	"alert_raised":                 nil,
	"alert_raised_crossing":        nil,
	"alert_raised_hold_refused":    nil,
	"rule_defined_hold":            nil,
}

func TestMovementsOfEveryEvent(t *testing.T) {
	seen := map[string]bool{}
	for _, tc := range goldenEvents {
		t.Run(tc.name, func(t *testing.T) {
			want, ok := wantMovements[tc.name]
			if !ok {
				t.Fatalf("no movements pinned for %s (%s): add them to wantMovements", tc.name, tc.event.EventType())
			}
			seen[tc.name] = true
			var got []string
			for _, m := range domain.Movements(tc.event) {
				got = append(got, movementText(m))
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("movements (-want +got):\n%s", diff)
			}
			// Appending keeps what dst held, and yields the same.
			prefix := []domain.Movement{{Account: "earlier"}}
			again := domain.AppendMovements(prefix, tc.event)
			if len(again) != 1+len(want) || again[0].Account != "earlier" {
				t.Errorf("AppendMovements after one movement: %d movements, the first %q", len(again), again[0].Account)
			}
		})
	}
	for _, tc := range goldenEvents {
		if moves := slices.Contains(domain.BalanceEventTypes(), tc.event.EventType()); moves != (len(wantMovements[tc.name]) > 0) {
			t.Errorf("%s: BalanceEventTypes holds %s: %v, with %d movements", tc.name, tc.event.EventType(), moves,
				len(wantMovements[tc.name]))
		}
	}
	for name := range wantMovements {
		if !seen[name] {
			t.Errorf("movements pinned for %s, which is no golden event", name)
		}
	}
}

func TestHeaderOf(t *testing.T) {
	for _, tc := range goldenEvents {
		h, ok := domain.HeaderOf(tc.event)
		ms := domain.Movements(tc.event)
		if ok != (len(ms) > 0) {
			t.Errorf("%s: HeaderOf ok %v, %d movements", tc.name, ok, len(ms))
		}
		for _, m := range ms {
			if m.Transfer != h.ID {
				t.Errorf("%s: movement of %s, header of %s", tc.name, m.Transfer, h.ID)
			}
		}
	}
	h, _ := domain.HeaderOf(domain.PendingPosted{ID: "c", PendingID: "h", Reference: "r", Metadata: map[string]string{"k": "v"},
		EffectiveAt: now})
	if want := (domain.TransferHeader{ID: "c", Reference: "r", Metadata: map[string]string{"k": "v"}, EffectiveAt: now}); !cmp.Equal(h, want) {
		t.Errorf("HeaderOf(PendingPosted) = %+v, want %+v", h, want)
	}
}

// TestAppendMovementsAllocatesNothing holds the hot path to its promise: with
// a reused buffer, folding an event allocates nothing.
func TestAppendMovementsAllocatesNothing(t *testing.T) {
	var events []domain.Event
	for _, tc := range goldenEvents {
		events = append(events, tc.event)
	}
	buf := make([]domain.Movement, 0, 64)
	if n := testing.AllocsPerRun(100, func() {
		for _, e := range events {
			buf = domain.AppendMovements(buf[:0], e)
		}
	}); n != 0 {
		t.Errorf("AppendMovements into a reused buffer: %v allocations per run, want 0", n)
	}
}

// movementsSeeds is how many histories the fold is checked over, each of
// movementsCommands commands of the holds workload (property_holds_test.go):
// transfers, holds posted in full or in part, voided and expired, reversals.
const (
	movementsSeeds    = 3
	movementsCommands = 4_000
)

// TestPropertyMovementsFoldEqualsEvolve folds the movements of random valid
// histories into per-account totals and holds them, event by event, to the
// totals State.Evolve keeps. Every movement pair balances: per asset, the
// debits an event moves equal the credits.
func TestPropertyMovementsFoldEqualsEvolve(t *testing.T) {
	base := propertySeed(t)
	kinds := map[string]int{}
	for k := range uint64(movementsSeeds) {
		seed := base + k
		w := newHoldsWorkload(t, seed)
		for w.step = 0; w.commands < movementsCommands; w.step++ {
			w.randomStep()
			if t.Failed() {
				t.Fatalf("workload failed at step %d (seed %#x)", w.step, seed)
			}
		}
		s := domain.NewState()
		folded := map[string]*domain.Account{}
		var buf []domain.Movement
		for i, e := range w.m.log {
			pos := uint64(i + 1)
			s.Evolve(pos, e)
			buf = domain.AppendMovements(buf[:0], e)
			if len(buf) > 0 {
				kinds[e.EventType()]++
			}
			var debits, credits = map[string]domain.Units{}, map[string]domain.Units{}
			for _, m := range buf {
				a := folded[m.Account]
				if a == nil {
					a = &domain.Account{}
					folded[m.Account] = a
				}
				total := m.Total(a)
				*total = total.Add(m.Amount)
				sums := credits
				if m.Side == domain.SideDebit {
					sums = debits
				}
				key := fmt.Sprintf("%s pending=%v", m.Asset, m.Pending)
				sums[key] = sums[key].Add(m.Amount)
			}
			if !cmp.Equal(debits, credits, unitsEqual) {
				t.Fatalf("seed %#x, event %d (%s): debits %v, credits %v", seed, pos, e.EventType(), debits, credits)
			}
			for _, m := range buf {
				checkTotals(t, s, folded, m.Account, fmt.Sprintf("seed %#x, event %d (%s)", seed, pos, e.EventType()))
			}
		}
		for _, id := range w.ids {
			if _, ok := s.Account(id); ok {
				checkTotals(t, s, folded, id, fmt.Sprintf("seed %#x, at the end", seed))
			}
		}
	}
	t.Logf("events with movements: %v", kinds)
	for _, typ := range []string{domain.TypeTransferCommitted, domain.TypeTransferPending, domain.TypePendingPosted,
		domain.TypePendingVoided, domain.TypePendingExpired, domain.TypeTransferReversed} {
		if kinds[typ] == 0 {
			t.Errorf("the histories hold no %s: the test checks less than it claims", typ)
		}
	}
}

func checkTotals(t *testing.T, s *domain.State, folded map[string]*domain.Account, id, where string) {
	t.Helper()
	a, _ := s.Account(id)
	f := folded[id]
	if f == nil {
		f = &domain.Account{}
	}
	got := [4]domain.Units{f.DebitsPosted, f.CreditsPosted, f.DebitsPending, f.CreditsPending}
	want := [4]domain.Units{a.DebitsPosted, a.CreditsPosted, a.DebitsPending, a.CreditsPending}
	if got != want {
		t.Fatalf("%s: account %s folded from movements %v, Evolve %v", where, id, got, want)
	}
}

func TestMovementDeltas(t *testing.T) {
	amount := domain.UnitsFromInt64(-7)
	for _, tc := range []struct {
		side    domain.Side
		pending bool
		want    int // which of the four totals
	}{
		{domain.SideDebit, false, 0}, {domain.SideCredit, false, 1}, {domain.SideDebit, true, 2}, {domain.SideCredit, true, 3},
	} {
		m := domain.Movement{Side: tc.side, Pending: tc.pending, Amount: amount}
		dp, cp, dq, cq := m.Deltas()
		var want [4]domain.Units
		want[tc.want] = amount
		if got := [4]domain.Units{dp, cp, dq, cq}; got != want {
			t.Errorf("%s pending=%v: Deltas %v, want %v", tc.side, tc.pending, got, want)
		}
		var a domain.Account
		*m.Total(&a) = amount
		if got := [4]domain.Units{a.DebitsPosted, a.CreditsPosted, a.DebitsPending, a.CreditsPending}; got != want {
			t.Errorf("%s pending=%v: Total moves %v, want %v", tc.side, tc.pending, got, want)
		}
	}
}

func TestCheckReversal(t *testing.T) {
	original := []domain.Posting{usdPosting("alice", "bob", 1000), usdPosting("carol", "dave", 500)}
	back := func(a, b int64) []domain.Posting {
		return []domain.Posting{usdPosting("bob", "alice", a), usdPosting("dave", "carol", b)}
	}
	units := func(a, b int64) []domain.Units {
		return []domain.Units{domain.UnitsFromInt64(a), domain.UnitsFromInt64(b)}
	}
	for _, tc := range []struct {
		name string
		done []domain.Units
		back []domain.Posting
		want []domain.Units
		err  error
	}{
		{name: "in full", back: back(1000, 500), want: units(1000, 500)},
		{name: "in part", back: back(300, 0), want: units(300, 0)},
		{name: "the rest", done: units(300, 0), back: back(700, 500), want: units(1000, 500)},
		{name: "more than left", done: units(300, 0), back: back(701, 0), err: domain.ErrAmountExceedsRemaining},
		{name: "more than the original", back: back(0, 501), err: domain.ErrAmountExceedsRemaining},
		{name: "nothing", back: back(0, 0), err: domain.ErrInvalidAmount},
		{name: "nothing left", done: units(1000, 500), back: back(1, 0), err: domain.ErrAmountExceedsRemaining},
		{name: "negative", back: back(-1, 5), err: domain.ErrInvalidAmount},
		{name: "not undone", back: []domain.Posting{usdPosting("alice", "bob", 1), usdPosting("dave", "carol", 1)},
			err: domain.ErrInvalidField},
		{name: "other asset", back: []domain.Posting{{Debit: "bob", Credit: "alice", Asset: "BTC", Amount: btc(1)},
			usdPosting("dave", "carol", 1)}, err: domain.ErrInvalidField},
		{name: "fewer postings", back: back(1, 1)[:1], err: domain.ErrInvalidField},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := domain.CheckReversal(original, tc.done, tc.back)
			if !errors.Is(err, tc.err) {
				t.Fatalf("CheckReversal: %v, want %v", err, tc.err)
			}
			if !cmp.Equal(got, tc.want, unitsEqual) {
				t.Errorf("CheckReversal = %v, want %v", got, tc.want)
			}
			if tc.done != nil && err == nil && &got[0] == &tc.done[0] {
				t.Error("CheckReversal returned done itself: the state's slice would change")
			}
		})
	}
}

// TestReversalCapMatchesDecide holds CheckReversal to Decide on random
// partial reversals: whatever Decide accepts, CheckReversal accepts with the
// totals the state then keeps (State.Reversed), and what one refuses the
// other refuses. Asks go up to one minor unit past what is left.
func TestReversalCapMatchesDecide(t *testing.T) {
	r := rand.New(rand.NewPCG(propertySeed(t), 7))
	s := newWorld(t)
	orig, err := decide(s, transfer("orig", posting("world", "alice", "USD", "10.00"), posting("world", "carol", "USD", "5.00")))
	if err != nil {
		t.Fatal(err)
	}
	pos := s.Position() + 1
	s.Evolve(pos, orig)
	postings, ok := domain.ReversiblePostings(orig)
	if !ok || len(postings) != 2 {
		t.Fatalf("ReversiblePostings(%s) = %v, %v", orig.EventType(), postings, ok)
	}
	accepted, refused := 0, 0
	for i := 0; s.Reversed(pos) == nil || s.Reversed(pos)[0] != postings[0].Amount.Units ||
		s.Reversed(pos)[1] != postings[1].Amount.Units; i++ {
		done := s.Reversed(pos)
		var ask [2]int64
		for k, p := range postings {
			left := p.Amount.Units
			if done != nil {
				left = left.Sub(done[k])
			}
			ask[k] = r.Int64N(unitsInt64(left) + 2)
		}
		back := []domain.Posting{usdPosting("alice", "world", ask[0]), usdPosting("carol", "world", ask[1])}
		next, checkErr := domain.CheckReversal(postings, done, back)
		e, err := decide(s, &domain.ReverseTransfer{ID: fmt.Sprintf("rev%d", i), TransferID: "orig",
			Amounts: []string{domain.UnitsFromInt64(ask[0]).Format(2), domain.UnitsFromInt64(ask[1]).Format(2)}})
		switch {
		case err == nil && checkErr != nil:
			t.Fatalf("step %d: Decide reversed %v, CheckReversal refused: %v", i, ask, checkErr)
		case err == nil:
			accepted++
			s.Evolve(s.Position()+1, e)
			if !cmp.Equal(s.Reversed(pos), next, unitsEqual) {
				t.Fatalf("step %d: the state reversed %v, CheckReversal %v", i, s.Reversed(pos), next)
			}
		case checkErr == nil:
			t.Fatalf("step %d: CheckReversal accepted %v, Decide refused: %v", i, ask, err)
		default:
			refused++
		}
	}
	if accepted < 2 || refused == 0 {
		t.Errorf("%d reversals accepted, %d refused: the test checks less than it claims", accepted, refused)
	}
}
