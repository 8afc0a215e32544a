package domain_test

import (
	"math"
	"math/big"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/ledgerd/ledger/domain"
)

var (
	two128 = new(big.Int).Lsh(big.NewInt(1), 128)
	two127 = new(big.Int).Lsh(big.NewInt(1), 127)
	// unitsMaxBig is 10^38-1, the largest magnitude of an amount or a balance.
	unitsMaxBig = new(big.Int).Sub(new(big.Int).Exp(big.NewInt(10), big.NewInt(38), nil), big.NewInt(1))
)

// unitsToBig reads u's two's-complement halves as a signed integer.
func unitsToBig(u domain.Units) *big.Int {
	hi, lo := u.HiLo()
	b := new(big.Int).Lsh(big.NewInt(hi), 64)
	return b.Add(b, new(big.Int).SetUint64(lo))
}

// unitsFromBig returns b modulo 2^128 as Units (two's complement).
func unitsFromBig(b *big.Int) domain.Units {
	m := new(big.Int).Mod(b, two128) // 0 <= m < 2^128
	lo := new(big.Int).And(m, new(big.Int).SetUint64(math.MaxUint64)).Uint64()
	hi := new(big.Int).Rsh(m, 64).Uint64()
	return domain.UnitsFromHiLo(int64(hi), lo)
}

// wrap128 reduces b to the signed 128-bit range, as two's-complement arithmetic does.
func wrap128(b *big.Int) *big.Int {
	m := new(big.Int).Mod(b, two128)
	if m.Cmp(two127) >= 0 {
		m.Sub(m, two128)
	}
	return m
}

func mustBig(t testing.TB, s string) *big.Int {
	t.Helper()
	b, ok := new(big.Int).SetString(s, 10)
	if !ok {
		t.Fatalf("bad big literal %q", s)
	}
	return b
}

// formatBig is the oracle for Units.Format: |b| with scale fractional digits.
func formatBig(b *big.Int, scale uint8) string {
	digits := new(big.Int).Abs(b).String()
	if scale > 0 {
		if len(digits) <= int(scale) {
			digits = strings.Repeat("0", int(scale)-len(digits)+1) + digits
		}
		cut := len(digits) - int(scale)
		digits = digits[:cut] + "." + digits[cut:]
	}
	if b.Sign() < 0 {
		return "-" + digits
	}
	return digits
}

func TestUnitsFromInt64(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   int64
	}{
		{"zero", 0},
		{"one", 1},
		{"minus one", -1},
		{"max int64", math.MaxInt64},
		{"min int64", math.MinInt64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := domain.UnitsFromInt64(tc.in)
			if got, want := unitsToBig(u), big.NewInt(tc.in); got.Cmp(want) != 0 {
				t.Errorf("UnitsFromInt64(%d) = %s, want %s", tc.in, got, want)
			}
			if got, want := u.Sign(), big.NewInt(tc.in).Sign(); got != want {
				t.Errorf("Sign() = %d, want %d", got, want)
			}
			if got, want := u.IsZero(), tc.in == 0; got != want {
				t.Errorf("IsZero() = %v, want %v", got, want)
			}
		})
	}
}

