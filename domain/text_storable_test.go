package domain_test

import (
	"testing"
	"unicode/utf8"

	"github.com/ledgerd/ledger/domain"
)

// TestStorableText: invalid UTF-8 and NUL become U+FFFD, and a cut falls
// between two runes, within the bound.
func TestStorableText(t *testing.T) {
	for _, tc := range []struct {
		in   string
		max  int
		want string
	}{
		{"ok", 10, "ok"},
		{"a\x00b\xffc", 20, "a\uFFFDb\uFFFDc"},
		{"ab€", 4, "ab"}, // € is 3 bytes: cut before it
		{"€", 2, ""},
	} {
		got := domain.StorableText(tc.in, tc.max)
		if got != tc.want || len(got) > tc.max || !utf8.ValidString(got) {
			t.Errorf("StorableText(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
		}
	}
}
