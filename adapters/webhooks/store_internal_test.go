package webhooks

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// TestStorableError: an error's text is kept whole up to errorBytesMax
// bytes, cut between two runes past it, and made valid UTF-8 without NUL
// first: PostgreSQL refuses a row with invalid UTF-8 or NUL, which used
// to come from a cut at a byte count inside a rune.
func TestStorableError(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		in   string
		want string
	}{
		{"short", "HTTP 500", "HTTP 500"},
		{"at the bound", strings.Repeat("a", errorBytesMax), strings.Repeat("a", errorBytesMax)},
		{"past it, ASCII", strings.Repeat("a", errorBytesMax+1), strings.Repeat("a", errorBytesMax)},
		{"past it, a rune across the bound", "a" + strings.Repeat("é", errorBytesMax/2),
			"a" + strings.Repeat("é", errorBytesMax/2-1)},
		{"past it, runes up to the bound", strings.Repeat("é", errorBytesMax/2+1), strings.Repeat("é", errorBytesMax/2)},
		{"four-byte runes", "ab" + strings.Repeat("😀", errorBytesMax/4), "ab" + strings.Repeat("😀", errorBytesMax/4-1)},
		{"invalid UTF-8", "status \xc3\x28 \xff", "status \uFFFD( \uFFFD"},
		{"NUL", "header \x00 value", "header \uFFFD value"},
	} {
		got := storableError(c.in)
		if got != c.want {
			t.Errorf("%s: %q (%d bytes), want %q (%d bytes)", c.name, got, len(got), c.want, len(c.want))
		}
		if len(got) > errorBytesMax || !utf8.ValidString(got) || strings.ContainsRune(got, 0) {
			t.Errorf("%s: %d bytes, valid UTF-8 %v: not storable", c.name, len(got), utf8.ValidString(got))
		}
	}
}
