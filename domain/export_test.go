package domain

// Test-only access to unexported fields, so that the external test package can
// build Units across the full 128-bit range and check a Decimal's parts.

// UnitsFromHiLo returns the Units with the given two's-complement halves.
func UnitsFromHiLo(hi int64, lo uint64) Units { return Units{hi: hi, lo: lo} }

// HiLo returns u's two's-complement halves.
func (u Units) HiLo() (hi int64, lo uint64) { return u.hi, u.lo }

// Parts returns d's coefficient and count of fractional digits.
func (d Decimal) Parts() (coef Units, frac uint8) { return d.coef, d.frac }
