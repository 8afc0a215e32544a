package domain_test

import (
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ledgerd/ledger/domain"
)

func TestDecideBounds(t *testing.T) {
	bounds := func(id, min, max string) func(t *testing.T, s *domain.State, e domain.Event) {
		return func(t *testing.T, s *domain.State, e domain.Event) {
			a, _ := s.Account(id)
			format := func(u *domain.Units) string {
				if u == nil {
					return ""
				}
				return u.Format(a.Scale)
			}
			if format(a.Min()) != min || format(a.Max()) != max {
				t.Errorf("bounds of %s: min %q max %q, want %q %q", id, format(a.Min()), format(a.Max()), min, max)
			}
		}
	}
	runRules(t, []ruleCase{
		{name: "set both", cmd: setBounds("carol", "-5", "1000.5"), check: func(t *testing.T, s *domain.State, e domain.Event) {
			checkEvent(t, e, domain.AccountBoundsChanged{ID: "carol", MinBalance: amountPtr(usd(-500)), MaxBalance: amountPtr(usd(100_050))})
			bounds("carol", "-5.00", "1000.50")(t, s, e)
		}},
		{name: "remove both", cmd: setBounds("alice", "", ""), check: func(t *testing.T, s *domain.State, e domain.Event) {
			checkEvent(t, e, domain.AccountBoundsChanged{ID: "alice"})
			bounds("alice", "", "")(t, s, e)
		}},
		{name: "replace min, drop max", cmd: setBounds("bob", "0", ""), check: bounds("bob", "0.00", "")},
		{name: "min equals max", cmd: setBounds("carol", "7", "7"), check: bounds("carol", "7.00", "7.00")},
		{name: "at the asset's scale", cmd: setBounds("btc:alice", "0.00000001", ""), check: bounds("btc:alice", "0.00000001", "")},
		{name: "a min above the balance is accepted", prepare: []domain.Command{fund("f", "alice", "10")},
			cmd: setBounds("alice", "20", ""), check: bounds("alice", "20.00", "")},
		{name: "a max below the balance is accepted", prepare: []domain.Command{fund("f", "bob", "100")},
			cmd: setBounds("bob", "", "50"), check: bounds("bob", "", "50.00")},
		{name: "a max below the pending inflows is accepted", prepare: []domain.Command{hold("h1", 0, posting("world", "bob", "USD", "100"))},
			cmd: setBounds("bob", "", "0"), check: bounds("bob", "", "0.00")},

		{name: "unknown account", cmd: setBounds("dave", "0", ""), err: domain.ErrAccountNotFound, field: "account_id"},
		{name: "closed account", prepare: []domain.Command{closeAccount("carol")}, cmd: setBounds("carol", "0", ""),
			err: domain.ErrAccountClosed, field: "account_id"},
		{name: "min above max", cmd: setBounds("carol", "10", "9.99"), err: domain.ErrInvalidField, field: "max_balance"},
		{name: "min with too many decimals", cmd: setBounds("carol", "0.001", ""), err: domain.ErrInvalidAmount, field: "min_balance"},
		{name: "max with decimals at scale 0", cmd: setBounds("jpy:a", "", "1.5"), err: domain.ErrInvalidAmount, field: "max_balance"},
		{name: "max not a decimal", cmd: setBounds("carol", "", "1e3"), err: domain.ErrInvalidAmount, field: "max_balance"},
		{name: "min not a decimal", cmd: setBounds("carol", "+1", ""), err: domain.ErrInvalidAmount, field: "min_balance"},
		{name: "malformed account id", cmd: setBounds("ca rol", "", ""), err: domain.ErrInvalidField, field: "account_id"},
		// An empty string is not "no bound": that is an absent field.
		{name: "empty min", cmd: &domain.SetAccountBounds{AccountID: "carol", MinBalance: new(string)},
			err: domain.ErrInvalidAmount, field: "min_balance"},
		{name: "empty max", cmd: &domain.SetAccountBounds{AccountID: "carol", MinBalance: bound("0"), MaxBalance: new(string)},
			err: domain.ErrInvalidAmount, field: "max_balance"},
		{name: "open with an empty min", cmd: &domain.OpenAccount{ID: "dave", Asset: "USD", Normal: domain.SideCredit, MinBalance: new(string)},
			err: domain.ErrInvalidAmount, field: "min_balance"},
		{name: "open with an empty max", cmd: &domain.OpenAccount{ID: "dave", Asset: "USD", Normal: domain.SideCredit, MaxBalance: new(string)},
			err: domain.ErrInvalidAmount, field: "max_balance"},
		{name: "open with a leading zero", cmd: account("dave", "USD", domain.SideCredit, "00", ""),
			err: domain.ErrInvalidAmount, field: "min_balance"},
		{name: "open with minus zero", cmd: account("dave", "USD", domain.SideCredit, "", "-0.00"),
			err: domain.ErrInvalidAmount, field: "max_balance"},
	})
}

