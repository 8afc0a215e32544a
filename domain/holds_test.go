package domain_test

import (
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ledgerd/ledger/domain"
)

// usdPosting is a posting of amount (in cents) as events carry it.
func usdPosting(debit, credit string, cents int64) domain.Posting {
	return domain.Posting{Debit: debit, Credit: credit, Asset: "USD", Amount: usd(cents)}
}

func btc(units int64) domain.Amount {
	return domain.Amount{Units: domain.UnitsFromInt64(units), Scale: 8}
}

// checkEvent compares an event with the one wanted.
func checkEvent(t *testing.T, got, want domain.Event) {
	t.Helper()
	if diff := cmp.Diff(want, got, unitsEqual); diff != "" {
		t.Errorf("event (-want +got):\n%s", diff)
	}
}

func checkHoldCount(t *testing.T, s *domain.State, want int) {
	t.Helper()
	if got := s.HoldCount(); got != want {
		t.Errorf("HoldCount = %d, want %d", got, want)
	}
}

func TestDecideHoldPlaced(t *testing.T) {
	fx := hold("h1", 0, posting("world", "carol", "USD", "10"), posting("btc:world", "btc:alice", "BTC", "0.5"))
	runRules(t, []ruleCase{
		{name: "pending amounts, available and ceiling", cmd: hold("h1", 0, posting("world", "carol", "USD", "10")),
			accounts: map[string]string{
				"world": "bal=0.00 avail=-10.00 ceil=0.00 dq=10.00 cq=0.00",
				"carol": "bal=0.00 avail=0.00 ceil=10.00 dq=0.00 cq=10.00",
			},
			check: func(t *testing.T, s *domain.State, e domain.Event) {
				checkEvent(t, e, domain.TransferPending{ID: "h1", Postings: []domain.Posting{usdPosting("world", "carol", 1000)}, EffectiveAt: now})
				checkHoldCount(t, s, 1)
				h, ok := s.Hold("h1")
				if !ok || !h.ExpiresAt.IsZero() || h.Position != s.Position() || len(h.Postings) != 1 {
					t.Errorf("Hold(h1) = %+v, %v", h, ok)
				}
				if at, ok := s.NextExpiry(); ok {
					t.Errorf("NextExpiry = %v for a hold without timeout", at)
				}
			}},
		{name: "debit-normal accounts: pending debit is an inflow", cmd: hold("h1", 0, posting("receivable", "expense", "USD", "5")),
			accounts: map[string]string{
				"receivable": "bal=0.00 avail=0.00 ceil=5.00 dq=5.00 cq=0.00",
				"expense":    "bal=0.00 avail=-5.00 ceil=0.00 dq=0.00 cq=5.00",
			}},
		{name: "with timeout: expires at the recorded time plus it", cmd: hold("h1", 60, usdOne()),
			check: func(t *testing.T, s *domain.State, e domain.Event) {
				at := now.Add(60 * time.Second)
				checkEvent(t, e, domain.TransferPending{ID: "h1", Postings: []domain.Posting{usdPosting("world", "carol", 100)},
					EffectiveAt: now, TimeoutSeconds: 60, ExpiresAt: &at})
				if h, _ := s.Hold("h1"); !h.ExpiresAt.Equal(at) {
					t.Errorf("Hold(h1).ExpiresAt = %v, want %v", h.ExpiresAt, at)
				}
				if got, ok := s.NextExpiry(); !ok || !got.Equal(at) {
					t.Errorf("NextExpiry = %v, %v; want %v", got, ok, at)
				}
			}},
		{name: "timeout at max", cmd: hold("h1", uint32(domain.TimeoutMax/time.Second), usdOne())},
		{name: "timeout over max", cmd: hold("h1", uint32(domain.TimeoutMax/time.Second)+1, usdOne()), err: domain.ErrInvalidField, field: "timeout"},
		{name: "timeout without pending", cmd: &domain.CreateTransfer{ID: "t1", Postings: []domain.PostingInput{usdOne()}, TimeoutSeconds: 5},
			err: domain.ErrInvalidField, field: "timeout"},
		{name: "fx hold in two assets", cmd: fx, accounts: map[string]string{
			"world":     "bal=0.00 avail=-10.00 ceil=0.00 dq=10.00 cq=0.00",
			"carol":     "bal=0.00 avail=0.00 ceil=10.00 dq=0.00 cq=10.00",
			"btc:world": "bal=0.00000000 avail=-0.50000000 ceil=0.00000000 dq=0.50000000 cq=0.00000000",
			"btc:alice": "bal=0.00000000 avail=0.00000000 ceil=0.50000000 dq=0.00000000 cq=0.50000000",
		}},

		// min_balance is checked on available, max_balance on the ceiling.
		{name: "min 0: hold on an empty account", cmd: hold("h1", 0, posting("alice", "carol", "USD", "0.01")),
			err: domain.ErrBelowMinBalance, field: "postings"},
		{name: "min 0: hold of all that is available", prepare: []domain.Command{fund("f", "alice", "10")},
			cmd:      hold("h1", 0, posting("alice", "carol", "USD", "10")),
			accounts: map[string]string{"alice": "bal=10.00 avail=0.00 ceil=10.00 dq=10.00 cq=0.00"}},
		{name: "min 0: hold of more than available", prepare: []domain.Command{fund("f", "alice", "10")},
			cmd: hold("h1", 0, posting("alice", "carol", "USD", "10.01")), err: domain.ErrBelowMinBalance, field: "postings"},
		{name: "a hold reduces what a transfer may take", prepare: []domain.Command{fund("f", "alice", "10"), hold("h1", 0, posting("alice", "carol", "USD", "6"))},
			cmd: transfer("t1", posting("alice", "carol", "USD", "4.01")), err: domain.ErrBelowMinBalance, field: "postings"},
		{name: "a transfer of exactly what the hold leaves", prepare: []domain.Command{fund("f", "alice", "10"), hold("h1", 0, posting("alice", "carol", "USD", "6"))},
			cmd:      transfer("t1", posting("alice", "carol", "USD", "4")),
			accounts: map[string]string{"alice": "bal=6.00 avail=0.00 ceil=6.00 dq=6.00 cq=0.00"}},
		{name: "a hold reduces what another hold may take", prepare: []domain.Command{fund("f", "alice", "10"), hold("h1", 0, posting("alice", "carol", "USD", "6"))},
			cmd: hold("h2", 0, posting("alice", "carol", "USD", "4.01")), err: domain.ErrBelowMinBalance, field: "postings"},
		{name: "pending inflow counts toward max", prepare: []domain.Command{hold("h1", 0, posting("world", "bob", "USD", "60"))},
			cmd: transfer("t1", posting("world", "bob", "USD", "40.01")), err: domain.ErrAboveMaxBalance, field: "postings"},
		{name: "pending inflow up to max", prepare: []domain.Command{hold("h1", 0, posting("world", "bob", "USD", "60"))},
			cmd:      transfer("t1", posting("world", "bob", "USD", "40")),
			accounts: map[string]string{"bob": "bal=40.00 avail=40.00 ceil=100.00 dq=0.00 cq=60.00"}},
		{name: "hold above max", cmd: hold("h1", 0, posting("world", "bob", "USD", "100.01")), err: domain.ErrAboveMaxBalance, field: "postings"},
		{name: "min 0 on debit-normal: pending credit", cmd: hold("h1", 0, posting("world", "receivable", "USD", "0.01")),
			err: domain.ErrBelowMinBalance, field: "postings"},
		{name: "max on debit-normal: pending debit", cmd: hold("h1", 0, posting("expense", "world", "USD", "50.01")),
			err: domain.ErrAboveMaxBalance, field: "postings"},
		{name: "btc min 0 in an fx hold", cmd: hold("h1", 0, posting("world", "carol", "USD", "1"), posting("btc:alice", "btc:world", "BTC", "0.00000001")),
			err: domain.ErrBelowMinBalance, field: "postings"},

		{name: "unknown account", cmd: hold("h1", 0, posting("world", "nobody", "USD", "1")), err: domain.ErrAccountNotFound, field: "postings[0].credit_account"},
		{name: "closed account", prepare: []domain.Command{closeAccount("carol")},
			cmd: hold("h1", 0, usdOne()), err: domain.ErrAccountClosed, field: "postings[0].credit_account"},
	})
}

