package domain

import (
	"testing"
	"time"
)

// TestVelocitySumSaturates: a velocity window whose sum overflows holds the
// largest amount, past every limit, where CheckedAdd's failure (a zero sum)
// would have let the postings through.
func TestVelocitySumSaturates(t *testing.T) {
	huge := maxUnits()
	one, _ := MustDecimal("1").Units(0)
	if got := saturatingAdd(huge, one); got.Cmp(huge) != 0 {
		t.Fatalf("max + 1 = %s, want max", got.Format(0))
	}
	if got := saturatingAdd(one, one); got.Format(0) != "2" {
		t.Fatalf("1 + 1 = %s", got.Format(0))
	}
	var p postingRings
	at := time.Unix(1_000, 0).UnixNano()
	p.sides[sideIndex(SideDebit)] = []ringEntry{{at: at - 2, count: 1, sum: huge}, {at: at - 1, count: 1, sum: huge}}
	if count, sum, _ := p.window(SideDebit, at, time.Minute); count != 2 || sum.Cmp(huge) != 0 {
		t.Fatalf("window of two maximal postings: %d, %s; want 2 and the largest amount", count, sum.Format(0))
	}
}
