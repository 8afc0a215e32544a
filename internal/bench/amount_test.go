package bench

import (
	"errors"
	"math/big"
	"testing"
)

func TestParseMinor(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string // minor units; "" when ErrBadDecimal is wanted
	}{
		{"two digits", "123.45", "12345"},
		{"zero", "0.00", "0"},
		{"whole", "7", "700"},
		{"one digit", "1.5", "150"},
		{"negative", "-1.20", "-120"},
		{"negative zero", "-0.00", "0"},
		{"trailing zeros past scale", "1.2300", "123"},
		{"38 digits", "123456789012345678901234567890123456.78", "12345678901234567890123456789012345678"},
		{"too many digits", "1.234", ""},
		{"empty", "", ""},
		{"sign only", "-", ""},
		{"no whole part", ".5", ""},
		{"no fraction", "12.", ""},
		{"exponent", "1e3", ""},
		{"plus sign", "+1.00", ""},
		{"two points", "1.2.3", ""},
		{"space", " 1.00", ""},
		{"too long", "1" + string(make([]byte, decimalLenMax)), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseMinor(tt.in, assetScale)
			if tt.want == "" {
				if !errors.Is(err, ErrBadDecimal) {
					t.Fatalf("parseMinor(%q) = %v, %v; want ErrBadDecimal", tt.in, got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseMinor(%q): %v", tt.in, err)
			}
			if got.String() != tt.want {
				t.Errorf("parseMinor(%q) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}

func TestSumMinor(t *testing.T) {
	tests := []struct {
		name    string
		in      []string
		want    string
		wantErr bool
	}{
		{"none", nil, "0", false},
		{"one", []string{"100.00"}, "10000", false},
		{"cents add up exactly", []string{"0.10", "0.20", "0.70"}, "100", false},
		{"mixed scales and signs", []string{"1", "2.5", "-0.25", "0.05"}, "330", false},
		{"past int64", []string{"92233720368547758.07", "0.01"}, "9223372036854775808", false},
		{"bad value", []string{"1.00", "x"}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := sumMinor(tt.in, assetScale)
			if tt.wantErr {
				if !errors.Is(err, ErrBadDecimal) {
					t.Fatalf("sumMinor(%q) = %v, %v; want ErrBadDecimal", tt.in, got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("sumMinor(%q): %v", tt.in, err)
			}
			if got.String() != tt.want {
				t.Errorf("sumMinor(%q) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}

func TestFormatMinor(t *testing.T) {
	tests := []struct {
		name  string
		in    int64
		scale int
		want  string
	}{
		{"zero", 0, 2, "0.00"},
		{"one cent", 1, 2, "0.01"},
		{"amount min", amountMinorMin, assetScale, "0.01"},
		{"amount max", amountMinorMax, assetScale, "100.00"},
		{"whole and cents", 12345, 2, "123.45"},
		{"negative cents", -5, 2, "-0.05"},
		{"negative", -12345, 2, "-123.45"},
		{"scale zero", 42, 0, "42"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := formatMinor(big.NewInt(tt.in), tt.scale)
			if got != tt.want {
				t.Errorf("formatMinor(%d, %d) = %q, want %q", tt.in, tt.scale, got, tt.want)
			}
			back, err := parseMinor(got, tt.scale)
			if err != nil || back.Int64() != tt.in {
				t.Errorf("parseMinor(%q) = %v, %v; want %d", got, back, err, tt.in)
			}
		})
	}
}
