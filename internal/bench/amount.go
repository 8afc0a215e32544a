package bench

import (
	"errors"
	"fmt"
	"math/big"
	"strings"
)

// The bench's one asset. Its scale is fixed, so amounts are counted exactly
// as integers of minor units (cents): no float and no decimal library.
const (
	assetCode  = "USD"
	assetScale = 2
	// amountMinorMin and amountMinorMax bound a random amount: 0.01..100.00.
	amountMinorMin = 1
	amountMinorMax = 10_000
	// decimalLenMax bounds a decimal string read from the server; balances
	// have at most 38 digits.
	decimalLenMax = 64
)

// ErrBadDecimal means a decimal string is malformed or has more fractional
// digits than the scale (other than trailing zeros).
var ErrBadDecimal = errors.New("malformed decimal")

// parseMinor parses a decimal string such as "123.45" or "-0.5" into minor
// units at scale: removing the point is exact because the scale is fixed.
//
// Errors: ErrBadDecimal.
func parseMinor(s string, scale int) (*big.Int, error) {
	if len(s) == 0 || len(s) > decimalLenMax {
		return nil, fmt.Errorf("%q: length %d, want 1..%d: %w", s, len(s), decimalLenMax, ErrBadDecimal)
	}
	digits, neg := strings.CutPrefix(s, "-")
	whole, frac, point := strings.Cut(digits, ".")
	if !allDigits(whole) || point && !allDigits(frac) {
		return nil, fmt.Errorf("%q: %w", s, ErrBadDecimal)
	}
	if len(frac) > scale {
		if strings.Trim(frac[scale:], "0") != "" {
			return nil, fmt.Errorf("%q: more than %d fractional digits: %w", s, scale, ErrBadDecimal)
		}
		frac = frac[:scale]
	}
	frac += strings.Repeat("0", scale-len(frac))
	v, ok := new(big.Int).SetString(whole+frac, 10)
	if !ok {
		return nil, fmt.Errorf("%q: %w", s, ErrBadDecimal)
	}
	if neg {
		v.Neg(v)
	}
	return v, nil
}

// allDigits reports whether s is one or more ASCII digits.
func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// sumMinor adds decimal strings exactly, in minor units at scale.
//
// Errors: ErrBadDecimal naming the first bad value.
func sumMinor(values []string, scale int) (*big.Int, error) {
	sum := new(big.Int)
	for i, s := range values {
		v, err := parseMinor(s, scale)
		if err != nil {
			return nil, fmt.Errorf("value %d: %w", i, err)
		}
		sum.Add(sum, v)
	}
	return sum, nil
}

// formatMinor writes minor units at scale as a decimal string: 12345 at
// scale 2 is "123.45", -5 is "-0.05".
func formatMinor(v *big.Int, scale int) string {
	s := new(big.Int).Abs(v).String()
	if scale > 0 {
		if len(s) <= scale {
			s = strings.Repeat("0", scale-len(s)+1) + s
		}
		s = s[:len(s)-scale] + "." + s[len(s)-scale:]
	}
	if v.Sign() < 0 {
		s = "-" + s
	}
	return s
}