func TestDecidePost(t *testing.T) {
	h1 := func() domain.Command { return hold("h1", 0, posting("world", "carol", "USD", "10")) }
	fx := func() domain.Command {
		return hold("h1", 0, posting("world", "carol", "USD", "10"), posting("btc:world", "btc:alice", "BTC", "0.5"))
	}
	timed := func() domain.Command { return hold("h1", 60, posting("world", "carol", "USD", "10")) }
	withLabels := func(c *domain.PostPending, ref string, meta map[string]string) *domain.PostPending {
		c.Reference, c.Metadata = ref, meta
		return c
	}
	settled := map[string]string{
		"world": "bal=-10.00 avail=-10.00 ceil=-10.00 dq=0.00 cq=0.00",
		"carol": "bal=10.00 avail=10.00 ceil=10.00 dq=0.00 cq=0.00",
	}
	released := map[string]string{
		"world": "bal=0.00 avail=0.00 ceil=0.00 dq=0.00 cq=0.00",
		"carol": "bal=0.00 avail=0.00 ceil=0.00 dq=0.00 cq=0.00",
	}
	runRules(t, []ruleCase{
		{name: "in full", prepare: []domain.Command{h1()}, cmd: postHold("p1", "h1"), accounts: settled,
			check: func(t *testing.T, s *domain.State, e domain.Event) {
				checkEvent(t, e, domain.PendingPosted{ID: "p1", PendingID: "h1", EffectiveAt: now, Postings: []domain.HeldPosting{
					{Debit: "world", Credit: "carol", Asset: "USD", Amount: usd(1000), Held: usd(1000)}}})
				checkHoldCount(t, s, 0)
				if _, ok := s.Hold("h1"); ok {
					t.Error("hold h1 still open after its post")
				}
			}},
		{name: "amount equal to held", prepare: []domain.Command{h1()}, cmd: postHold("p1", "h1", "10.00"), accounts: settled},
		{name: "partial: posts the amounts, releases the rest", prepare: []domain.Command{fx()}, cmd: postHold("p1", "h1", "4", "0.1"),
			accounts: map[string]string{
				"world":     "bal=-4.00 avail=-4.00 ceil=-4.00 dq=0.00 cq=0.00",
				"carol":     "bal=4.00 avail=4.00 ceil=4.00 dq=0.00 cq=0.00",
				"btc:world": "bal=-0.10000000 avail=-0.10000000 ceil=-0.10000000 dq=0.00000000 cq=0.00000000",
				"btc:alice": "bal=0.10000000 avail=0.10000000 ceil=0.10000000 dq=0.00000000 cq=0.00000000",
			},
			check: func(t *testing.T, s *domain.State, e domain.Event) {
				checkEvent(t, e, domain.PendingPosted{ID: "p1", PendingID: "h1", EffectiveAt: now, Postings: []domain.HeldPosting{
					{Debit: "world", Credit: "carol", Asset: "USD", Amount: usd(400), Held: usd(1000)},
					{Debit: "btc:world", Credit: "btc:alice", Asset: "BTC", Amount: btc(10_000_000), Held: btc(50_000_000)},
				}})
				checkHoldCount(t, s, 0)
			}},
		{name: "partial: zero posts nothing", prepare: []domain.Command{h1()}, cmd: postHold("p1", "h1", "0"), accounts: released},
		{name: "with reference and metadata", prepare: []domain.Command{h1()},
			cmd: withLabels(postHold("p1", "h1"), "ref", map[string]string{"k": "v"}), accounts: settled,
			check: func(t *testing.T, s *domain.State, e domain.Event) {
				if p := e.(domain.PendingPosted); p.Reference != "ref" || p.Metadata["k"] != "v" {
					t.Errorf("event = %+v", p)
				}
			}},
		{name: "just before the timeout", prepare: []domain.Command{timed()}, cmd: later(time.Minute-time.Microsecond, postHold("p1", "h1")), accounts: settled},
		{name: "a hold posts even into a bound set after it", prepare: []domain.Command{hold("h1", 0, posting("world", "bob", "USD", "100")), setBounds("bob", "", "10")},
			cmd: postHold("p1", "h1"), accounts: map[string]string{"bob": "bal=100.00 avail=100.00 ceil=100.00 dq=0.00 cq=0.00"}},

		{name: "amount over held", prepare: []domain.Command{h1()}, cmd: postHold("p1", "h1", "10.01"), err: domain.ErrAmountExceedsPending, field: "amounts[0]"},
		{name: "amount over held in second posting", prepare: []domain.Command{fx()}, cmd: postHold("p1", "h1", "10", "0.50000001"),
			err: domain.ErrAmountExceedsPending, field: "amounts[1]"},
		{name: "more amounts than postings", prepare: []domain.Command{h1()}, cmd: postHold("p1", "h1", "1", "1"), err: domain.ErrInvalidField, field: "amounts"},
		{name: "fewer amounts than postings", prepare: []domain.Command{fx()}, cmd: postHold("p1", "h1", "1"), err: domain.ErrInvalidField, field: "amounts"},
		{name: "negative amount", prepare: []domain.Command{h1()}, cmd: postHold("p1", "h1", "-1"), err: domain.ErrInvalidAmount, field: "amounts[0]"},
		{name: "malformed amount", prepare: []domain.Command{fx()}, cmd: postHold("p1", "h1", "1", "1e3"), err: domain.ErrInvalidAmount, field: "amounts[1]"},
		{name: "amount with too many decimals", prepare: []domain.Command{h1()}, cmd: postHold("p1", "h1", "1.001"), err: domain.ErrInvalidAmount, field: "amounts[0]"},
		{name: "amounts over max", prepare: []domain.Command{h1()}, cmd: postHold("p1", "h1", make([]string, domain.PostingsPerTransfer+1)...),
			err: domain.ErrInvalidField, field: "amounts"},
		{name: "malformed id", cmd: postHold("p 1", "h1"), err: domain.ErrInvalidField, field: "id"},
		{name: "malformed pending id", cmd: postHold("p1", ""), err: domain.ErrInvalidField, field: "pending_id"},
		{name: "reference over max", cmd: withLabels(postHold("p1", "h1"), strings.Repeat("r", domain.ReferenceLenMax+1), nil),
			err: domain.ErrInvalidField, field: "reference"},
		{name: "metadata with an empty key", cmd: withLabels(postHold("p1", "h1"), "", map[string]string{"": "v"}),
			err: domain.ErrInvalidField, field: "metadata"},

		// Which holds can be posted.
		{name: "unknown id", cmd: postHold("p1", "h1"), err: domain.ErrPendingNotFound, field: "pending_id"},
		{name: "a plain transfer", prepare: []domain.Command{transfer("t1", usdOne())}, cmd: postHold("p1", "t1"),
			err: domain.ErrPendingNotFound, field: "pending_id"},
		{name: "a post's id", prepare: []domain.Command{h1(), postHold("p1", "h1")}, cmd: postHold("p2", "p1"),
			err: domain.ErrPendingNotFound, field: "pending_id"},
		{name: "a void's id", prepare: []domain.Command{h1(), voidHold("v1", "h1")}, cmd: postHold("p2", "v1"),
			err: domain.ErrPendingNotFound, field: "pending_id"},
		{name: "a reversal's id", prepare: []domain.Command{transfer("t1", usdOne()), reverse("r1", "t1")}, cmd: postHold("p2", "r1"),
			err: domain.ErrPendingNotFound, field: "pending_id"},
		{name: "posted, then posted again", prepare: []domain.Command{h1(), postHold("p1", "h1")}, cmd: postHold("p2", "h1"),
			err: domain.ErrPendingAlreadyResolved, field: "pending_id"},
		{name: "partly posted, then the rest", prepare: []domain.Command{h1(), postHold("p1", "h1", "4")}, cmd: postHold("p2", "h1", "6"),
			err: domain.ErrPendingAlreadyResolved, field: "pending_id"},
		{name: "voided, then posted", prepare: []domain.Command{h1(), voidHold("v1", "h1")}, cmd: postHold("p1", "h1"),
			err: domain.ErrPendingAlreadyResolved, field: "pending_id"},
		{name: "expired, then posted", prepare: []domain.Command{timed(), later(time.Minute, expireHold("h1"))},
			cmd: later(2*time.Minute, postHold("p1", "h1")), err: domain.ErrPendingExpired, field: "pending_id"},
		{name: "timed out, expiry not applied yet", prepare: []domain.Command{timed()},
			cmd: later(2*time.Minute, postHold("p1", "h1")), err: domain.ErrPendingExpired, field: "pending_id"},
		{name: "exactly at the timeout", prepare: []domain.Command{timed()},
			cmd: later(time.Minute, postHold("p1", "h1")), err: domain.ErrPendingExpired, field: "pending_id"},
	})
}

