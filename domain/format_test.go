package domain_test

import (
	"math/big"
	"testing"

	"github.com/ledgerd/ledger/domain"
)

// TestFormatMinor: sums past 128 bits print like Units.Format.
func TestFormatMinor(t *testing.T) {
	t.Parallel()
	for _, v := range []int64{0, 1, -1, 5, -5, 99, 100, 12345, -12345, 1<<63 - 1, -1 << 63} {
		for _, scale := range []uint8{0, 1, 2, 8, domain.ScaleMax} {
			want := domain.UnitsFromInt64(v).Format(scale)
			if got := domain.FormatMinor(big.NewInt(v), scale); got != want {
				t.Errorf("domain.FormatMinor(%d, %d) = %q, want %q", v, scale, got, want)
			}
		}
	}
	// Past 128 bits: a sum over many accounts.
	huge, _ := new(big.Int).SetString("-1234567890123456789012345678901234567890123", 10)
	if got, want := domain.FormatMinor(huge, 18), "-1234567890123456789012345.678901234567890123"; got != want {
		t.Errorf("domain.FormatMinor(huge, 18) = %q, want %q", got, want)
	}
}
