package domain_test

import (
	"strings"
	"testing"
	"time"

	"github.com/ledgerd/ledger/domain"
)

func TestDecideReverse(t *testing.T) {
	t1 := func() domain.Command { return transfer("t1", posting("world", "carol", "USD", "10")) }
	fx := func() domain.Command {
		return transfer("t1", posting("world", "carol", "USD", "10"), posting("btc:world", "btc:alice", "BTC", "0.5"))
	}
	zero := map[string]string{
		"world": "bal=0.00 avail=0.00 ceil=0.00 dq=0.00 cq=0.00",
		"carol": "bal=0.00 avail=0.00 ceil=0.00 dq=0.00 cq=0.00",
	}
	carol := func(bal string) map[string]string {
		return map[string]string{"carol": "bal=" + bal + " avail=" + bal + " ceil=" + bal + " dq=0.00 cq=0.00"}
	}
	at := func(c *domain.ReverseTransfer, effective time.Time) *domain.ReverseTransfer {
		c.EffectiveAt = effective
		return c
	}
	runRules(t, []ruleCase{
		{name: "in full", prepare: []domain.Command{t1()}, cmd: &domain.ReverseTransfer{ID: "r1", TransferID: "t1", Reference: "refund", Metadata: map[string]string{"k": "v"}},
			accounts: zero,
			check: func(t *testing.T, s *domain.State, e domain.Event) {
				checkEvent(t, e, domain.TransferReversed{ID: "r1", TransferID: "t1", TransferPosition: s.Position() - 1,
					Postings: []domain.Posting{usdPosting("carol", "world", 1000)}, Reference: "refund",
					Metadata: map[string]string{"k": "v"}, EffectiveAt: now})
			}},
		{name: "partial", prepare: []domain.Command{t1()}, cmd: reverse("r1", "t1", "4"), accounts: carol("6.00")},
		{name: "partial then partial up to the total", prepare: []domain.Command{t1(), reverse("r1", "t1", "4")},
			cmd: reverse("r2", "t1", "6"), accounts: zero},
		{name: "partial, partial, then beyond", prepare: []domain.Command{t1(), reverse("r1", "t1", "4"), reverse("r2", "t1", "6")},
			cmd: reverse("r3", "t1", "0.01"), err: domain.ErrAlreadyReversed, field: "transfer_id"},
		{name: "partial, then more than is left", prepare: []domain.Command{t1(), reverse("r1", "t1", "4")},
			cmd: reverse("r2", "t1", "6.01"), err: domain.ErrAmountExceedsRemaining, field: "amounts[0]"},
		{name: "more than the original, nothing reversed before", prepare: []domain.Command{t1()},
			cmd: reverse("r1", "t1", "10.01"), err: domain.ErrAmountExceedsRemaining, field: "amounts[0]"},
		{name: "partial, then in full: the rest", prepare: []domain.Command{t1(), reverse("r1", "t1", "4")},
			cmd: reverse("r2", "t1"), accounts: zero,
			check: func(t *testing.T, s *domain.State, e domain.Event) {
				if got := e.(domain.TransferReversed).Postings[0].Amount; got != usd(600) {
					t.Errorf("reversed %v, want the 6.00 left", got)
				}
			}},
		{name: "in full twice", prepare: []domain.Command{t1(), reverse("r1", "t1")}, cmd: reverse("r2", "t1"),
			err: domain.ErrAlreadyReversed, field: "transfer_id"},
		{name: "in full, then a partial", prepare: []domain.Command{t1(), reverse("r1", "t1")}, cmd: reverse("r2", "t1", "0.01"),
			err: domain.ErrAlreadyReversed, field: "transfer_id"},
		{name: "fx: partial per posting", prepare: []domain.Command{fx()}, cmd: reverse("r1", "t1", "3", "0.2"),
			accounts: map[string]string{
				"carol":     "bal=7.00 avail=7.00 ceil=7.00 dq=0.00 cq=0.00",
				"btc:alice": "bal=0.30000000 avail=0.30000000 ceil=0.30000000 dq=0.00000000 cq=0.00000000",
			}},
		{name: "fx: zero on one posting", prepare: []domain.Command{fx()}, cmd: reverse("r1", "t1", "0", "0.5"),
			accounts: map[string]string{
				"carol":     "bal=10.00 avail=10.00 ceil=10.00 dq=0.00 cq=0.00",
				"btc:alice": "bal=0.00000000 avail=0.00000000 ceil=0.00000000 dq=0.00000000 cq=0.00000000",
			}},
		{name: "fx: the zeroed posting later", prepare: []domain.Command{fx(), reverse("r1", "t1", "0", "0.5")}, cmd: reverse("r2", "t1"),
			accounts: carol("0.00")},
		{name: "fx: beyond on the second posting", prepare: []domain.Command{fx(), reverse("r1", "t1", "0", "0.5")}, cmd: reverse("r2", "t1", "1", "0.00000001"),
			err: domain.ErrAmountExceedsRemaining, field: "amounts[1]"},
		{name: "all amounts zero", prepare: []domain.Command{t1()}, cmd: reverse("r1", "t1", "0.00"), err: domain.ErrInvalidAmount, field: "amounts"},
		{name: "more amounts than postings", prepare: []domain.Command{t1()}, cmd: reverse("r1", "t1", "1", "1"), err: domain.ErrInvalidField, field: "amounts"},
		{name: "negative amount", prepare: []domain.Command{t1()}, cmd: reverse("r1", "t1", "-1"), err: domain.ErrInvalidAmount, field: "amounts[0]"},
		{name: "amount with too many decimals", prepare: []domain.Command{t1()}, cmd: reverse("r1", "t1", "0.001"), err: domain.ErrInvalidAmount, field: "amounts[0]"},

		// What can be reversed.
		{name: "unknown transfer", cmd: reverse("r1", "t1"), err: domain.ErrTransferNotFound, field: "transfer_id"},
		{name: "a hold", prepare: []domain.Command{hold("h1", 0, usdOne())}, cmd: reverse("r1", "h1"),
			err: domain.ErrNotReversible, field: "transfer_id"},
		{name: "a posted hold, by the hold's id", prepare: []domain.Command{hold("h1", 0, usdOne()), postHold("p1", "h1")}, cmd: reverse("r1", "h1"),
			err: domain.ErrNotReversible, field: "transfer_id"},
		{name: "a posted hold, by the post's id", prepare: []domain.Command{hold("h1", 0, posting("world", "carol", "USD", "10")), postHold("p1", "h1")},
			cmd: reverse("r1", "p1"), accounts: zero,
			check: func(t *testing.T, s *domain.State, e domain.Event) {
				if r := e.(domain.TransferReversed); r.TransferID != "p1" || r.TransferPosition != s.Position()-1 {
					t.Errorf("event = %+v", r)
				}
			}},
		{name: "a partial post: what was posted", prepare: []domain.Command{hold("h1", 0, posting("world", "carol", "USD", "10")), postHold("p1", "h1", "4")},
			cmd: reverse("r1", "p1"), accounts: zero},
		{name: "a partial post: beyond what was posted", prepare: []domain.Command{hold("h1", 0, posting("world", "carol", "USD", "10")), postHold("p1", "h1", "4")},
			cmd: reverse("r1", "p1", "4.01"), err: domain.ErrAmountExceedsRemaining, field: "amounts[0]"},
		{name: "a post of nothing", prepare: []domain.Command{hold("h1", 0, usdOne()), postHold("p1", "h1", "0")},
			cmd: reverse("r1", "p1"), err: domain.ErrAlreadyReversed, field: "transfer_id"},
		{name: "a void", prepare: []domain.Command{hold("h1", 0, usdOne()), voidHold("v1", "h1")}, cmd: reverse("r1", "v1"),
			err: domain.ErrNotReversible, field: "transfer_id"},
		{name: "a reversal", prepare: []domain.Command{t1(), reverse("r1", "t1", "1")}, cmd: reverse("r2", "r1"),
			err: domain.ErrNotReversible, field: "transfer_id"},

		// A reversal is a transfer: bounds and status apply.
		{name: "the payee spent it, min 0", prepare: []domain.Command{fund("f", "alice", "10"), transfer("spend", posting("alice", "carol", "USD", "10"))},
			cmd: reverse("r1", "f"), err: domain.ErrBelowMinBalance, field: "postings"},
		{name: "the payee spent part: what is left", prepare: []domain.Command{fund("f", "alice", "10"), transfer("spend", posting("alice", "carol", "USD", "6"))},
			cmd: reverse("r1", "f", "4"), accounts: map[string]string{"alice": "bal=0.00 avail=0.00 ceil=0.00 dq=0.00 cq=0.00"}},
		{name: "the payee spent part: more than is left", prepare: []domain.Command{fund("f", "alice", "10"), transfer("spend", posting("alice", "carol", "USD", "6"))},
			cmd: reverse("r1", "f", "4.01"), err: domain.ErrBelowMinBalance, field: "postings"},
		{name: "the payee holds it", prepare: []domain.Command{fund("f", "alice", "10"), hold("h1", 0, posting("alice", "carol", "USD", "10"))},
			cmd: reverse("r1", "f"), err: domain.ErrBelowMinBalance, field: "postings"},
		{name: "the payer refilled to max", prepare: []domain.Command{fund("f", "bob", "100"), transfer("t1", posting("bob", "carol", "USD", "30")), fund("g", "bob", "30")},
			cmd: reverse("r1", "t1"), err: domain.ErrAboveMaxBalance, field: "postings"},
		{name: "the payee closed", prepare: []domain.Command{t1(), closeAccount("carol")}, cmd: reverse("r1", "t1"),
			err: domain.ErrAccountClosed, field: "postings[0].debit_account"},
		{name: "the payer closed", prepare: []domain.Command{t1(), closeAccount("world")}, cmd: reverse("r1", "t1"),
			err: domain.ErrAccountClosed, field: "postings[0].credit_account"},

		// Fields.
		{name: "effective_at in the policy", prepare: []domain.Command{t1()}, cmd: at(reverse("r1", "t1"), now.Add(-24*time.Hour)),
			check: func(t *testing.T, s *domain.State, e domain.Event) {
				if got := e.(domain.TransferReversed).EffectiveAt; !got.Equal(now.Add(-24 * time.Hour)) {
					t.Errorf("effective_at = %v", got)
				}
			}},
		{name: "effective_at too far back", prepare: []domain.Command{t1()}, cmd: at(reverse("r1", "t1"), now.Add(-91*24*time.Hour)),
			err: domain.ErrInvalidField, field: "effective_at"},
		{name: "effective_at in the future", prepare: []domain.Command{t1()}, cmd: at(reverse("r1", "t1"), now.Add(6*time.Minute)),
			err: domain.ErrInvalidField, field: "effective_at"},
		{name: "its own id", prepare: []domain.Command{t1()}, cmd: reverse("t1", "t1"), err: domain.ErrInvalidField, field: "id"},
		{name: "malformed id", cmd: reverse("r 1", "t1"), err: domain.ErrInvalidField, field: "id"},
		{name: "malformed transfer id", cmd: reverse("r1", ""), err: domain.ErrInvalidField, field: "transfer_id"},
		{name: "reference over max", cmd: &domain.ReverseTransfer{ID: "r1", TransferID: "t1", Reference: strings.Repeat("r", domain.ReferenceLenMax+1)},
			err: domain.ErrInvalidField, field: "reference"},
		{name: "id of a transfer", prepare: []domain.Command{t1(), transfer("t2", usdOne())}, cmd: reverse("t2", "t1"),
			err: domain.ErrExistsWithDifferentFields, field: "id"},
		{name: "id of a hold", prepare: []domain.Command{t1(), hold("h1", 0, usdOne())}, cmd: reverse("h1", "t1"),
			err: domain.ErrExistsWithDifferentFields, field: "id"},
	})
}