func TestDecideVoid(t *testing.T) {
	h1 := func() domain.Command { return hold("h1", 0, posting("world", "carol", "USD", "10")) }
	timed := func() domain.Command { return hold("h1", 60, posting("world", "carol", "USD", "10")) }
	runRules(t, []ruleCase{
		{name: "releases in full", prepare: []domain.Command{h1()}, cmd: &domain.VoidPending{ID: "v1", PendingID: "h1", Reference: "why"},
			accounts: map[string]string{
				"world": "bal=0.00 avail=0.00 ceil=0.00 dq=0.00 cq=0.00",
				"carol": "bal=0.00 avail=0.00 ceil=0.00 dq=0.00 cq=0.00",
			},
			check: func(t *testing.T, s *domain.State, e domain.Event) {
				checkEvent(t, e, domain.PendingVoided{ID: "v1", PendingID: "h1", Reference: "why",
					Postings: []domain.Posting{usdPosting("world", "carol", 1000)}})
				checkHoldCount(t, s, 0)
			}},
		{name: "just before the timeout", prepare: []domain.Command{timed()}, cmd: later(time.Minute-time.Microsecond, voidHold("v1", "h1"))},
		{name: "unknown id", cmd: voidHold("v1", "h1"), err: domain.ErrPendingNotFound, field: "pending_id"},
		{name: "a plain transfer", prepare: []domain.Command{transfer("t1", usdOne())}, cmd: voidHold("v1", "t1"),
			err: domain.ErrPendingNotFound, field: "pending_id"},
		{name: "voided twice", prepare: []domain.Command{h1(), voidHold("v1", "h1")}, cmd: voidHold("v2", "h1"),
			err: domain.ErrPendingAlreadyResolved, field: "pending_id"},
		{name: "posted, then voided", prepare: []domain.Command{h1(), postHold("p1", "h1")}, cmd: voidHold("v1", "h1"),
			err: domain.ErrPendingAlreadyResolved, field: "pending_id"},
		{name: "expired, then voided", prepare: []domain.Command{timed(), later(time.Hour, expireHold("h1"))},
			cmd: later(time.Hour, voidHold("v1", "h1")), err: domain.ErrPendingExpired, field: "pending_id"},
		{name: "timed out, expiry not applied yet", prepare: []domain.Command{timed()},
			cmd: later(time.Minute, voidHold("v1", "h1")), err: domain.ErrPendingExpired, field: "pending_id"},
		{name: "malformed id", cmd: voidHold("", "h1"), err: domain.ErrInvalidField, field: "id"},
		{name: "malformed pending id", cmd: voidHold("v1", "h 1"), err: domain.ErrInvalidField, field: "pending_id"},
		{name: "reference over max", cmd: &domain.VoidPending{ID: "v1", PendingID: "h1", Reference: strings.Repeat("r", domain.ReferenceLenMax+1)},
			err: domain.ErrInvalidField, field: "reference"},
	})
}

