package domain

import (
	"math/big"
	"math/bits"
	"strconv"
)

// DigitsMax is the most decimal digits an amount or a balance may have. 38 digits
// fit a signed 128-bit integer (|v| < 1.7e38); the sum of two of them may not,
// so sums on the money path go through CheckedAdd.
const DigitsMax = 38

// Units is a signed 128-bit count of an asset's minor units: 10.00 USD (scale 2)
// is 1000 units. Balances are kept in Units instead of decimal.Decimal so that an
// account costs a fixed 16 bytes per field and arithmetic never allocates; decimal
// strings exist only at the edges (commands, events, read models).
type Units struct {
	hi int64
	lo uint64
}

// unitsMax is 10^38 - 1, the largest magnitude of any amount or balance.
var unitsMax = func() Units {
	u := Units{lo: 1}
	for range DigitsMax {
		u, _ = u.mul10()
	}
	return u.Sub(Units{lo: 1})
}()

// unitsMin is -(10^38 - 1).
var unitsMin = unitsMax.Neg()

// UnitsFromInt64 returns v minor units.
func UnitsFromInt64(v int64) Units {
	if v < 0 {
		return Units{hi: -1, lo: uint64(v)}
	}
	return Units{lo: uint64(v)}
}

// IsZero reports whether u is zero.
func (u Units) IsZero() bool { return u.hi == 0 && u.lo == 0 }

// Sign returns -1, 0 or +1.
func (u Units) Sign() int {
	switch {
	case u.hi < 0:
		return -1
	case u.hi == 0 && u.lo == 0:
		return 0
	}
	return 1
}

// Add returns u+v, wrapping on overflow. Use it only where the operands are
// known small enough (a difference of two in-range values); money sums use
// CheckedAdd.
func (u Units) Add(v Units) Units {
	lo, carry := bits.Add64(u.lo, v.lo, 0)
	return Units{hi: u.hi + v.hi + int64(carry), lo: lo}
}

// CheckedAdd returns u+v, and false when the sum wraps or has more than
// DigitsMax digits.
func (u Units) CheckedAdd(v Units) (Units, bool) {
	sum := u.Add(v)
	if (u.hi < 0) == (v.hi < 0) && (sum.hi < 0) != (u.hi < 0) {
		return Units{}, false
	}
	return sum, sum.InRange()
}

// Sub returns u-v under the same contract as Add.
func (u Units) Sub(v Units) Units {
	lo, borrow := bits.Sub64(u.lo, v.lo, 0)
	return Units{hi: u.hi - v.hi - int64(borrow), lo: lo}
}

// Neg returns -u.
func (u Units) Neg() Units { return Units{}.Sub(u) }

// Cmp returns -1, 0 or +1 as u is less than, equal to or greater than v.
func (u Units) Cmp(v Units) int {
	switch {
	case u.hi < v.hi:
		return -1
	case u.hi > v.hi:
		return 1
	case u.lo < v.lo:
		return -1
	case u.lo > v.lo:
		return 1
	}
	return 0
}

// InRange reports whether |u| has at most DigitsMax digits.
func (u Units) InRange() bool {
	if u.Sign() < 0 {
		// Not via Neg: -(-2^127) wraps to itself.
		return u.Cmp(unitsMin) >= 0
	}
	return u.Cmp(unitsMax) <= 0
}

// mul10 returns u*10 for u >= 0, and false when the product would not fit in 127 bits.
func (u Units) mul10() (Units, bool) {
	hi, lo := bits.Mul64(u.lo, 10)
	hh, hl := bits.Mul64(uint64(u.hi), 10)
	if hh != 0 {
		return Units{}, false
	}
	sum, carry := bits.Add64(hi, hl, 0)
	if carry != 0 || sum>>63 != 0 {
		return Units{}, false
	}
	return Units{hi: int64(sum), lo: lo}, true
}

// big returns u as a big.Int, for formatting and for the rare slow path.
func (u Units) big() *big.Int {
	neg := u.Sign() < 0
	if neg {
		u = u.Neg()
	}
	b := new(big.Int).SetUint64(uint64(u.hi))
	b.Lsh(b, 64)
	b.Or(b, new(big.Int).SetUint64(u.lo))
	if neg {
		b.Neg(b)
	}
	return b
}

// String returns u as a plain integer count of minor units.
func (u Units) String() string {
	if u.hi == 0 {
		return strconv.FormatUint(u.lo, 10)
	}
	if u.hi == -1 && u.lo >= 1<<63 {
		return strconv.FormatInt(int64(u.lo), 10)
	}
	return u.big().String()
}

// AppendAbs appends |u|'s decimal digits to b, allocating nothing when b
// has room (a NUMERIC encoder's hot path).
func (u Units) AppendAbs(b []byte) []byte {
	if u.hi == 0 {
		return strconv.AppendUint(b, u.lo, 10)
	}
	if u.hi == -1 && u.lo != 0 {
		return strconv.AppendUint(b, -u.lo, 10) // -2^64 < u < 0
	}
	// |u| from big, which reads -2^127 right (its negation wraps to
	// itself in 128 bits).
	x := u.big()
	return x.Abs(x).Append(b, 10)
}

// Format returns u as a decimal string with exactly scale fractional digits:
// Units 1000 at scale 2 is "10.00". Below 2^64 in magnitude, one
// allocation, the string's: every amount and running balance served, and
// every line a verify digests, goes through here (through String and the
// point placed in its text it was two to five).
func (u Units) Format(scale uint8) string {
	var buf [formatLenMax]byte
	return string(u.AppendFormat(buf[:0], scale))
}

// formatLenMax holds Format's text of any Units at any scale: a sign, the
// 39 digits of 2^127, a point, and up to 255 zeros before the digits of an
// amount under one.
const formatLenMax = 1 + DigitsMax + 1 + 1 + 255

// AppendFormat appends u as Format writes it.
func (u Units) AppendFormat(b []byte, scale uint8) []byte {
	var abs [DigitsMax + 1]byte
	digits := u.AppendAbs(abs[:0])
	if u.Sign() < 0 {
		b = append(b, '-')
	}
	if scale == 0 {
		return append(b, digits...)
	}
	whole := len(digits) - int(scale)
	if whole <= 0 {
		// Under one: "0." and the zeros before the digits.
		b = append(b, '0', '.')
		for range -whole {
			b = append(b, '0')
		}
		return append(b, digits...)
	}
	b = append(b, digits[:whole]...)
	b = append(b, '.')
	return append(b, digits[whole:]...)
}

// FormatMinor writes v minor units as a decimal string with exactly scale
// fractional digits, like Units.Format, for sums that may exceed 38 digits.
func FormatMinor(v *big.Int, scale uint8) string { return formatDigits(v.String(), scale) }

// formatDigits places the point in a plain integer's digits.
func formatDigits(digits string, scale uint8) string {
	neg := digits[0] == '-'
	if neg {
		digits = digits[1:]
	}
	if scale > 0 {
		for len(digits) <= int(scale) {
			digits = "0" + digits
		}
		cut := len(digits) - int(scale)
		digits = digits[:cut] + "." + digits[cut:]
	}
	if neg {
		return "-" + digits
	}
	return digits
}
