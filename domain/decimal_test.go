package domain_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/ledgerd/ledger/domain"
)

func TestParseDecimal(t *testing.T) {
	nines38 := strings.Repeat("9", 38)
	for _, tc := range []struct {
		name   string
		in     string
		ok     bool
		coef   string // want coefficient in units, when ok
		frac   uint8  // want fractional digits, when ok
		string string // want String(), when ok
	}{
		{"integer", "10", true, "10", 0, "10"},
		{"two decimals", "10.50", true, "1050", 2, "10.50"},
		{"small fraction", "0.001", true, "1", 3, "0.001"},
		{"negative", "-3", true, "-3", 0, "-3"},
		{"negative fraction", "-0.05", true, "-5", 2, "-0.05"},
		{"zero", "0", true, "0", 0, "0"},
		{"zero with decimals", "0.00", true, "0", 2, "0.00"},
		{"zero point five", "0.5", true, "5", 1, "0.5"},
		{"trailing zeros say the precision", "12.500", true, "12500", 3, "12.500"},
		{"38 digits", nines38, true, nines38, 0, nines38},
		{"negative 38 digits", "-" + nines38, true, "-" + nines38, 0, "-" + nines38},
		{"38 digits with point", "1234567890123456789.0123456789012345678", true, "12345678901234567890123456789012345678", 19, "1234567890123456789.0123456789012345678"},
		{"zeros after the point do not count", "0.0000000000" + nines38[:12], true, nines38[:12], 22, "0.0000000000" + nines38[:12]},
		{"38 fractional digits", "0." + strings.Repeat("0", 37) + "1", true, "1", 38, "0." + strings.Repeat("0", 37) + "1"},
		{"64 bytes", "0." + strings.Repeat("0", 61) + "1", true, "1", 62, "0." + strings.Repeat("0", 61) + "1"},

		{"39 digits", "1" + nines38, false, "", 0, ""},
		{"39 digits with point", "1" + nines38[:19] + "." + nines38[19:], false, "", 0, ""},
		{"negative 39 digits", "-1" + nines38, false, "", 0, ""},
		{"65 bytes", "0." + strings.Repeat("0", 62) + "1", false, "", 0, ""},
		{"leading zeros", "007", false, "", 0, ""},
		{"leading zero before point", "01.00", false, "", 0, ""},
		{"two zeros", "00", false, "", 0, ""},
		{"two zeros before point", "00.5", false, "", 0, ""},
		{"negative leading zero", "-01", false, "", 0, ""},
		{"negative zero", "-0", false, "", 0, ""},
		{"negative zero with decimals", "-0.00", false, "", 0, ""},
		{"plus zero", "+0", false, "", 0, ""},
		{"plus decimal", "+1.50", false, "", 0, ""},
		{"exponent upper", "1E3", false, "", 0, ""},
		{"tab", "1\t", false, "", 0, ""},
		{"newline", "1\n", false, "", 0, ""},
		{"NUL", "1\x00", false, "", 0, ""},
		{"invalid UTF-8", "1\xff", false, "", 0, ""},
		{"exponent", "1e3", false, "", 0, ""},
		{"plus sign", "+1", false, "", 0, ""},
		{"no integer part", ".5", false, "", 0, ""},
		{"negative no integer part", "-.5", false, "", 0, ""},
		{"no fraction after point", "5.", false, "", 0, ""},
		{"empty", "", false, "", 0, ""},
		{"sign only", "-", false, "", 0, ""},
		{"two points", "1.2.3", false, "", 0, ""},
		{"double minus", "--1", false, "", 0, ""},
		{"leading space", " 1", false, "", 0, ""},
		{"trailing space", "1 ", false, "", 0, ""},
		{"comma", "1,5", false, "", 0, ""},
		{"underscore", "1_000", false, "", 0, ""},
		{"hex", "0x10", false, "", 0, ""},
		{"NaN", "NaN", false, "", 0, ""},
		{"Inf", "Inf", false, "", 0, ""},
		{"unicode digit", "١", false, "", 0, ""},
		{"trailing minus", "1-", false, "", 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := domain.ParseDecimal(tc.in)
			if !tc.ok {
				if !errors.Is(err, domain.ErrInvalidAmount) {
					t.Fatalf("ParseDecimal(%q) = %v, %v; want ErrInvalidAmount", tc.in, d, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseDecimal(%q): %v", tc.in, err)
			}
			coef, frac := d.Parts()
			if coef.String() != tc.coef || frac != tc.frac {
				t.Errorf("ParseDecimal(%q) = coef %s frac %d, want coef %s frac %d", tc.in, coef, frac, tc.coef, tc.frac)
			}
			if got := d.String(); got != tc.string {
				t.Errorf("String() = %q, want %q", got, tc.string)
			}
			if got, want := d.Sign(), coef.Sign(); got != want {
				t.Errorf("Sign() = %d, want %d", got, want)
			}
		})
	}
}

func TestDecimalUnits(t *testing.T) {
	nines := func(n int) string { return strings.Repeat("9", n) }
	for _, tc := range []struct {
		name  string
		in    string
		scale uint8
		want  string // units, or "" for ErrInvalidAmount
	}{
		{"integer to cents", "10", 2, "1000"},
		{"one decimal to cents", "10.5", 2, "1050"},
		{"exact scale", "10.50", 2, "1050"},
		{"negative", "-3", 2, "-300"},
		{"negative fraction", "-0.05", 2, "-5"},
		{"zero at scale 18", "0", 18, "0"},
		{"one wei", "0.000000000000000001", 18, "1"},
		{"one ether", "1", 18, "1000000000000000000"},
		{"scale 0", "42", 0, "42"},
		{"too many fractional digits", "10.505", 2, ""},
		{"trailing zero beyond scale", "10.500", 2, ""},
		{"fraction at scale 0", "0.5", 0, ""},
		{"negative too many fractional digits", "-0.001", 2, ""},
		{"38 fractional digits at scale 18", "0." + strings.Repeat("0", 37) + "1", 18, ""},

		// The 38-digit bound applies to the result in minor units.
		{"38 digits at scale 0", nines(38), 0, nines(38)},
		{"38 digits at scale 1", nines(38), 1, ""},
		{"36 digits at scale 2", nines(36), 2, nines(36) + "00"},
		{"37 digits at scale 2", nines(37), 2, ""},
		{"negative 37 digits at scale 1", "-" + nines(37), 1, "-" + nines(37) + "0"},
		{"negative 38 digits at scale 1", "-" + nines(38), 1, ""},
		{"20 digits at scale 18", nines(20), 18, nines(20) + strings.Repeat("0", 18)},
		{"21 digits at scale 18", nines(21), 18, ""},
		{"38 digits at scale 18", nines(38), 18, ""},
		{"38 digits with 18 decimals at scale 18", nines(20) + "." + nines(18), 18, nines(38)},
		{"10^20 at scale 18", "1" + strings.Repeat("0", 20), 18, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := domain.MustDecimal(tc.in)
			u, err := d.Units(tc.scale)
			if tc.want == "" {
				if !errors.Is(err, domain.ErrInvalidAmount) {
					t.Fatalf("%s.Units(%d) = %s, %v; want ErrInvalidAmount", tc.in, tc.scale, u, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("%s.Units(%d): %v", tc.in, tc.scale, err)
			}
			if got := u.String(); got != tc.want {
				t.Errorf("%s.Units(%d) = %s, want %s", tc.in, tc.scale, got, tc.want)
			}
		})
	}
}

func TestMustDecimalPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("MustDecimal(\"1e3\") did not panic")
		}
	}()
	domain.MustDecimal("1e3")
}