// TestBoundsChangeNeverRewritesThePast: a new bound leaves balances outside it
// standing; it blocks further moves in the bounded direction only.
func TestBoundsChangeNeverRewritesThePast(t *testing.T) {
	alice := []domain.Command{fund("f", "alice", "10"), setBounds("alice", "20", "")}
	bob := []domain.Command{fund("f", "bob", "100"), setBounds("bob", "", "50")}
	runRules(t, []ruleCase{
		{name: "below new min: outflow refused", prepare: alice, cmd: transfer("t1", posting("alice", "carol", "USD", "0.01")),
			err: domain.ErrBelowMinBalance, field: "postings"},
		{name: "below new min: hold refused", prepare: alice, cmd: hold("h1", 0, posting("alice", "carol", "USD", "0.01")),
			err: domain.ErrBelowMinBalance, field: "postings"},
		{name: "below new min: inflow allowed, still below", prepare: alice, cmd: fund("t1", "alice", "1"),
			accounts: map[string]string{"alice": "bal=11.00 avail=11.00 ceil=11.00 dq=0.00 cq=0.00"}},
		{name: "below new min: in and out in one transfer, net in", prepare: alice,
			cmd:      transfer("t1", posting("world", "alice", "USD", "2"), posting("alice", "carol", "USD", "1")),
			accounts: map[string]string{"alice": "bal=11.00 avail=11.00 ceil=11.00 dq=0.00 cq=0.00"}},
		{name: "below new min: a reversal taking money back refused", prepare: alice, cmd: reverse("r1", "f", "0.01"),
			err: domain.ErrBelowMinBalance, field: "postings"},
		{name: "above new max: inflow refused", prepare: bob, cmd: fund("t1", "bob", "0.01"),
			err: domain.ErrAboveMaxBalance, field: "postings"},
		{name: "above new max: pending inflow refused", prepare: bob, cmd: hold("h1", 0, posting("world", "bob", "USD", "0.01")),
			err: domain.ErrAboveMaxBalance, field: "postings"},
		{name: "above new max: outflow allowed", prepare: bob, cmd: transfer("t1", posting("bob", "carol", "USD", "1")),
			accounts: map[string]string{"bob": "bal=99.00 avail=99.00 ceil=99.00 dq=0.00 cq=0.00"}},
		{name: "raised max lets inflow in", prepare: []domain.Command{fund("f", "bob", "100"), setBounds("bob", "", "200")},
			cmd: fund("t1", "bob", "100"), accounts: map[string]string{"bob": "bal=200.00 avail=200.00 ceil=200.00 dq=0.00 cq=0.00"}},
		{name: "removed min lets overdraft", prepare: []domain.Command{setBounds("alice", "", "")},
			cmd: transfer("t1", posting("alice", "carol", "USD", "5")), accounts: map[string]string{"alice": "bal=-5.00 avail=-5.00 ceil=-5.00 dq=0.00 cq=0.00"}},
		{name: "overdraft limit on debit-normal", prepare: []domain.Command{setBounds("receivable", "-3", "")},
			cmd: fund("t1", "receivable", "3.01"), err: domain.ErrBelowMinBalance, field: "postings"},
	})
}

