package domain

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Limits on names and labels. Every one is a wire contract: documented in the
// proto and checked here, once.
const (
	LedgerNameLenMax    = 63
	AssetCodeLenMax     = 16
	IDLenMax            = 128
	ScaleMax            = 18
	ReferenceLenMax     = 256
	MetadataKeysMax     = 32
	MetadataBytesMax    = 4096
	MetadataKeyLenMax   = 64
	PostingsPerTransfer = 64
)

// ValidLedgerName reports whether s matches [a-z0-9][a-z0-9-]{0,62}.
func ValidLedgerName(s string) bool {
	if len(s) == 0 || len(s) > LedgerNameLenMax || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// ValidAssetCode reports whether s matches [A-Z][A-Z0-9_]{0,15}.
func ValidAssetCode(s string) bool {
	if len(s) == 0 || len(s) > AssetCodeLenMax || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// ValidID reports whether s matches [A-Za-z0-9:_.@-]{1,128}: account and
// transfer ids.
func ValidID(s string) bool { return idBytes(s, IDLenMax) }

// idBytes reports whether s is 1..n bytes of [A-Za-z0-9:_.@-].
func idBytes(s string, n int) bool {
	if len(s) == 0 || len(s) > n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !idByte(s[i]) {
			return false
		}
	}
	return true
}

// ValidCommandID reports whether s may be an event's command id: an id, an
// asset code, a statement line's external id (which may hold '/'), or an
// alert's id (a RaiseAlert's, an alert's FreezeAccount's), which joins a
// ledger, a position, a rule and an account id, so [A-Za-z0-9:_.@/-]{1,512}
// (AlertIDLenMax).
func ValidCommandID(s string) bool { return slashedID(s, AlertIDLenMax) }

// slashedID reports whether s matches [A-Za-z0-9:_.@/-]{1,max}: an id's
// bytes and '/'.
func slashedID(s string, max int) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c != '/' && !idByte(c) {
			return false
		}
	}
	return true
}

// idByte reports whether c may stand in an id: [A-Za-z0-9:_.@-].
func idByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == ':' || c == '_' || c == '.' || c == '@' || c == '-'
}

func checkID(field, s string) error {
	if !ValidID(s) {
		return fieldErrf(field, ErrInvalidField, "%q must match [A-Za-z0-9:_.@-]{1,%d}", truncate(s), IDLenMax)
	}
	return nil
}

func checkAssetCode(field, s string) error {
	if !ValidAssetCode(s) {
		return fieldErrf(field, ErrInvalidField, "%q must match [A-Z][A-Z0-9_]{0,%d}", truncate(s), AssetCodeLenMax-1)
	}
	return nil
}

// StorableText is s as a text field takes it (validText): invalid UTF-8
// and NUL replaced by U+FFFD, then cut to at most max bytes between two
// runes. For what quotes the outside world, an error's text, into a field
// or a column.
func StorableText(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.ReplaceAll(s, "\x00", "\uFFFD")
	if len(s) <= max {
		return s
	}
	for max > 0 && !utf8.RuneStart(s[max]) {
		max--
	}
	return s[:max]
}

// validText reports whether s is valid UTF-8 without NUL: what PostgreSQL's
// text and jsonb can hold, and what JSON encoding keeps byte for byte (invalid
// UTF-8 would be replaced, and a retry of the same bytes would then differ).
func validText(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}

// checkMetadata bounds a label map: keys, key length and total bytes.
func checkMetadata(field string, m map[string]string) error {
	if len(m) > MetadataKeysMax {
		return fieldErrf(field, ErrInvalidField, "%d keys, at most %d", len(m), MetadataKeysMax)
	}
	total := 0
	for k, v := range m {
		if len(k) == 0 || len(k) > MetadataKeyLenMax {
			return fieldErrf(field, ErrInvalidField, "key %q must have 1..%d bytes", truncate(k), MetadataKeyLenMax)
		}
		if !validText(k) || !validText(v) {
			return fieldErrf(field, ErrInvalidField, "key %q: keys and values must be UTF-8 without NUL", truncate(k))
		}
		total += len(k) + len(v)
	}
	if total > MetadataBytesMax {
		return fieldErrf(field, ErrInvalidField, "%d bytes, at most %d", total, MetadataBytesMax)
	}
	return nil
}

// truncate keeps error messages bounded when the input is not.
func truncate(s string) string {
	const n = 40
	if len(s) <= n {
		return s
	}
	return s[:n] + fmt.Sprintf("…(%d bytes)", len(s))
}