// TestReverseRetries: a reversal id is an idempotency key like any other, and a
// retry answers by id even when the reversal could not be decided anew.
func TestReverseRetries(t *testing.T) {
	s := newWorld(t)
	effective := now.Add(-time.Hour)
	apply(t, s, transfer("t1", posting("world", "carol", "USD", "10")))
	apply(t, s, transfer("t2", usdOne()))
	original := func() *domain.ReverseTransfer {
		return &domain.ReverseTransfer{ID: "r1", TransferID: "t1", Amounts: []string{"4"}, Reference: "r",
			Metadata: map[string]string{"k": "v"}, EffectiveAt: effective}
	}
	r1 := apply(t, s, original())
	r2 := apply(t, s, reverse("r2", "t1"))
	r3 := apply(t, s, reverse("r3", "t2"))
	// Much later: effective_at is out of the policy, and t1 fully reversed.
	at := now.Add(100 * 24 * time.Hour)

	for _, tc := range []struct {
		name   string
		change func(c *domain.ReverseTransfer)
		field  string // "" for EXISTS at pos
		pos    uint64
	}{
		{"identical", func(*domain.ReverseTransfer) {}, "", r1},
		{"amounts written differently", func(c *domain.ReverseTransfer) { c.Amounts = []string{"4.00"} }, "", r1},
		{"amounts omitted", func(c *domain.ReverseTransfer) { c.Amounts = nil }, "", r1},
		{"effective_at omitted", func(c *domain.ReverseTransfer) { c.EffectiveAt = time.Time{} }, "", r1},
		{"full reversal retried", func(c *domain.ReverseTransfer) { *c = *reverse("r2", "t1") }, "", r2},
		{"other amounts", func(c *domain.ReverseTransfer) { c.Amounts = []string{"3"} }, "amounts[0]", 0},
		{"another transfer", func(c *domain.ReverseTransfer) { c.TransferID = "t2" }, "transfer_id", 0},
		{"another reference", func(c *domain.ReverseTransfer) { c.Reference = "" }, "reference", 0},
		{"other metadata", func(c *domain.ReverseTransfer) { c.Metadata = map[string]string{"k": "w"} }, "metadata", 0},
		{"another effective_at", func(c *domain.ReverseTransfer) { c.EffectiveAt = effective.Add(time.Microsecond) }, "effective_at", 0},
		{"id of another reversal", func(c *domain.ReverseTransfer) { c.ID = "r3" }, "transfer_id", 0},
		{"full, with the id of another reversal", func(c *domain.ReverseTransfer) { *c = *reverse("r3", "t2") }, "", r3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := original()
			tc.change(c)
			_, err := decideAt(s, c, at)
			if tc.field == "" {
				checkExists(t, err, tc.pos)
				return
			}
			checkErr(t, err, domain.ErrExistsWithDifferentFields, tc.field)
		})
	}
	// A transfer, a hold, a post or a void with a reversal's id differs in id.
	for _, c := range []domain.Command{transfer("r1", usdOne()), hold("r1", 0, usdOne()), postHold("r1", "h"), voidHold("r1", "h")} {
		_, err := decideAt(s, c, at)
		checkErr(t, err, domain.ErrExistsWithDifferentFields, "id")
	}
}

