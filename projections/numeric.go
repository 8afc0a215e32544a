package projections

import (
	"encoding/binary"

	"github.com/ledgerd/ledger/domain"
)

// NUMERIC's binary form: ndigits, weight (of the first digit, in powers of
// 10,000), sign and display scale, each an int16, then ndigits base-10,000
// digits.
const (
	numericPositive = 0x0000
	numericNegative = 0x4000
	numericBase     = 4 // decimal digits per base-10,000 digit
)

// appendNumeric appends u minor units at scale as a binary NUMERIC.
func appendNumeric(buf []byte, u domain.Units, scale uint8) []byte {
	var scratch [48]byte
	digits := u.AppendAbs(scratch[:0])
	// point is how many digits stand before the decimal point (0 or less
	// for an amount under one unit). Base-10,000 groups run from the point
	// leftwards over the integer part (at least one group) and rightwards
	// over scale fractional digits; a slot outside digits is a zero.
	point := len(digits) - int(scale)
	intGroups := max((point+numericBase-1)/numericBase, 1)
	fracGroups := (int(scale) + numericBase - 1) / numericBase
	lead := intGroups*numericBase - point // slots before the first digit
	groups := make([]int16, 0, 12)
	for g := 0; g < intGroups+fracGroups; g++ {
		v := 0
		for k := 0; k < numericBase; k++ {
			i := g*numericBase + k - lead
			v *= 10
			if i >= 0 && i < len(digits) {
				v += int(digits[i] - '0')
			}
		}
		groups = append(groups, int16(v))
	}
	weight := intGroups - 1
	for len(groups) > 0 && groups[0] == 0 {
		groups, weight = groups[1:], weight-1
	}
	for len(groups) > 0 && groups[len(groups)-1] == 0 {
		groups = groups[:len(groups)-1]
	}
	sign := uint16(numericPositive)
	if u.Sign() < 0 {
		sign = numericNegative
	}
	if len(groups) == 0 {
		weight, sign = 0, numericPositive
	}
	buf = binary.BigEndian.AppendUint16(buf, uint16(len(groups)))
	buf = binary.BigEndian.AppendUint16(buf, uint16(int16(weight)))
	buf = binary.BigEndian.AppendUint16(buf, sign)
	buf = binary.BigEndian.AppendUint16(buf, uint16(scale))
	for _, g := range groups {
		buf = binary.BigEndian.AppendUint16(buf, uint16(g))
	}
	return buf
}
