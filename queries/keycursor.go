package queries

import (
	"encoding/base64"
	"fmt"
)

// A key cursor holds the last key of a page (an asset code, a category
// name) after a format byte, so that a later format can tell its own
// cursors from these: ListAssets' and ListCategories' cursors.
const keyCursorVersion = 1

// encodeKeyCursor writes the cursor of the page that ended at key.
func encodeKeyCursor(key string) string {
	return base64.RawURLEncoding.EncodeToString(append([]byte{keyCursorVersion}, key...))
}

// decodeKeyCursor reads a key cursor whose key is at most keyMax bytes and
// valid; "" is the start.
//
// Errors: bad, wrapped.
func decodeKeyCursor(cursor string, keyMax int, valid func(string) bool, bad error) (string, error) {
	if cursor == "" {
		return "", nil
	}
	if len(cursor) > base64.RawURLEncoding.EncodedLen(1+keyMax) {
		return "", fmt.Errorf("cursor of %d bytes: %w", len(cursor), bad)
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(cursor)
	if err != nil || len(b) < 2 || b[0] != keyCursorVersion || !valid(string(b[1:])) {
		return "", fmt.Errorf("cursor %.40q: %w", cursor, bad)
	}
	return string(b[1:]), nil
}
