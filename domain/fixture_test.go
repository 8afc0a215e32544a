package domain_test

import (
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/ledgerd/ledger/domain"
)

// now is the writer's clock in these tests: UTC, whole microseconds.
var now = time.Date(2026, 3, 4, 5, 6, 7, 891011000, time.UTC)

// unitsEqual lets go-cmp compare Units (unexported fields) by value, and
// ignores a Hold's bookkeeping (its expiry-heap number).
var unitsEqual = cmp.Options{
	cmp.Comparer(func(a, b domain.Units) bool { return a.Cmp(b) == 0 }),
	// An account's terms are compared as values.
	cmp.Exporter(func(t reflect.Type) bool {
		return t == reflect.TypeFor[domain.Account]() || t == accountTermsType
	}),
	cmpopts.IgnoreUnexported(domain.Hold{}),
}

// accountTermsType is the type behind domain.Account's terms.
var accountTermsType = func() reflect.Type {
	f, _ := reflect.TypeFor[domain.Account]().FieldByName("terms")
	return f.Type.Elem()
}()

// decided remembers, per state, the events decide returned, by the position
// they take when applied next: the log the tests would otherwise need, to
// answer a NeedPriorError as the writer does.
var decided = struct {
	sync.Mutex
	m map[*domain.State]map[uint64]domain.Event
}{m: map[*domain.State]map[uint64]domain.Event{}}

// decide validates c and, when valid, decides it against s, answering any
// NeedPriorError from what decide returned before.
func decide(s *domain.State, c domain.Command) (domain.Event, error) {
	return decideAt(s, c, now)
}

// decideAt is decide with the writer's clock at at: for holds that expire and
// effective times checked against the clock.
func decideAt(s *domain.State, c domain.Command, at time.Time) (domain.Event, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	for {
		e, err := domain.Decide(s, c, at)
		var need *domain.NeedPriorError
		if errors.As(err, &need) {
			decided.Lock()
			prior, ok := decided.m[s][need.Position]
			decided.Unlock()
			if !ok || need.Position > s.Position() {
				panic(fmt.Sprintf("test fixture: no event recorded at position %d", need.Position))
			}
			c.(domain.PriorSetter).SetPrior(need.Position, prior)
			continue
		}
		if err == nil {
			remember(s, s.Position()+1, e)
		}
		return e, err
	}
}

// remember records e as the event at pos of s, for decide's NeedPriorError
// answers; for tests that call domain.Decide themselves.
func remember(s *domain.State, pos uint64, e domain.Event) {
	decided.Lock()
	defer decided.Unlock()
	if decided.m[s] == nil {
		decided.m[s] = map[uint64]domain.Event{}
	}
	decided.m[s][pos] = e
}

// apply decides c and applies its event at the next position, failing the test
// when c is refused. It returns the position.
func apply(t testing.TB, s *domain.State, c domain.Command) uint64 {
	t.Helper()
	return applyAt(t, s, c, now)
}

// applyAt is apply with the writer's clock at at.
func applyAt(t testing.TB, s *domain.State, c domain.Command, at time.Time) uint64 {
	t.Helper()
	e, err := decideAt(s, c, at)
	if err != nil {
		t.Fatalf("apply %T %s: %v", c, c.CommandID(), err)
	}
	pos := s.Position() + 1
	s.Evolve(pos, e)
	return pos
}

func asset(code string, scale uint32) *domain.DefineAsset {
	return &domain.DefineAsset{Code: code, Scale: scale}
}

// account opens an account; a bound of "" is none (absent).
func account(id, asset string, normal domain.Side, min, max string) *domain.OpenAccount {
	return &domain.OpenAccount{ID: id, Asset: asset, Normal: normal, MinBalance: bound(min), MaxBalance: bound(max)}
}

// bound is an optional bound as a test writes it: nil for "", else the text.
func bound(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func posting(debit, credit, asset, amount string) domain.PostingInput {
	return domain.PostingInput{Debit: debit, Credit: credit, Asset: asset, Amount: amount}
}

func transfer(id string, ps ...domain.PostingInput) *domain.CreateTransfer {
	return &domain.CreateTransfer{ID: id, Postings: ps}
}

// snapshot copies the accounts with the given ids, so that a later state can be
// compared with this one.
func snapshot(s *domain.State, ids []string) map[string]domain.Account {
	out := make(map[string]domain.Account, len(ids))
	for _, id := range ids {
		if a, ok := s.Account(id); ok {
			// Its terms copied too: a change made to them in place, which
			// an undo would not restore, must show.
			out[id] = domain.AccountCopy(a)
		}
	}
	return out
}

// checkErr checks err against a wanted sentinel (nil for success) and field.
func checkErr(t testing.TB, err, want error, field string) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("got error %v, want success", err)
		}
		return
	}
	if !errors.Is(err, want) {
		t.Fatalf("got error %v, want %v", err, want)
	}
	if got := domain.FieldOf(err); got != field {
		t.Errorf("got field %q, want %q (error %v)", got, field, err)
	}
}

// checkExists checks that err is an *ExistsError at pos.
func checkExists(t testing.TB, err error, pos uint64) {
	t.Helper()
	var ee *domain.ExistsError
	if !errors.As(err, &ee) || !errors.Is(err, domain.ErrExists) {
		t.Fatalf("got error %v, want EXISTS at %d", err, pos)
	}
	if ee.Position != pos {
		t.Errorf("got EXISTS at %d, want at %d", ee.Position, pos)
	}
}
