package domain

import "fmt"

// DecimalLenMax bounds the text of a decimal in bytes: 38 digits, a sign and a
// point fit.
const DecimalLenMax = 64

// Decimal is a parsed decimal string before it meets an asset: its digits as an
// integer coefficient and the count of fractional digits. Parsing needs no state,
// so it runs on the caller's goroutine, and the writer only rescales.
type Decimal struct {
	coef Units
	frac uint8
}

// ParseDecimal parses a decimal string in the one grammar of amounts on the
// wire (docs/api.md, "Amounts"):
//
//	amount = [ "-" ] ( "0" | nonzero-digit { digit } ) [ "." digit { digit } ]
//
// No '+', no exponent, no spaces, no leading zeros (a single 0 before the
// point), no "-0" in any spelling: every value has one spelling up to
// trailing fractional zeros, which say the precision a client meant ("12.50"
// is 12.5 written at scale 2) and are checked against the asset's scale by
// Units. Whether a sign is allowed is the caller's rule: amounts are
// positive, bounds may be negative.
//
// Errors: ErrInvalidAmount when the text is not of the grammar, or has more
// than DigitsMax significant digits.
func ParseDecimal(s string) (Decimal, error) {
	if len(s) == 0 {
		return Decimal{}, fmt.Errorf("empty string is not an amount: %w", ErrInvalidAmount)
	}
	if len(s) > DecimalLenMax {
		return Decimal{}, fmt.Errorf("%d bytes, at most %d: %w", len(s), DecimalLenMax, ErrInvalidAmount)
	}
	neg := s[0] == '-'
	body := s
	if neg {
		body = s[1:]
	}
	if len(body) > 1 && body[0] == '0' && body[1] != '.' {
		return Decimal{}, fmt.Errorf("%q has a leading zero: %w", s, ErrInvalidAmount)
	}
	var d Decimal
	digits, seenPoint, fracDigits, intDigits := 0, false, 0, 0
	for i := 0; i < len(body); i++ {
		c := body[i]
		switch {
		case c == '.' && !seenPoint && intDigits > 0:
			seenPoint = true
		case c >= '0' && c <= '9':
			if seenPoint {
				fracDigits++
			} else {
				intDigits++
			}
			if digits > 0 || c != '0' {
				digits++
			}
			if digits > DigitsMax {
				return Decimal{}, fmt.Errorf("%q has more than %d digits: %w", s, DigitsMax, ErrInvalidAmount)
			}
			d.coef, _ = d.coef.mul10() // cannot overflow: at most 38 significant digits
			d.coef = d.coef.Add(Units{lo: uint64(c - '0')})
		default:
			return Decimal{}, fmt.Errorf("%q is not a plain decimal: %w", s, ErrInvalidAmount)
		}
	}
	if intDigits == 0 || (seenPoint && fracDigits == 0) {
		return Decimal{}, fmt.Errorf("%q is not a plain decimal: %w", s, ErrInvalidAmount)
	}
	if neg && d.coef.IsZero() {
		return Decimal{}, fmt.Errorf("%q: zero has no sign: %w", s, ErrInvalidAmount)
	}
	// fracDigits < DecimalLenMax: it fits.
	d.frac = uint8(fracDigits)
	if neg {
		d.coef = d.coef.Neg()
	}
	return d, nil
}

// MustDecimal parses s and panics when it is malformed; for tests and constants.
func MustDecimal(s string) Decimal {
	d, err := ParseDecimal(s)
	if err != nil {
		panic(err)
	}
	return d
}

// Sign returns -1, 0 or +1.
func (d Decimal) Sign() int { return d.coef.Sign() }

// String returns d as written, normalised: "10.50" stays "10.50".
func (d Decimal) String() string { return d.coef.Format(d.frac) }

// Units returns d in minor units of an asset with the given scale.
//
// Errors: ErrInvalidAmount when d has more fractional digits than scale (no
// silent rounding), or when the result would exceed DigitsMax digits.
func (d Decimal) Units(scale uint8) (Units, error) {
	if d.frac > scale {
		return Units{}, fmt.Errorf("%s has more than %d fractional digits: %w", d, scale, ErrInvalidAmount)
	}
	u := d.coef
	neg := u.Sign() < 0
	if neg {
		u = u.Neg()
	}
	for i := d.frac; i < scale; i++ {
		var ok bool
		if u, ok = u.mul10(); !ok {
			return Units{}, fmt.Errorf("%s exceeds %d digits: %w", d, DigitsMax, ErrInvalidAmount)
		}
	}
	if !u.InRange() {
		return Units{}, fmt.Errorf("%s exceeds %d digits at scale %d: %w", d, DigitsMax, scale, ErrInvalidAmount)
	}
	if neg {
		u = u.Neg()
	}
	return u, nil
}