func TestDecideExpire(t *testing.T) {
	timed := func() domain.Command { return hold("h1", 60, posting("world", "carol", "USD", "10")) }
	runRules(t, []ruleCase{
		{name: "at the timeout", prepare: []domain.Command{timed()}, cmd: later(time.Minute, expireHold("h1")),
			accounts: map[string]string{
				"world": "bal=0.00 avail=0.00 ceil=0.00 dq=0.00 cq=0.00",
				"carol": "bal=0.00 avail=0.00 ceil=0.00 dq=0.00 cq=0.00",
			},
			check: func(t *testing.T, s *domain.State, e domain.Event) {
				checkEvent(t, e, domain.PendingExpired{PendingID: "h1", Postings: []domain.Posting{usdPosting("world", "carol", 1000)}})
				checkHoldCount(t, s, 0)
				if at, ok := s.NextExpiry(); ok {
					t.Errorf("NextExpiry = %v after the only hold expired", at)
				}
			}},
		{name: "long after the timeout", prepare: []domain.Command{timed()}, cmd: later(24*time.Hour, expireHold("h1"))},
		{name: "before the timeout", prepare: []domain.Command{timed()}, cmd: later(time.Minute-time.Microsecond, expireHold("h1")), err: domain.ErrNotDue},
		{name: "a hold without timeout", prepare: []domain.Command{hold("h1", 0, usdOne())}, cmd: later(24*time.Hour, expireHold("h1")), err: domain.ErrNotDue},
		{name: "unknown", cmd: later(time.Hour, expireHold("h1")), err: domain.ErrNotDue},
		{name: "a plain transfer", prepare: []domain.Command{transfer("t1", usdOne())}, cmd: later(time.Hour, expireHold("t1")), err: domain.ErrNotDue},
		{name: "posted", prepare: []domain.Command{timed(), postHold("p1", "h1")}, cmd: later(time.Hour, expireHold("h1")), err: domain.ErrNotDue},
		{name: "voided", prepare: []domain.Command{timed(), voidHold("v1", "h1")}, cmd: later(time.Hour, expireHold("h1")), err: domain.ErrNotDue},
		{name: "expired twice", prepare: []domain.Command{timed(), later(time.Hour, expireHold("h1"))}, cmd: later(time.Hour, expireHold("h1")), err: domain.ErrNotDue},
	})
}

