package projections

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/ledgerd/ledger/domain"
)

// TestHeadTableAgainstMap: a head table and a map of heads given the same
// adds, look-ups and changes, across many growths of the index and with
// names that share prefixes, hold the same heads.
func TestHeadTableAgainstMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	tab := newHeadTable()
	type want struct {
		asset    string
		position uint64
		dp       domain.Units
	}
	model := map[string]*want{}
	name := func() string {
		// Few enough names that adds meet names already there.
		return fmt.Sprintf("acct-%d", rng.IntN(60_000))
	}
	for i := range 200_000 {
		n := name()
		switch rng.IntN(3) {
		case 0:
			asset := []string{"EUR", "USD", "JPY"}[rng.IntN(3)]
			h, added := tab.Add(n, asset)
			if w, ok := model[n]; ok {
				if added || tab.Asset(h) != w.asset || h.position != w.position {
					t.Fatalf("op %d: Add of %s there already: added %t, asset %s position %d; want false, %s %d",
						i, n, added, tab.Asset(h), h.position, w.asset, w.position)
				}
				continue
			}
			if !added || tab.Asset(h) != asset || h.position != 0 || !h.dp.IsZero() {
				t.Fatalf("op %d: Add of new %s: added %t, asset %s, head %+v", i, n, added, tab.Asset(h), *h)
			}
			model[n] = &want{asset: asset}
		case 1:
			h, w := tab.Get(n), model[n]
			if (h == nil) != (w == nil) {
				t.Fatalf("op %d: Get(%s) = %v, model has it: %t", i, n, h, w != nil)
			}
			if h != nil && (tab.Asset(h) != w.asset || h.position != w.position || h.dp != w.dp) {
				t.Fatalf("op %d: Get(%s): asset %s position %d dp %v, want %s %d %v", i, n, tab.Asset(h), h.position, h.dp, w.asset, w.position, w.dp)
			}
		default:
			h, w := tab.Get(n), model[n]
			if h == nil {
				continue
			}
			h.position = uint64(i)
			h.dp, _ = h.dp.CheckedAdd(domain.UnitsFromInt64(int64(i)))
			w.position, w.dp = h.position, h.dp
		}
	}
	if tab.Len() != len(model) {
		t.Fatalf("Len %d, model %d", tab.Len(), len(model))
	}
	for n, w := range model {
		h := tab.Get(n)
		if h == nil || tab.Asset(h) != w.asset || h.position != w.position || h.dp != w.dp {
			t.Fatalf("at the end, %s: %v, want %+v", n, h, *w)
		}
	}
	if tab.Get("acct-60000") != nil || tab.Get("") != nil || tab.Get("acct-1x") != nil {
		t.Fatal("Get of a name never added found a head")
	}
}

// BenchmarkHeadsCollected: what a full collection costs with a million
// accounts' heads live, held as a map of pointers to heads (as the
// movements cache did) or as a head table.
func BenchmarkHeadsCollected(b *testing.B) {
	const accounts = 1_000_000
	// The old head's shape: its fields other than the asset take room,
	// never pointers.
	type pointerHead struct {
		asset string
		_     [88]byte
	}
	b.Run("map", func(b *testing.B) {
		m := make(map[string]*pointerHead)
		for i := range accounts {
			m[fmt.Sprintf("acct-%07d", i)] = &pointerHead{asset: "EUR"}
		}
		b.ResetTimer()
		for range b.N {
			runtime.GC()
		}
		runtime.KeepAlive(m)
	})
	b.Run("table", func(b *testing.B) {
		t := newHeadTable()
		for i := range accounts {
			t.Add(fmt.Sprintf("acct-%07d", i), "EUR")
		}
		b.ResetTimer()
		for range b.N {
			runtime.GC()
		}
		runtime.KeepAlive(t)
	})
}

// BenchmarkHeadLookup: a look-up among a million accounts' heads, and a
// change to the head found.
func BenchmarkHeadLookup(b *testing.B) {
	const accounts = 1_000_000
	names := make([]string, accounts)
	for i := range names {
		names[i] = fmt.Sprintf("acct-%07d", i)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	order := make([]int, 1<<16)
	for i := range order {
		order[i] = rng.IntN(accounts)
	}
	b.Run("map", func(b *testing.B) {
		m := make(map[string]*movementHead)
		for _, n := range names {
			m[n] = &movementHead{}
		}
		b.ResetTimer()
		for i := range b.N {
			m[names[order[i&(len(order)-1)]]].position++
		}
	})
	b.Run("table", func(b *testing.B) {
		t := newHeadTable()
		for _, n := range names {
			t.Add(n, "EUR")
		}
		b.ResetTimer()
		for i := range b.N {
			t.Get(names[order[i&(len(order)-1)]]).position++
		}
	})
}