func TestUnitsArithmetic(t *testing.T) {
	const (
		maxU64  = "18446744073709551615" // 2^64-1
		twoTo64 = "18446744073709551616" // 2^64
		maxI64  = "9223372036854775807"  // 2^63-1
		twoTo63 = "9223372036854775808"  // 2^63
		nines38 = "99999999999999999999999999999999999999"
		nines37 = "9999999999999999999999999999999999999"
		tenTo37 = "10000000000000000000000000000000000000"
	)
	for _, tc := range []struct {
		name      string
		a, b      string
		sum, diff string
		cmp       int
	}{
		{"zeros", "0", "0", "0", "0", 0},
		{"carry into hi", maxU64, "1", twoTo64, "18446744073709551614", 1},
		{"borrow from hi", twoTo64, "1", "18446744073709551617", maxU64, 1},
		{"int64 edge", maxI64, "1", twoTo63, "9223372036854775806", 1},
		{"negative across int64", "-" + twoTo63, "-1", "-9223372036854775809", "-9223372036854775807", -1},
		{"negative across uint64", "-" + maxU64, "-1", "-" + twoTo64, "-18446744073709551614", -1},
		{"mixed signs", "-5", "7", "2", "-12", -1},
		{"neg plus pos to zero", "-" + twoTo64, twoTo64, "0", "-36893488147419103232", -1},
		{"38 digits", nines38, "0", nines38, nines38, 1},
		{"38 digits both signs", nines38, "-" + nines38, "0", "-140282366920938463463374607431768211458", 1}, // difference wraps: see TestUnitsAddWithinContractDoesNotWrap
		{"37 digits sum", nines37, "1", tenTo37, "9999999999999999999999999999999999998", 1},
		{"equal big", nines37, nines37, "19999999999999999999999999999999999998", "0", 0},
		{"equal negative big", "-" + nines37, "-" + nines37, "-19999999999999999999999999999999999998", "0", 0},
		{"hi equal lo differs", "36893488147419103233", "36893488147419103232", "73786976294838206465", "1", 1},
		{"negative hi equal lo differs", "-36893488147419103233", "-36893488147419103232", "-73786976294838206465", "-1", -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := unitsFromBig(mustBig(t, tc.a)), unitsFromBig(mustBig(t, tc.b))
			if got := a.Add(b).String(); got != tc.sum {
				t.Errorf("%s + %s = %s, want %s", tc.a, tc.b, got, tc.sum)
			}
			if got := a.Sub(b).String(); got != tc.diff {
				t.Errorf("%s - %s = %s, want %s", tc.a, tc.b, got, tc.diff)
			}
			if got := a.Cmp(b); got != tc.cmp {
				t.Errorf("Cmp(%s, %s) = %d, want %d", tc.a, tc.b, got, tc.cmp)
			}
			if got := b.Cmp(a); got != -tc.cmp {
				t.Errorf("Cmp(%s, %s) = %d, want %d", tc.b, tc.a, got, -tc.cmp)
			}
			if got := a.String(); got != tc.a {
				t.Errorf("String() = %s, want %s", got, tc.a)
			}
		})
	}
}

func TestUnitsFormat(t *testing.T) {
	for _, tc := range []struct {
		name  string
		units string
		scale uint8
		want  string
	}{
		{"zero scale 0", "0", 0, "0"},
		{"zero scale 2", "0", 2, "0.00"},
		{"cents", "1000", 2, "10.00"},
		{"one cent", "1", 2, "0.01"},
		{"minus one cent", "-1", 2, "-0.01"},
		{"negative", "-1050", 2, "-10.50"},
		{"exact digits as scale", "12", 2, "0.12"},
		{"satoshi", "1", 8, "0.00000001"},
		{"wei", "1", 18, "0.000000000000000001"},
		{"uint64 max", "18446744073709551615", 2, "184467440737095516.15"},
		{"across 2^64", "18446744073709551616", 18, "18.446744073709551616"},
		{"negative across 2^63", "-9223372036854775809", 18, "-9.223372036854775809"},
		{"min int64", "-9223372036854775808", 0, "-9223372036854775808"},
		{"38 nines scale 18", "99999999999999999999999999999999999999", 18, "99999999999999999999.999999999999999999"},
		{"-38 nines scale 0", "-99999999999999999999999999999999999999", 0, "-99999999999999999999999999999999999999"},
		{"minus 2^64 plus one", "-18446744073709551615", 2, "-184467440737095516.15"},
		{"minus 2^64", "-18446744073709551616", 0, "-18446744073709551616"},
		// A wrapped sum's edge: its negation wraps to itself.
		{"min int128", "-170141183460469231731687303715884105728", 2, "-1701411834604692317316873037158841057.28"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := unitsFromBig(mustBig(t, tc.units))
			if got := u.Format(tc.scale); got != tc.want {
				t.Errorf("Format(%d) of %s = %q, want %q", tc.scale, tc.units, got, tc.want)
			}
		})
	}
}

func TestUnitsInRangeAtBound(t *testing.T) {
	one := big.NewInt(1)
	for _, tc := range []struct {
		name string
		v    *big.Int
		want bool
	}{
		{"zero", big.NewInt(0), true},
		{"max", unitsMaxBig, true},
		{"max+1", new(big.Int).Add(unitsMaxBig, one), false},
		{"-max", new(big.Int).Neg(unitsMaxBig), true},
		{"-max-1", new(big.Int).Sub(new(big.Int).Neg(unitsMaxBig), one), false},
		{"2^127-1", new(big.Int).Sub(two127, one), false},
		{"-2^127", new(big.Int).Neg(two127), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := unitsFromBig(tc.v).InRange(); got != tc.want {
				t.Errorf("InRange(%s) = %v, want %v", tc.v, got, tc.want)
			}
		})
	}
}

