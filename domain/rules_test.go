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

// Shared by holds_test.go, reverse_test.go and accounts_test.go: command
// constructors, a view of the whole state, and a table runner whose cases may
// move the writer's clock.

func hold(id string, timeout uint32, ps ...domain.PostingInput) *domain.CreateTransfer {
	return &domain.CreateTransfer{ID: id, Postings: ps, Pending: true, TimeoutSeconds: timeout}
}

func postHold(id, pending string, amounts ...string) *domain.PostPending {
	return &domain.PostPending{ID: id, PendingID: pending, Amounts: amounts}
}

func voidHold(id, pending string) *domain.VoidPending {
	return &domain.VoidPending{ID: id, PendingID: pending}
}

func expireHold(pending string) *domain.ExpirePending {
	return &domain.ExpirePending{PendingID: pending}
}

func reverse(id, transfer string, amounts ...string) *domain.ReverseTransfer {
	return &domain.ReverseTransfer{ID: id, TransferID: transfer, Amounts: amounts}
}

// setBounds sets an account's bounds; a bound of "" is none (absent).
func setBounds(id, min, max string) *domain.SetAccountBounds {
	return &domain.SetAccountBounds{AccountID: id, MinBalance: bound(min), MaxBalance: bound(max)}
}

func setMeta(id string, m map[string]string) *domain.SetAccountMetadata {
	return &domain.SetAccountMetadata{AccountID: id, Metadata: m}
}

func closeAccount(id string) *domain.CloseAccount { return &domain.CloseAccount{AccountID: id} }

// fund moves amount USD from world to the account.
func fund(id, to, amount string) *domain.CreateTransfer {
	return transfer(id, posting("world", to, "USD", amount))
}

// timed is a command decided at now+after instead of now.
type timed struct {
	domain.Command
	after time.Duration
}

// later returns c to be decided at now+after.
func later(after time.Duration, c domain.Command) domain.Command { return timed{c, after} }

// clockOf unwraps a timed command.
func clockOf(c domain.Command) (domain.Command, time.Time) {
	if tc, ok := c.(timed); ok {
		return tc.Command, now.Add(tc.after)
	}
	return c, now
}

// accountLine shows an account's balances in one line, as tables want them.
func accountLine(a *domain.Account) string {
	f := func(u domain.Units) string { return u.Format(a.Scale) }
	return fmt.Sprintf("bal=%s avail=%s ceil=%s dq=%s cq=%s", f(a.Balance()), f(a.Available()), f(a.Ceiling()),
		f(a.DebitsPending), f(a.CreditsPending))
}

func checkAccounts(t testing.TB, s *domain.State, want map[string]string) {
	t.Helper()
	for _, id := range slices.Sorted(maps.Keys(want)) {
		a, ok := s.Account(id)
		if !ok {
			t.Errorf("account %s not found", id)
			continue
		}
		if got := accountLine(a); got != want[id] {
			t.Errorf("account %s: got %s, want %s", id, got, want[id])
		}
	}
}

// stateView is everything of a State a test can observe, copied.
type stateView struct {
	Position                               uint64
	AccountCount, HoldCount, TransferCount int
	Accounts                               map[string]domain.Account
	Holds                                  map[string]domain.Hold
	Assets                                 map[string]domain.Asset
	NextExpiry                             time.Time
	HasNextExpiry                          bool
}

// viewOf copies s: the accounts and holds with the given ids, and the assets
// with the given codes.
func viewOf(s *domain.State, accounts, holds, assets []string) stateView {
	v := viewNoExpiry(s, accounts, holds, assets)
	v.NextExpiry, v.HasNextExpiry = s.NextExpiry()
	return v
}

// viewNoExpiry is viewOf without NextExpiry, which is not to be called while
// the state records (see TestNextExpiryDuringBatch).
func viewNoExpiry(s *domain.State, accounts, holds, assets []string) stateView {
	v := stateView{
		Position: s.Position(), AccountCount: s.AccountCount(), HoldCount: s.HoldCount(), TransferCount: s.TransferCount(),
		Accounts: snapshot(s, accounts), Holds: map[string]domain.Hold{}, Assets: map[string]domain.Asset{},
	}
	for _, id := range holds {
		if h, ok := s.Hold(id); ok {
			c := *h
			c.Postings = slices.Clone(h.Postings)
			v.Holds[id] = c
		}
	}
	for _, code := range assets {
		if a, ok := s.Asset(code); ok {
			v.Assets[code] = a
		}
	}
	return v
}

// worldAssets are the assets newWorld defines, and one it does not.
var worldAssets = []string{"USD", "BTC", "JPY", "EUR"}

// ruleCase is one command against newWorld after some preparation.
type ruleCase struct {
	name    string
	prepare []domain.Command // applied in order; later() moves the clock
	cmd     domain.Command   // decided last; later() moves the clock
	err     error            // wanted sentinel; nil for success
	field   string           // wanted FieldOf(err)
	// accounts, when cmd succeeds: id to accountLine after applying its event.
	accounts map[string]string
	// check, when cmd succeeds, runs with the event after applying it.
	check func(t *testing.T, s *domain.State, e domain.Event)
}

// runRules runs each case on a fresh world, checking the outcome with
// errors.Is and FieldOf, and that Decide left the whole state as it was.
func runRules(t *testing.T, cases []ruleCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newWorld(t)
			var holdIDs []string
			for _, c := range tc.prepare {
				c, at := clockOf(c)
				applyAt(t, s, c, at)
				holdIDs = append(holdIDs, c.CommandID())
			}
			c, at := clockOf(tc.cmd)
			ids := append(slices.Clone(worldIDs), c.CommandID(), "dave")
			before := viewOf(s, ids, holdIDs, worldAssets)
			e, err := decideAt(s, c, at)
			if diff := cmp.Diff(before, viewOf(s, ids, holdIDs, worldAssets), unitsEqual); diff != "" {
				t.Errorf("Decide mutated the state (-before +after):\n%s", diff)
			}
			checkErr(t, err, tc.err, tc.field)
			if err != nil {
				if e != nil {
					t.Errorf("got event %+v with error %v", e, err)
				}
				return
			}
			s.Evolve(s.Position()+1, e)
			checkAccounts(t, s, tc.accounts)
			if tc.check != nil {
				tc.check(t, s, e)
			}
		})
	}
}