// TestHoldRetries: post and void ids are idempotency keys in the one id space
// of transfers: EXISTS at the original position, or the first field that
// differs; an id taken by an event of another kind differs in "id".
func TestHoldRetries(t *testing.T) {
	s := newWorld(t)
	h1 := apply(t, s, hold("h1", 60, posting("world", "carol", "USD", "10")))
	post := func() *domain.PostPending {
		return &domain.PostPending{ID: "p1", PendingID: "h1", Amounts: []string{"4"}, Reference: "r", Metadata: map[string]string{"k": "v"}}
	}
	p1 := apply(t, s, post())
	apply(t, s, hold("h2", 0, usdOne()))
	void := func() *domain.VoidPending { return &domain.VoidPending{ID: "v1", PendingID: "h2", Reference: "x"} }
	v1 := apply(t, s, void())
	apply(t, s, transfer("t1", usdOne()))
	// The original hold h1 has long expired: its retry still answers by id.
	at := now.Add(time.Hour)

	for _, tc := range []struct {
		name  string
		cmd   domain.Command
		field string // "" for EXISTS at pos
		pos   uint64
	}{
		{"post identical", post(), "", p1},
		{"post with amounts written differently", func() domain.Command { c := post(); c.Amounts = []string{"4.00"}; return c }(), "", p1},
		{"post with amounts omitted", func() domain.Command { c := post(); c.Amounts = nil; return c }(), "", p1},
		{"post with other amounts", func() domain.Command { c := post(); c.Amounts = []string{"5"}; return c }(), "amounts[0]", 0},
		{"post with more amounts", func() domain.Command { c := post(); c.Amounts = []string{"4", "0"}; return c }(), "amounts", 0},
		{"post of another hold", func() domain.Command { c := post(); c.PendingID = "h2"; return c }(), "pending_id", 0},
		{"post with another reference", func() domain.Command { c := post(); c.Reference = "s"; return c }(), "reference", 0},
		{"post with other metadata", func() domain.Command { c := post(); c.Metadata = nil; return c }(), "metadata", 0},
		{"void identical", void(), "", v1},
		{"void of another hold", func() domain.Command { c := void(); c.PendingID = "h1"; return c }(), "pending_id", 0},
		{"void with another reference", func() domain.Command { c := void(); c.Reference = ""; return c }(), "reference", 0},
		{"void with a post's id", voidHold("p1", "h1"), "id", 0},
		{"post with a void's id", postHold("v1", "h2"), "id", 0},
		{"void with a transfer's id", voidHold("t1", "h2"), "id", 0},
		{"post with a transfer's id", postHold("t1", "h1"), "id", 0},
		{"void with the hold's own id", voidHold("h2", "h2"), "id", 0},
		{"post with another hold's id", postHold("h1", "h2"), "id", 0},
		{"transfer with a post's id", transfer("p1", usdOne()), "id", 0},
		{"transfer with a void's id", transfer("v1", usdOne()), "id", 0},
		{"hold identical, long resolved", hold("h1", 60, posting("world", "carol", "USD", "10")), "", h1},
		{"hold retried as a plain transfer", transfer("h1", posting("world", "carol", "USD", "10")), "pending", 0},
		{"hold with another timeout", hold("h1", 61, posting("world", "carol", "USD", "10")), "timeout", 0},
		{"hold without its timeout", hold("h1", 0, posting("world", "carol", "USD", "10")), "timeout", 0},
		{"hold with another amount", hold("h1", 60, posting("world", "carol", "USD", "11")), "postings[0].amount", 0},
		{"plain transfer retried as a hold", hold("t1", 0, usdOne()), "pending", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := viewOf(s, worldIDs, []string{"h1", "h2"}, worldAssets)
			_, err := decideAt(s, tc.cmd, at)
			if diff := cmp.Diff(before, viewOf(s, worldIDs, []string{"h1", "h2"}, worldAssets), unitsEqual); diff != "" {
				t.Errorf("Decide mutated the state (-before +after):\n%s", diff)
			}
			if tc.field == "" {
				checkExists(t, err, tc.pos)
				return
			}
			checkErr(t, err, domain.ErrExistsWithDifferentFields, tc.field)
		})
	}
}