func TestDecideMetadata(t *testing.T) {
	meta := func(id string, want map[string]string) func(t *testing.T, s *domain.State, e domain.Event) {
		return func(t *testing.T, s *domain.State, e domain.Event) {
			a, _ := s.Account(id)
			if !maps.Equal(a.Metadata(), want) {
				t.Errorf("metadata of %s = %v, want %v", id, a.Metadata(), want)
			}
		}
	}
	tooMany := make(map[string]string, domain.MetadataKeysMax+1)
	for i := range domain.MetadataKeysMax + 1 {
		tooMany[fmt.Sprintf("k%02d", i)] = "v"
	}
	runRules(t, []ruleCase{
		{name: "set", cmd: setMeta("carol", map[string]string{"tier": "gold"}), check: func(t *testing.T, s *domain.State, e domain.Event) {
			checkEvent(t, e, domain.AccountMetadataSet{ID: "carol", Metadata: map[string]string{"tier": "gold"}})
			meta("carol", map[string]string{"tier": "gold"})(t, s, e)
		}},
		{name: "replace, not merge", prepare: []domain.Command{setMeta("carol", map[string]string{"a": "1"})},
			cmd: setMeta("carol", map[string]string{"b": "2"}), check: meta("carol", map[string]string{"b": "2"})},
		{name: "clear", prepare: []domain.Command{setMeta("carol", map[string]string{"a": "1"})},
			cmd: setMeta("carol", nil), check: meta("carol", nil)},
		{name: "unknown account", cmd: setMeta("dave", nil), err: domain.ErrAccountNotFound, field: "account_id"},
		{name: "closed account", prepare: []domain.Command{closeAccount("carol")}, cmd: setMeta("carol", nil),
			err: domain.ErrAccountClosed, field: "account_id"},
		{name: "too many keys", cmd: setMeta("carol", tooMany), err: domain.ErrInvalidField, field: "metadata"},
		{name: "malformed account id", cmd: setMeta("", nil), err: domain.ErrInvalidField, field: "account_id"},
	})
}

func TestDecideClose(t *testing.T) {
	closed := func(id string) func(t *testing.T, s *domain.State, e domain.Event) {
		return func(t *testing.T, s *domain.State, e domain.Event) {
			checkEvent(t, e, domain.AccountClosed{ID: id})
			if a, _ := s.Account(id); !a.Closed || a.ClosedAt() != s.Position() {
				t.Errorf("account %s: Closed %v at %d, want closed at %d", id, a.Closed, a.ClosedAt(), s.Position())
			}
		}
	}
	h := func() domain.Command { return hold("h1", 60, posting("carol", "world", "USD", "1")) }
	runRules(t, []ruleCase{
		{name: "close", cmd: closeAccount("carol"), check: closed("carol")},
		{name: "close with a balance", prepare: []domain.Command{fund("f", "carol", "5")}, cmd: closeAccount("carol"), check: closed("carol"),
			accounts: map[string]string{"carol": "bal=5.00 avail=5.00 ceil=5.00 dq=0.00 cq=0.00"}},
		{name: "pending debit", prepare: []domain.Command{h()}, cmd: closeAccount("carol"), err: domain.ErrAccountHasPending, field: "account_id"},
		{name: "pending credit", prepare: []domain.Command{hold("h1", 0, usdOne())}, cmd: closeAccount("carol"), err: domain.ErrAccountHasPending, field: "account_id"},
		{name: "pending elsewhere", prepare: []domain.Command{hold("h1", 0, posting("world", "bob", "USD", "1"))}, cmd: closeAccount("carol"), check: closed("carol")},
		{name: "hold posted", prepare: []domain.Command{h(), postHold("p1", "h1")}, cmd: closeAccount("carol"), check: closed("carol")},
		{name: "hold partly posted", prepare: []domain.Command{h(), postHold("p1", "h1", "0.5")}, cmd: closeAccount("carol"), check: closed("carol")},
		{name: "hold voided", prepare: []domain.Command{h(), voidHold("v1", "h1")}, cmd: closeAccount("carol"), check: closed("carol")},
		{name: "hold expired", prepare: []domain.Command{h(), later(time.Minute, expireHold("h1"))}, cmd: closeAccount("carol"), check: closed("carol")},
		{name: "hold timed out, expiry not applied", prepare: []domain.Command{h()}, cmd: later(time.Hour, closeAccount("carol")),
			err: domain.ErrAccountHasPending, field: "account_id"},
		{name: "unknown account", cmd: closeAccount("dave"), err: domain.ErrAccountNotFound, field: "account_id"},
		{name: "malformed account id", cmd: closeAccount("ca/rol"), err: domain.ErrInvalidField, field: "account_id"},
		{name: "closed twice", prepare: []domain.Command{closeAccount("carol")}, cmd: closeAccount("carol"), err: domain.ErrExists},

		// A closed account takes no transfer.
		{name: "then debited", prepare: []domain.Command{closeAccount("carol")}, cmd: transfer("t1", posting("carol", "world", "USD", "1")),
			err: domain.ErrAccountClosed, field: "postings[0].debit_account"},
		{name: "then credited", prepare: []domain.Command{closeAccount("carol")}, cmd: transfer("t1", usdOne()),
			err: domain.ErrAccountClosed, field: "postings[0].credit_account"},
		{name: "then in a second posting", prepare: []domain.Command{closeAccount("carol")},
			cmd: transfer("t1", posting("world", "bob", "USD", "1"), posting("world", "carol", "USD", "1")),
			err: domain.ErrAccountClosed, field: "postings[1].credit_account"},
		{name: "then held", prepare: []domain.Command{closeAccount("carol")}, cmd: hold("h1", 0, posting("carol", "world", "USD", "1")),
			err: domain.ErrAccountClosed, field: "postings[0].debit_account"},
	})
}

