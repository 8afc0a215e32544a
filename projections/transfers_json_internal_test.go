package projections

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/ledgerd/ledger/domain"
)

// FuzzPostingsJSON: appendPostingsJSON writes what json.Marshal writes.
func FuzzPostingsJSON(f *testing.F) {
	f.Add("user:1", "user:2", "USD", int64(100), uint8(2), false, false, 1)
	f.Add("a<b>&", "\u2028\"\\", "\xff", int64(-5), uint8(0), true, true, 2)
	f.Add("", "", "", int64(0), uint8(18), true, false, 0)
	f.Fuzz(func(t *testing.T, debit, credit, asset string, units int64, scale uint8, remaining, reversed bool, n int) {
		var ps []transferPosting
		if n >= 0 {
			ps = []transferPosting{}
		}
		for i := range min(max(n, 0), 3) {
			a := domain.Amount{Units: domain.UnitsFromInt64(units + int64(i)), Scale: scale % 19}
			p := transferPosting{Debit: debit, Credit: credit, Asset: asset, Amount: a}
			if remaining {
				p.Remaining = &a
			}
			if reversed {
				p.Reversed = &domain.Amount{Units: domain.UnitsFromInt64(units / 2), Scale: a.Scale}
			}
			ps = append(ps, p)
		}
		want, err := json.Marshal(ps)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendPostingsJSON([]byte("x"), ps); !bytes.Equal(got[1:], want) || got[0] != 'x' {
			t.Fatalf("postings JSON\n got %s\nwant x%s", got, want)
		}
	})
}