// TestHoldResolvesOnce walks one hold through every way to resolve it, and
// checks that after the first, every other answers as resolved.
func TestHoldResolvesOnce(t *testing.T) {
	for _, first := range []struct {
		name  string
		cmd   domain.Command
		after time.Duration
		err   error // what any later resolution gets
	}{
		{"post", postHold("r", "h1"), 0, domain.ErrPendingAlreadyResolved},
		{"partial post", postHold("r", "h1", "1"), 0, domain.ErrPendingAlreadyResolved},
		{"void", voidHold("r", "h1"), 0, domain.ErrPendingAlreadyResolved},
		{"expiry", expireHold("h1"), time.Minute, domain.ErrPendingExpired},
	} {
		t.Run(first.name, func(t *testing.T) {
			s := newWorld(t)
			apply(t, s, hold("h1", 60, posting("world", "carol", "USD", "10")))
			applyAt(t, s, first.cmd, now.Add(first.after))
			accountLineOf(t, s, "world", "dq=0.00 cq=0.00")
			accountLineOf(t, s, "carol", "dq=0.00 cq=0.00")
			for _, c := range []domain.Command{postHold("x1", "h1"), postHold("x2", "h1", "1"), voidHold("x3", "h1")} {
				_, err := decideAt(s, c, now.Add(first.after))
				checkErr(t, err, first.err, "pending_id")
			}
			if _, err := decideAt(s, expireHold("h1"), now.Add(time.Hour)); !errors.Is(err, domain.ErrNotDue) {
				t.Errorf("expiry after %s: %v, want ErrNotDue", first.name, err)
			}
			checkHoldCount(t, s, 0)
		})
	}
}

// accountLineOf checks that the account's line ends with suffix.
func accountLineOf(t *testing.T, s *domain.State, id, suffix string) {
	t.Helper()
	a, _ := s.Account(id)
	if line := accountLine(a); !strings.HasSuffix(line, suffix) {
		t.Errorf("account %s: %s, want it to end with %s", id, line, suffix)
	}
}

func TestDueHoldsAndNextExpiry(t *testing.T) {
	s := newWorld(t)
	apply(t, s, hold("h30", 30, usdOne()))
	apply(t, s, hold("h10", 10, usdOne()))
	apply(t, s, hold("h20", 20, usdOne()))
	apply(t, s, hold("forever", 0, usdOne()))
	apply(t, s, hold("h10b", 10, usdOne()))

	check := func(at time.Duration, max int, want ...string) {
		t.Helper()
		got := s.DueHolds(now.Add(at), max)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("DueHolds(now+%v, %d) (-want +got):\n%s", at, max, diff)
		}
	}
	next := func(want time.Duration, ok bool) {
		t.Helper()
		got, gotOK := s.NextExpiry()
		if gotOK != ok || (ok && !got.Equal(now.Add(want))) {
			t.Errorf("NextExpiry = %v, %v; want now+%v, %v", got, gotOK, want, ok)
		}
	}
	next(10*time.Second, true)
	check(9*time.Second, 10)
	check(10*time.Second, 10, "h10", "h10b") // same time: in order of position
	check(10*time.Second, 1, "h10")
	check(10*time.Second, 10, "h10", "h10b") // DueHolds does not consume
	check(time.Hour, 10, "h10", "h10b", "h20", "h30")

	apply(t, s, voidHold("v", "h10"))
	next(10*time.Second, true)
	check(time.Hour, 10, "h10b", "h20", "h30")
	applyAt(t, s, expireHold("h10b"), now.Add(10*time.Second))
	applyAt(t, s, postHold("p", "h20"), now.Add(19*time.Second))
	next(30*time.Second, true)
	check(time.Hour, 10, "h30")
	applyAt(t, s, expireHold("h30"), now.Add(time.Hour))
	next(0, false)
	check(time.Hour, 10)
	checkHoldCount(t, s, 1) // forever
}

