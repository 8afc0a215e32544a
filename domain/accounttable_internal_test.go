package domain

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestAccountTableAgainstMap: an account table and a map given the same
// adds, removals of the last added (a rollback's undo) and look-ups, across
// growths of the index and deletions that wrap around its end, hold the
// same accounts; pointers handed out stay valid across growths.
func TestAccountTableAgainstMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	tab := newAccountTable(0)
	model := map[string]uint64{}
	var order []string
	var kept *Account // an account added early: its pointer must survive
	for op := range 300_000 {
		id := fmt.Sprintf("a%d", rng.IntN(50_000))
		switch r := rng.IntN(10); {
		case r < 5:
			a := tab.Add(Account{ID: id, Position: uint64(op)})
			if _, ok := model[id]; ok {
				if a != nil {
					t.Fatalf("op %d: Add of %s there already returned an account", op, id)
				}
				continue
			}
			if a == nil || a.ID != id || a.Position != uint64(op) {
				t.Fatalf("op %d: Add of new %s: %+v", op, id, a)
			}
			model[id] = uint64(op)
			order = append(order, id)
			if kept == nil {
				kept = a
			}
		case r < 7 && len(order) > 1: // roll back a few adds, last first
			for k := rng.IntN(min(len(order)-1, 40)) + 1; k > 0; k-- {
				last := order[len(order)-1]
				tab.RemoveLast(last)
				delete(model, last)
				order = order[:len(order)-1]
			}
		default:
			a, ok := tab.Lookup(id)
			pos, want := model[id]
			if ok != want || ok && (a.ID != id || a.Position != pos) {
				t.Fatalf("op %d: Lookup(%s) = %+v, %t; model %d, %t", op, id, a, ok, pos, want)
			}
		}
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
