package commands

import (
	"testing"

	"github.com/ledgerd/ledger/domain"
)

// TestRecentTransfers: the ring keeps the last n events put, in position
// order with gaps (events that take no id are not put), finds each by its
// position, evicts the oldest, and drops the latest on a rollback.
func TestRecentTransfers(t *testing.T) {
	t.Parallel()
	ev := func(pos uint64) domain.Event { return domain.TransferCommitted{ID: string(rune('a' + pos%26))} }
	r := newRecentTransfers(4)
	for _, p := range []uint64{2, 3, 5, 8, 9} { // 2 is evicted by 9
		r.put(p, ev(p))
	}
	check := func(want map[uint64]bool) {
		t.Helper()
		for p := uint64(0); p <= 12; p++ {
			got := r.get(p)
			if want[p] != (got != nil) || got != nil && got.(domain.TransferCommitted).ID != ev(p).(domain.TransferCommitted).ID {
				t.Errorf("get(%d) = %v, want kept %v", p, got, want[p])
			}
		}
	}
	check(map[uint64]bool{3: true, 5: true, 8: true, 9: true})
	r.forgetAfter(5) // a batch from 6 on rolled back
	check(map[uint64]bool{3: true, 5: true})
	r.put(6, ev(6))
	r.put(7, ev(7))
	r.put(10, ev(10)) // evicts 3
	check(map[uint64]bool{5: true, 6: true, 7: true, 10: true})
	r.put(7, ev(7)) // a position decided again drops what followed it
	check(map[uint64]bool{5: true, 6: true, 7: true})
}