// TestHoldsMax fills a ledger with HoldsMax open holds: one more is refused,
// a posted transfer is not, and resolving one makes room.
func TestHoldsMax(t *testing.T) {
	if testing.Short() {
		t.Skip("HoldsMax holds take seconds")
	}
	s := newWorld(t)
	held := []domain.Posting{usdPosting("world", "carol", 1)}
	for i := range domain.HoldsMax {
		s.Evolve(s.Position()+1, domain.TransferPending{ID: "h" + strconv.Itoa(i), Postings: held, EffectiveAt: now})
	}
	checkHoldCount(t, s, domain.HoldsMax)
	_, err := decide(s, hold("one-more", 0, usdOne()))
	checkErr(t, err, domain.ErrTooManyHolds, "pending")
	apply(t, s, transfer("posted", usdOne()))
	apply(t, s, voidHold("v", "h0"))
	apply(t, s, hold("one-more", 0, usdOne()))
	checkHoldCount(t, s, domain.HoldsMax)
	cq := int64(domain.HoldsMax - 1 + 100) // cents: the holds left, and one-more
	checkAccounts(t, s, map[string]string{"carol": "bal=1.00 avail=1.00 ceil=" + domain.UnitsFromInt64(100+cq).Format(2) +
		" dq=0.00 cq=" + domain.UnitsFromInt64(cq).Format(2)})
}

// TestRollbackForgetsExpiry: a hold rolled back and then placed again at the
// same position, with a later expiry, must expire at its own time only.
func TestRollbackForgetsExpiry(t *testing.T) {
	s := newWorld(t)
	pos := s.Position() + 1
	s.Begin()
	applyAt(t, s, hold("h1", 60, usdOne()), now)
	s.Rollback()
	// The client retries later, with a longer timeout; nothing came between,
	// so the hold takes the same position.
	retryAt := now.Add(10 * time.Second)
	if got := applyAt(t, s, hold("h1", 3600, usdOne()), retryAt); got != pos {
		t.Fatalf("hold at %d, want %d", got, pos)
	}
	want := retryAt.Add(time.Hour)
	at, ok := s.NextExpiry()
	early := s.DueHolds(now.Add(2*time.Minute), 10)
	due := s.DueHolds(want, 10)
	_, expireErr := decideAt(s, expireHold("h1"), now.Add(2*time.Minute))
	if !ok || !at.Equal(want) || len(early) != 0 || len(due) != 1 {
		// The stale heap entry (id h1, position pos) matches the new hold: the
		// writer wakes at the old time, DueHolds names h1, ExpirePending
		// answers ErrNotDue, and NextExpiry stays in the past: it polls every
		// millisecond until the real expiry.
		t.Errorf("after Begin, hold h1 (timeout 60s), Rollback, then hold h1 (timeout 3600s) at the same position: "+
			"NextExpiry = %v, %v (want %v); DueHolds(now+2m) = %v (want none), then ExpirePending = %v; DueHolds(expiry) = %v (want [h1])",
			at, ok, want, early, expireErr, due)
	}
}

// TestNextExpiryDuringBatch: reading the next expiry inside an atomic batch
// must not lose the expiry of a hold the batch resolves and Rollback restores.
func TestNextExpiryDuringBatch(t *testing.T) {
	for _, read := range []struct {
		name string
		fn   func(s *domain.State)
	}{
		{"NextExpiry", func(s *domain.State) { s.NextExpiry() }},
		{"DueHolds", func(s *domain.State) { s.DueHolds(now.Add(time.Hour), 10) }},
	} {
		t.Run(read.name, func(t *testing.T) {
			s := newWorld(t)
			apply(t, s, hold("h1", 60, usdOne()))
			s.Begin()
			apply(t, s, voidHold("v1", "h1"))
			read.fn(s)
			s.Rollback()
			if _, open := s.Hold("h1"); !open {
				t.Fatal("Rollback did not reopen h1")
			}
			at, ok := s.NextExpiry()
			due := s.DueHolds(now.Add(time.Hour), 10)
			if !ok || !at.Equal(now.Add(time.Minute)) || !slices.Equal(due, []string{"h1"}) {
				t.Errorf("hold h1 (timeout 60s), Begin, void h1, %s, Rollback: h1 is open again but NextExpiry = %v, %v "+
					"and DueHolds = %v (want now+1m and [h1])", read.name, at, ok, due)
			}
		})
	}
}