// TestCloseRetries: closing a closed account answers EXISTS at the close, and
// opening it again EXISTS at the open.
func TestCloseRetries(t *testing.T) {
	s := newWorld(t)
	open := apply(t, s, account("dave", "USD", domain.SideCredit, "", ""))
	closedAt := apply(t, s, closeAccount("dave"))
	apply(t, s, transfer("t1", usdOne()))
	_, err := decide(s, closeAccount("dave"))
	checkExists(t, err, closedAt)
	_, err = decide(s, account("dave", "USD", domain.SideCredit, "", ""))
	checkExists(t, err, open)
	_, err = decide(s, account("dave", "USD", domain.SideDebit, "", ""))
	checkErr(t, err, domain.ErrExistsWithDifferentFields, "normal_balance")
}

// TestOpenRetryAfterChanges: an open's retry is compared with the request
// that opened the account, forever: later bound or metadata changes do not
// turn an identical retry into a conflict.
func TestOpenRetryAfterChanges(t *testing.T) {
	s := newWorld(t)
	apply(t, s, setBounds("alice", "-1", ""))
	_, err := decide(s, account("alice", "USD", domain.SideCredit, "0", ""))
	checkExists(t, err, 5)
	_, err = decide(s, account("alice", "USD", domain.SideCredit, "-1", ""))
	checkErr(t, err, domain.ErrExistsWithDifferentFields, "min_balance")
	apply(t, s, setMeta("carol", map[string]string{"k": "v"}))
	_, err = decide(s, account("carol", "USD", domain.SideCredit, "", ""))
	checkExists(t, err, 7)
	withMeta := account("carol", "USD", domain.SideCredit, "", "")
	withMeta.Metadata = map[string]string{"k": "v"}
	_, err = decide(s, withMeta)
	checkErr(t, err, domain.ErrExistsWithDifferentFields, "metadata")
}

// richWorld is newWorld with every kind of event applied: holds open (with and
// without timeout), a partial post, a void, a reversal, a bound and metadata
// change, and a closed account. It returns the ids of the holds involved.
func richWorld(t testing.TB) (*domain.State, []string) {
	s := newWorld(t)
	for _, c := range []domain.Command{
		fund("f1", "alice", "50"),
		transfer("fx", posting("world", "carol", "USD", "20"), posting("btc:world", "btc:alice", "BTC", "1")),
		hold("h-open", 0, posting("alice", "bob", "USD", "5")),
		hold("h-timed", 60, posting("world", "carol", "USD", "7"), posting("btc:alice", "btc:world", "BTC", "0.25")),
		hold("h-posted", 0, posting("world", "carol", "USD", "9")),
		postHold("p-partial", "h-posted", "3"),
		hold("h-voided", 30, usdOne()),
		voidHold("v1", "h-voided"),
		reverse("r1", "fx", "5", "0"),
		setBounds("carol", "-100", "1000"),
		setMeta("bob", map[string]string{"tier": "gold"}),
		account("dave", "USD", domain.SideDebit, "", ""),
		closeAccount("jpy:a"),
	} {
		apply(t, s, c)
	}
	return s, []string{"h-open", "h-timed", "h-posted", "h-voided", "h-new", "h-batch"}
}