// TestEffectiveAtPolicy: effective_at is bounded by the ledger's policy, for
// transfers, holds and reversals alike; the bounds themselves are allowed.
func TestEffectiveAtPolicy(t *testing.T) {
	day := 24 * time.Hour
	for _, tc := range []struct {
		name      string
		policy    *domain.Policy // nil: DefaultPolicy
		effective time.Time
		ok        bool
	}{
		{"default: now", nil, now, true},
		{"default: 90 days back", nil, now.Add(-90 * day), true},
		{"default: 90 days and 1µs back", nil, now.Add(-90*day - time.Microsecond), false},
		{"default: 5 minutes ahead", nil, now.Add(5 * time.Minute), true},
		{"default: 5 minutes and 1µs ahead", nil, now.Add(5*time.Minute + time.Microsecond), false},
		{"no past limit: 10 years back", &domain.Policy{EffectiveFutureMax: time.Minute}, now.Add(-3650 * day), true},
		{"no future skew: 1µs ahead", &domain.Policy{EffectivePastMax: day}, now.Add(time.Microsecond), false},
		{"no future skew: now", &domain.Policy{EffectivePastMax: day}, now, true},
		{"a day back: 2 days back", &domain.Policy{EffectivePastMax: day}, now.Add(-2 * day), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newWorld(t)
			if tc.policy != nil {
				s.SetPolicy(*tc.policy)
			}
			apply(t, s, transfer("orig", usdOne()))
			plain := transfer("t1", usdOne())
			plain.EffectiveAt = tc.effective
			pending := hold("h1", 0, usdOne())
			pending.EffectiveAt = tc.effective
			rev := reverse("r1", "orig")
			rev.EffectiveAt = tc.effective
			for _, c := range []domain.Command{plain, pending, rev} {
				e, err := decide(s, c)
				if !tc.ok {
					checkErr(t, err, domain.ErrInvalidField, "effective_at")
					continue
				}
				checkErr(t, err, nil, "")
				var got time.Time
				switch e := e.(type) {
				case domain.TransferCommitted:
					got = e.EffectiveAt
				case domain.TransferPending:
					got = e.EffectiveAt
				case domain.TransferReversed:
					got = e.EffectiveAt
				}
				if !got.Equal(tc.effective) {
					t.Errorf("%T: effective_at %v, want %v", e, got, tc.effective)
				}
			}
		})
	}
}
