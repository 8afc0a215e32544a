package projections

import (
	"fmt"
	"testing"
)

// TestMovementsCachesBoundedOverLedgers: the accounts cached between
// batches are bounded over every ledger together: keeping a cache evicts
// other ledgers' until it fits, a cache over the bound alone is not kept,
// and taking a cache gives its room back.
func TestMovementsCachesBoundedOverLedgers(t *testing.T) {
	p := NewMovements()
	p.cachedMax = 10
	cache := func(through uint64, accounts int) *movementCache {
		c := &movementCache{through: through, heads: newHeadTable(), scales: map[string]uint8{}}
		for i := range accounts {
			c.heads.Add(fmt.Sprint("acct-", i), "EUR")
		}
		return c
	}
	p.keep("a", cache(5, 4))
	p.keep("b", cache(7, 4))
	if p.cached != 8 || len(p.caches) != 2 {
		t.Fatalf("after two caches of 4: %d accounts in %d caches, want 8 in 2", p.cached, len(p.caches))
	}
	p.keep("c", cache(9, 6)) // 14 > 10: one of a and b goes
	if p.cached > p.cachedMax || p.caches["c"] == nil || len(p.caches) != 2 {
		t.Fatalf("after a third of 6: %d accounts in %v, want at most %d, c's kept and one other", p.cached, keys(p.caches), p.cachedMax)
	}
	p.keep("d", cache(3, 11)) // over the bound alone
	if p.caches["d"] != nil || p.cached > p.cachedMax {
		t.Fatalf("a cache of 11 over a bound of 10 was kept (%d accounts)", p.cached)
	}
	if got := p.take("c", 10); got.heads.Len() != 6 || p.cached != p.sum() {
		t.Fatalf("take c: %d accounts, %d counted, %d held", got.heads.Len(), p.cached, p.sum())
	}
	if got := p.take("zz", 1); got.heads.Len() != 0 {
		t.Fatalf("take of a ledger without a cache: %d accounts, want a fresh cache", got.heads.Len())
	}
}

func (p *Movements) sum() int {
	n := 0
	for _, c := range p.caches {
		n += c.heads.Len()
	}
	return n
}

func keys(m map[string]*movementCache) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// TestMovementsDroppedCacheNotKeptAgain: a batch folded into a cache and
// not written drops it (its discard), also when a fold of the next batch
// holds it at that moment and keeps it again after (stage puts back a
// cache that lacks accounts): the cache never comes back, so no batch
// continues from a fold that was not committed.
func TestMovementsDroppedCacheNotKeptAgain(t *testing.T) {
	p := NewMovements()
	c := &movementCache{through: 10, ledgerNo: 1, clockKnown: true, heads: newHeadTable(), scales: map[string]uint8{}}
	c.heads.Add("acct", "EUR")
	p.keep("a", c)
	if got := p.take("a", 11); got != c {
		t.Fatal("the kept cache was not taken by the batch after it")
	}
	p.drop("a", c) // the batch folded into it failed while another holds it
	p.keep("a", c) // the holder puts it back
	if got := p.take("a", 11); got == c || got.heads.Len() != 0 {
		t.Fatalf("a dropped cache came back (%d accounts)", got.heads.Len())
	}
	if p.cached != 0 || p.sum() != 0 {
		t.Fatalf("%d accounts counted, %d held after the drop, want none", p.cached, p.sum())
	}

	kept := &movementCache{through: 20, heads: newHeadTable(), scales: map[string]uint8{}}
	p.keep("b", kept)
	p.drop("b", kept) // kept, not held by anyone
	if p.caches["b"] != nil || p.take("b", 21) == kept {
		t.Fatal("a dropped cache stayed kept")
	}
}