func TestHoldOverflow(t *testing.T) {
	nines := strings.Repeat("9", 38)
	runRules(t, []ruleCase{
		{name: "pending on top of pending", prepare: []domain.Command{hold("h1", 0, posting("jpy:world", "jpy:a", "JPY", nines))},
			cmd: hold("h2", 0, posting("jpy:world", "jpy:a", "JPY", "1")), err: domain.ErrBalanceOverflow, field: "postings"},
		{name: "pending on top of posted", prepare: []domain.Command{transfer("t1", posting("jpy:world", "jpy:a", "JPY", nines))},
			cmd: hold("h1", 0, posting("jpy:world", "jpy:a", "JPY", "1")), err: domain.ErrBalanceOverflow, field: "postings"},
		{name: "posted on top of pending", prepare: []domain.Command{hold("h1", 0, posting("jpy:world", "jpy:a", "JPY", nines))},
			cmd: transfer("t1", posting("jpy:world", "jpy:a", "JPY", "1")), err: domain.ErrBalanceOverflow, field: "postings"},
		{name: "a post of the whole side", prepare: []domain.Command{hold("h1", 0, posting("jpy:world", "jpy:a", "JPY", nines))},
			cmd: postHold("p1", "h1"), accounts: map[string]string{"jpy:a": "bal=" + nines + " avail=" + nines + " ceil=" + nines + " dq=0 cq=0"}},
		{name: "a reversal of the whole side", prepare: []domain.Command{transfer("t1", posting("jpy:world", "jpy:a", "JPY", nines))},
			cmd: reverse("r1", "t1"), accounts: map[string]string{"jpy:a": "bal=0 avail=0 ceil=0 dq=0 cq=0"}},
		{name: "a reversal over the side", prepare: []domain.Command{transfer("t1", posting("jpy:world", "jpy:a", "JPY", "1")),
			transfer("t2", posting("jpy:a", "jpy:world", "JPY", nines))},
			cmd: reverse("r1", "t1"), err: domain.ErrBalanceOverflow, field: "postings"},
	})
}

// TestHoldIdHashCollision: ids of holds, posts, voids and reversals whose hash
// another id holds are new ids, resolved by the event at that position.
func TestHoldIdHashCollision(t *testing.T) {
	s := newWorld(t)
	t1 := apply(t, s, transfer("t1", posting("world", "carol", "USD", "10")))
	domain.CollideTransferID(s, "h1", t1)
	h1 := apply(t, s, hold("h1", 0, posting("world", "carol", "USD", "5")))
	domain.CollideTransferID(s, "p1", h1)
	p1 := apply(t, s, postHold("p1", "h1", "2"))
	domain.CollideTransferID(s, "r1", p1)
	apply(t, s, reverse("r1", "p1"))
	if got, want := s.TransferCount(), 4; got < want {
		t.Errorf("TransferCount = %d, want at least %d", got, want)
	}

	// An unknown id whose hash is a resolved hold's: not found.
	domain.CollideTransferID(s, "ghost", h1)
	_, err := decide(s, postHold("p2", "ghost"))
	checkErr(t, err, domain.ErrPendingNotFound, "pending_id")
	_, err = decide(s, reverse("r2", "ghost"))
	checkErr(t, err, domain.ErrTransferNotFound, "transfer_id")

	_, err = decide(s, postHold("p3", "h1"))
	checkErr(t, err, domain.ErrPendingAlreadyResolved, "pending_id")
	_, err = decide(s, hold("h1", 0, posting("world", "carol", "USD", "5")))
	checkExists(t, err, h1)
	_, err = decide(s, postHold("p1", "h1", "2"))
	checkExists(t, err, p1)
	_, err = decide(s, reverse("r3", "p1"))
	checkErr(t, err, domain.ErrAlreadyReversed, "transfer_id")
	checkAccounts(t, s, map[string]string{"carol": "bal=10.00 avail=10.00 ceil=10.00 dq=0.00 cq=0.00"})
}

// TestPriorCandidatesCoverDecide: every position Decide asks for is among
// PriorCandidates, so that a writer can prefetch them in one read.
func TestPriorCandidatesCoverDecide(t *testing.T) {
	s, _ := richWorld(t)
	decided.Lock()
	log := maps.Clone(decided.m[s])
	decided.Unlock()
	for _, c := range probeCommands() {
		if err := c.Validate(); err != nil {
			t.Fatalf("%T %s: %v", c, c.CommandID(), err)
		}
		candidates := domain.PriorCandidates(s, c)
		for range 4 {
			_, err := domain.Decide(s, c, now.Add(time.Hour))
			var need *domain.NeedPriorError
			if !errors.As(err, &need) {
				break
			}
			if !slices.Contains(candidates, need.Position) {
				t.Errorf("%T %s: Decide asks for %d, PriorCandidates = %v", c, c.CommandID(), need.Position, candidates)
			}
			c.(domain.PriorSetter).SetPrior(need.Position, log[need.Position])
		}
	}
}
