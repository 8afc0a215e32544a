package domain

import (
	"bytes"
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"testing"
)

// TestAccountTableAgainstMap: an account table and a map given the same
// adds, removals of the last added (a rollback's undo) and look-ups hold the
// same accounts, in the same order, while the table grows past its doubling
// chunks and its index grows many times, shrinks back across chunk
// boundaries and grows again; pointers handed out stay valid meanwhile.
func TestAccountTableAgainstMap(t *testing.T) {
	if accountChunkMin<<(accountDoublings-1) != accountChunk {
		t.Fatalf("accountDoublings %d does not take chunks from %d to %d", accountDoublings, accountChunkMin, accountChunk)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	tab := newAccountTable(0)
	model := map[string]uint64{}
	var order []string
	var kept *Account // the first account added: its pointer must survive
	maxLen, slots0 := 0, len(tab.slots)
	op := 0
	add := func() {
		id := fmt.Sprintf("a%d", rng.IntN(1_000_000))
		a := tab.Add(Account{ID: id, Position: uint64(op)})
		if _, ok := model[id]; ok {
			if a != nil {
				t.Fatalf("op %d: Add of %s there already returned an account", op, id)
			}
			return
		}
		if a == nil || a.ID != id || a.Position != uint64(op) {
			t.Fatalf("op %d: Add of new %s: %+v", op, id, a)
		}
		model[id] = uint64(op)
		order = append(order, id)
		if kept == nil {
			kept = a
		}
		maxLen = max(maxLen, tab.Len())
	}
	rollBack := func(k int) {
		for ; k > 0 && len(order) > 1; k-- {
			last := order[len(order)-1]
			tab.RemoveLast(last)
			delete(model, last)
			order = order[:len(order)-1]
		}
	}
	lookUp := func() {
		id := order[rng.IntN(len(order))]
		if rng.IntN(2) == 0 {
			id = fmt.Sprintf("a%d", rng.IntN(1_000_000))
		}
		a, ok := tab.Lookup(id)
		pos, want := model[id]
		if ok != want || ok && (a.ID != id || a.Position != pos) {
			t.Fatalf("op %d: Lookup(%s) = %+v, %t; model %d, %t", op, id, a, ok, pos, want)
		}
		// An account's number is its place in the order of adding, rolled
		// back accounts' numbers going to the next ones.
		if n, ok := tab.number(id); ok != want || ok && order[n] != id {
			t.Fatalf("op %d: number(%s) = %d, %t; want %t at its place in %d", op, id, n, ok, want, len(order))
		}
	}
	phase := func(ops, addPct, rollPct, rollMax int) {
		for range ops {
			op++
			switch r := rng.IntN(100); {
			case r < addPct:
				add()
			case r < addPct+rollPct:
				rollBack(rng.IntN(rollMax) + 1)
			default:
				lookUp()
			}
		}
	}
	phase(30_000, 70, 5, 5)    // grow past the doubling chunks
	phase(20_000, 10, 30, 300) // shrink back across chunk boundaries
	phase(30_000, 70, 5, 5)    // and grow again
	phase(20_000, 40, 20, 40)  // churn
	if maxLen < 2*accountDoubled || len(tab.slots) < 64*slots0 {
		t.Fatalf("the table reached %d accounts and %d slots: the test did not grow it past its doubling chunks (%d) and the index six times",
			maxLen, len(tab.slots), accountDoubled)
	}
	if tab.Len() != len(model) {
		t.Fatalf("Len %d, model %d", tab.Len(), len(model))
	}
	i := 0
	for a := range tab.All() {
		if a.ID != order[i] || a.Position != model[a.ID] || tab.Get(a.ID) != a {
			t.Fatalf("account %d: %+v, want %s at %d", i, a, order[i], model[order[i]])
		}
		i++
	}
	if kept.ID != order[0] || tab.Get(order[0]) != kept {
		t.Fatalf("the first account's pointer moved: %+v", kept)
	}
}

// TestAccountTableRemoveNotLast: removing an account other than the last
// added is a bug in its caller: it panics rather than corrupting the table.
func TestAccountTableRemoveNotLast(t *testing.T) {
	tab := newAccountTable(0)
	tab.Add(Account{ID: "a"})
	tab.Add(Account{ID: "b"})
	defer func() {
		if recover() == nil {
			t.Fatal("RemoveLast of the first of two did not panic")
		}
	}()
	tab.RemoveLast("a")
}

// TestAccountTableRemoveAtTheEnd: removing the account in the index's last
// slot leaves in place an account in its first slot that lives at home
// there: the backward shift's wrap-around, which random tables seldom meet.
func TestAccountTableRemoveAtTheEnd(t *testing.T) {
	tab := newAccountTable(0)
	mask := len(tab.slots) - 1
	homeOf := func(id string) int { return int(maphash.String(tab.seed, id)) & mask }
	idAt := func(home int) string {
		for i := 0; ; i++ {
			if id := fmt.Sprintf("x%d", i); homeOf(id) == home {
				return id
			}
		}
	}
	first, last := idAt(0), idAt(mask)
	tab.Add(Account{ID: first})
	tab.Add(Account{ID: last})
	if tab.slots[0]&accountNumberMask != 1 || tab.slots[mask]&accountNumberMask != 2 {
		t.Fatalf("slots 0 and %d: %x, %x; want accounts 1 and 2", mask, tab.slots[0], tab.slots[mask])
	}
	tab.RemoveLast(last)
	if a := tab.Get(first); a == nil || a.ID != first || tab.Get(last) != nil || tab.Len() != 1 {
		t.Fatalf("after removing %s: Get(%s) = %+v, Get(%s) = %+v, Len %d", last, first, a, last, tab.Get(last), tab.Len())
	}
}

// TestAccountTableIDsCopied: the ids an account table keeps in its buffers
// (keepIDs, in batches) are the ids added, whatever their lengths, across
// many full buffers and beside ids too long for them, and each is found by
// its text.
func TestAccountTableIDsCopied(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	tab := newAccountTable(0)
	var ids []string
	for i := range 5000 {
		n := 1 + rng.IntN(300)
		if i%97 == 0 {
			n = idLong + 1 + rng.IntN(100)
		}
		id := fmt.Sprintf("%d-", i)
		for len(id) < n {
			id += string(rune('a' + rng.IntN(26)))
		}
		if tab.Add(Account{ID: id}) == nil {
			t.Fatalf("Add(%q) found it there already", id)
		}
		ids = append(ids, id)
		if i%10 == 9 { // a batch of ten commits
			tab.keepIDs()
		}
	}
	for i, id := range ids {
		if a := tab.at(i); a.ID != id {
			t.Fatalf("account %d: id %q, want %q", i, a.ID, id)
		}
		if a := tab.Get(id); a == nil || a != tab.at(i) {
			t.Fatalf("Get(%q) = %p, want account %d", id, a, i)
		}
	}
	if tab.ids.b.Cap() != idBufferMax {
		t.Errorf("the ids' last buffer holds %d bytes, want %d once they stop doubling", tab.ids.b.Cap(), idBufferMax)
	}
}

// TestAccountIDsKeptOnceCommitted: an account's id goes into the table's
// buffers when it stays: at once outside a batch, at Commit within one, and
// never for an account a Rollback removes (its bytes would stay, and keep
// the whole buffer they share alive).
func TestAccountIDsKeptOnceCommitted(t *testing.T) {
	s := NewState()
	s.Evolve(1, AssetDefined{Code: "USD", Scale: 2})
	open := func(pos uint64, id string) { s.Evolve(pos, AccountOpened{ID: id, Asset: "USD", Normal: SideCredit}) }
	buffered := func(want string) {
		t.Helper()
		if got := s.accounts.ids.b.String(); got != want {
			t.Fatalf("ids buffered %q, want %q", got, want)
		}
	}
	open(2, "outside")
	buffered("outside")
	s.Begin()
	open(3, "rolled-back")
	buffered("outside")
	s.Rollback()
	buffered("outside")
	s.Begin()
	open(3, "committed")
	buffered("outside")
	s.Commit()
	buffered("outsidecommitted")
	for _, id := range []string{"outside", "committed"} {
		if a := s.accounts.Get(id); a == nil || a.ID != id {
			t.Fatalf("Get(%q) = %+v after the batches", id, a)
		}
	}
	if s.accounts.Get("rolled-back") != nil {
		t.Fatal("the rolled back account is there")
	}
	// A state restored from a snapshot keeps its accounts' ids too.
	var buf bytes.Buffer
	if err := s.MarshalSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	r, err := UnmarshalSnapshot(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.accounts.ids.b.String(); got != "outsidecommitted" {
		t.Fatalf("ids buffered %q after a snapshot's restore, want %q", got, "outsidecommitted")
	}
}