// probeCommands are one of every command, fresh (Decide attaches priors to
// them): some succeed, some are refused, some are retries.
func probeCommands() []domain.Command {
	return []domain.Command{
		asset("EUR", 2), asset("USD", 2), asset("USD", 3),
		account("erin", "USD", domain.SideCredit, "0", ""), account("alice", "USD", domain.SideCredit, "0", ""),
		setBounds("alice", "-10", ""), setBounds("jpy:a", "", ""),
		setMeta("carol", map[string]string{"a": "b"}), setMeta("nobody", nil),
		closeAccount("carol"), closeAccount("alice"), closeAccount("jpy:a"),
		transfer("t-new", usdOne()), transfer("fx", posting("world", "carol", "USD", "20"), posting("btc:world", "btc:alice", "BTC", "1")),
		transfer("t-over", posting("alice", "carol", "USD", "46")),
		hold("h-new", 120, posting("world", "carol", "USD", "2")), hold("h-open", 0, posting("alice", "bob", "USD", "5")),
		postHold("p-new", "h-open"), postHold("p-new2", "h-timed", "1", "0.1"), postHold("p-partial", "h-posted", "3"),
		postHold("p-x", "h-posted"), postHold("p-y", "h-voided"),
		voidHold("v-new", "h-open"), voidHold("v1", "h-voided"), voidHold("fx", "h-open"),
		expireHold("h-timed"), expireHold("h-open"),
		reverse("r-new", "fx"), reverse("r1", "fx", "5", "0"), reverse("r-p", "p-partial", "1"), reverse("r-h", "h-open"),
		reverse("r-x", "fx", "15.01", "0"),
	}
}

// probeResult is what Decide answered to one probe command.
type probeResult struct {
	Command string
	Event   domain.Event
	Err     string
	Field   string
}

// probe decides every probe command at the clock, without applying any.
func probe(s *domain.State, at time.Time) []probeResult {
	var out []probeResult
	for _, c := range probeCommands() {
		e, err := decideAt(s, c, at)
		r := probeResult{Command: fmt.Sprintf("%T %s", c, c.CommandID()), Event: e, Field: domain.FieldOf(err)}
		if err != nil {
			r.Err = err.Error()
		}
		out = append(out, r)
	}
	return out
}

var richIDs = append(slices.Clone(worldIDs), "dave", "erin")

// TestDecideNeverMutates decides every probe command, before and after the
// timed hold is due, and checks that the state is as it was, and that
// deciding again gives the same answers.
func TestDecideNeverMutates(t *testing.T) {
	s, holds := richWorld(t)
	for _, at := range []time.Time{now, now.Add(time.Hour)} {
		before := viewOf(s, richIDs, holds, worldAssets)
		first := probe(s, at)
		if diff := cmp.Diff(before, viewOf(s, richIDs, holds, worldAssets), unitsEqual); diff != "" {
			t.Errorf("at %v: Decide mutated the state (-before +after):\n%s", at, diff)
		}
		if diff := cmp.Diff(first, probe(s, at), unitsEqual); diff != "" {
			t.Errorf("at %v: deciding again differs (-first +second):\n%s", at, diff)
		}
	}
}

// batch applies, at now+1m, a hold, a post, a void, a reversal, an expiry, an
// account open, bounds, metadata and a close: one of every event.
func batch(t *testing.T, s *domain.State) {
	t.Helper()
	at := now.Add(time.Minute)
	for _, c := range []domain.Command{
		asset("EUR", 2),
		account("erin", "USD", domain.SideCredit, "0", ""),
		hold("h-batch", 10, posting("world", "erin", "USD", "4")),
		transfer("t-batch", posting("world", "erin", "USD", "6")),
		postHold("p-batch", "h-open", "2"),
		voidHold("v-batch", "h-batch"),
		expireHold("h-timed"),
		reverse("r-batch", "fx", "1", "0.5"),
		reverse("r-batch2", "p-partial"),
		setBounds("carol", "", ""),
		setMeta("carol", map[string]string{"z": "1"}),
		setMeta("erin", map[string]string{"new": "yes"}),
		closeAccount("dave"),
		closeAccount("carol"),
	} {
		applyAt(t, s, c, at)
	}
}

// TestRollbackFreezes: freezes and unfreezes rolled back leave every
// account as it was: one with metadata frozen, and one frozen before the
// batch unfrozen and frozen again. An account's terms are shared by its
// copies (the undo's among them), so a change made to them in place would
// outlive the undo.
func TestRollbackFreezes(t *testing.T) {
	s, holds := richWorld(t)
	apply(t, s, &domain.FreezeAccount{AccountID: "dave", Reason: "before the batch"})
	before := viewOf(s, richIDs, holds, worldAssets)
	s.Begin()
	for _, c := range []domain.Command{
		&domain.FreezeAccount{AccountID: "bob", Reason: "in the batch"},
		&domain.UnfreezeAccount{AccountID: "dave", Reason: "in the batch"},
		&domain.FreezeAccount{AccountID: "dave", Reason: "again"},
	} {
		applyAt(t, s, c, now.Add(time.Minute))
	}
	s.Rollback()
	if diff := cmp.Diff(before, viewOf(s, richIDs, holds, worldAssets), unitsEqual); diff != "" {
		t.Errorf("Rollback did not restore the state (-before +after):\n%s", diff)
	}
}