// TestUnitsCheckedAddRefusesWrap: two in-range values can sum past 2^127-1;
// CheckedAdd must say so rather than wrap.
func TestUnitsCheckedAddRefusesWrap(t *testing.T) {
	top := unitsFromBig(unitsMaxBig)
	if got, ok := top.CheckedAdd(top); ok {
		t.Errorf("(10^38-1) + (10^38-1) = %s, ok; want refused", got)
	}
	if got, ok := top.Neg().CheckedAdd(top.Neg()); ok {
		t.Errorf("-(10^38-1) + -(10^38-1) = %s, ok; want refused", got)
	}
	if got, ok := top.CheckedAdd(top.Neg()); !ok || !got.IsZero() {
		t.Errorf("(10^38-1) + -(10^38-1) = %s, %v; want 0, ok", got, ok)
	}
}

// randomBig returns a value spread over magnitudes: small, near 2^63/2^64, and
// up to limit (inclusive), with either sign.
func randomBig(r *rand.Rand, limit *big.Int) *big.Int {
	var b *big.Int
	switch r.IntN(5) {
	case 0:
		b = big.NewInt(r.Int64N(1000))
	case 1: // around 2^64
		b = new(big.Int).Lsh(big.NewInt(1), 64)
		b.Add(b, big.NewInt(r.Int64N(2000)-1000))
	case 2: // around 2^63
		b = new(big.Int).Lsh(big.NewInt(1), 63)
		b.Add(b, big.NewInt(r.Int64N(2000)-1000))
	case 3: // near the limit
		b = new(big.Int).Sub(limit, big.NewInt(r.Int64N(1000)))
	default: // uniform bits below the limit
		b = new(big.Int).SetUint64(r.Uint64())
		b.Lsh(b, 64)
		b.Or(b, new(big.Int).SetUint64(r.Uint64()))
		b.Mod(b, new(big.Int).Add(limit, big.NewInt(1)))
	}
	if b.Cmp(limit) > 0 {
		b.Set(limit)
	}
	if r.IntN(2) == 0 {
		b.Neg(b)
	}
	return b
}

func TestUnitsAgainstBigOracle(t *testing.T) {
	const seed = 20260101
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, seed))
	scales := []uint8{0, 1, 2, 8, 18}
	maxI128 := new(big.Int).Sub(two127, big.NewInt(1))
	for i := range 20000 {
		// Within the documented contract the results are exact; over the full
		// 128-bit range Add and Sub wrap like two's complement.
		limit := unitsMaxBig
		if i%2 == 1 {
			limit = maxI128
		}
		a, b := randomBig(r, limit), randomBig(r, limit)
		ua, ub := unitsFromBig(a), unitsFromBig(b)

		if got := unitsToBig(ua); got.Cmp(a) != 0 {
			t.Fatalf("round trip %s: got %s", a, got)
		}
		if got, want := ua.Add(ub).String(), wrap128(new(big.Int).Add(a, b)).String(); got != want {
			t.Fatalf("%s + %s = %s, want %s", a, b, got, want)
		}
		if got, want := ua.Sub(ub).String(), wrap128(new(big.Int).Sub(a, b)).String(); got != want {
			t.Fatalf("%s - %s = %s, want %s", a, b, got, want)
		}
		if got, want := ua.Neg().String(), wrap128(new(big.Int).Neg(a)).String(); got != want {
			t.Fatalf("-(%s) = %s, want %s", a, got, want)
		}
		if got, want := ua.Cmp(ub), a.Cmp(b); got != want {
			t.Fatalf("Cmp(%s, %s) = %d, want %d", a, b, got, want)
		}
		if got, want := ua.Sign(), a.Sign(); got != want {
			t.Fatalf("Sign(%s) = %d, want %d", a, got, want)
		}
		if got, want := ua.String(), a.String(); got != want {
			t.Fatalf("String() = %s, want %s", got, want)
		}
		scale := scales[r.IntN(len(scales))]
		if got, want := ua.Format(scale), formatBig(a, scale); got != want {
			t.Fatalf("Format(%d) of %s = %s, want %s", scale, a, got, want)
		}
		if got, want := ua.InRange(), new(big.Int).Abs(a).Cmp(unitsMaxBig) <= 0; got != want {
			t.Fatalf("InRange(%s) = %v, want %v", a, got, want)
		}
	}
}

// BenchmarkUnitsFormat formats a running balance as served: one
// allocation, the string's.
func BenchmarkUnitsFormat(b *testing.B) {
	u := domain.UnitsFromInt64(-123_456_789)
	b.ReportAllocs()
	for b.Loop() {
		formatSink = u.Format(2)
	}
}

var formatSink string