// TestBeginRollback: everything applied between Begin and Rollback is undone,
// exactly: accounts, holds, ids, positions, reversals and expiries; the same
// commands then decide as before. Commit keeps it all.
func TestBeginRollback(t *testing.T) {
	s, holds := richWorld(t)
	before := viewOf(s, richIDs, holds, worldAssets)
	probesBefore := probe(s, now.Add(time.Hour))

	s.Begin()
	batch(t, s)
	if s.Position() == before.Position {
		t.Fatal("the batch applied nothing")
	}
	s.Rollback()
	if diff := cmp.Diff(before, viewOf(s, richIDs, holds, worldAssets), unitsEqual); diff != "" {
		t.Errorf("Rollback did not restore the state (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(probesBefore, probe(s, now.Add(time.Hour)), unitsEqual); diff != "" {
		t.Errorf("after Rollback, commands decide differently (-before +after):\n%s", diff)
	}
	if due := s.DueHolds(now.Add(time.Hour), 10); !slices.Equal(due, []string{"h-timed"}) {
		t.Errorf("after Rollback, DueHolds = %v, want [h-timed]", due)
	}

	// Committed, the batch stays: as if applied without Begin.
	reference, _ := richWorld(t)
	batch(t, reference)
	s.Begin()
	batch(t, s)
	s.Commit()
	want := viewOf(reference, richIDs, holds, worldAssets)
	if diff := cmp.Diff(want, viewOf(s, richIDs, holds, worldAssets), unitsEqual); diff != "" {
		t.Errorf("Commit did not keep the batch (-without Begin +committed):\n%s", diff)
	}
	if diff := cmp.Diff(probe(reference, now.Add(2*time.Hour)), probe(s, now.Add(2*time.Hour)), unitsEqual); diff != "" {
		t.Errorf("after Commit, commands decide differently (-without Begin +committed):\n%s", diff)
	}
	// A Rollback with nothing begun undoes nothing.
	s.Rollback()
	if diff := cmp.Diff(want, viewOf(s, richIDs, holds, worldAssets), unitsEqual); diff != "" {
		t.Errorf("Rollback after Commit changed the state:\n%s", diff)
	}
}

// TestBeginTwicePanics: batches do not nest.
func TestBeginTwicePanics(t *testing.T) {
	s := newWorld(t)
	s.Begin()
	defer func() {
		if recover() == nil {
			t.Error("Begin while recording did not panic")
		}
	}()
	s.Begin()
}

// TestLedgerLimits: a ledger holds at most AccountsMax accounts and AssetsMax
// assets; at the limit a retry of an existing one is still EXISTS.
func TestLedgerLimits(t *testing.T) {
	s := domain.NewState()
	s.SetPolicy(domain.Policy{EffectiveFutureMax: time.Minute, AccountsMax: 2, AssetsMax: 2})
	apply(t, s, asset("USD", 2))
	apply(t, s, asset("EUR", 2))
	_, err := decide(s, asset("GBP", 2))
	checkErr(t, err, domain.ErrTooManyAssets, "code")
	_, err = decide(s, asset("USD", 2))
	checkExists(t, err, 1)
	pos := apply(t, s, account("a", "USD", domain.SideCredit, "", ""))
	apply(t, s, account("b", "USD", domain.SideCredit, "", ""))
	_, err = decide(s, account("c", "USD", domain.SideCredit, "", ""))
	checkErr(t, err, domain.ErrTooManyAccounts, "id")
	_, err = decide(s, account("a", "USD", domain.SideCredit, "", ""))
	checkExists(t, err, pos)
	if domain.AccountsMaxDefault != 1<<22 || domain.AssetsMaxDefault != 10_000 {
		t.Errorf("defaults %d and %d: the proto documents 4,194,304 and 10,000", domain.AccountsMaxDefault, domain.AssetsMaxDefault)
	}
}
