package queries

import (
	"encoding/json"
	"strings"
)

// decodeMetadata reads a metadata column's JSON text, an object of
// strings, as encoding/json reads it into a map[string]string (nil for
// null, empty for {}). jsonb's own text (no escapes) is read by
// scanMetadata: for an object of two short strings, 0.3–0.4 µs and three
// allocations, against encoding/json's 1.1 µs and twelve, through
// reflection (BenchmarkDecodeMetadata).
//
// Errors: encoding/json's, for text that is not such an object.
func decodeMetadata(b []byte) (map[string]string, error) {
	if m, ok := scanMetadata(b); ok {
		return m, nil
	}
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	return m, nil
}

// scanMetadata reads an object of strings whose strings have no escapes,
// control characters or invalid UTF-8; ok is false for anything else,
// which decodeMetadata leaves to encoding/json. It reads the text twice:
// once to check it and size the map and the strings, allocating nothing
// (what it leaves to encoding/json costs it no garbage), once to fill
// them. The keys and values are cut from one string. A key given twice
// keeps its last value, as encoding/json's.
func scanMetadata(b []byte) (_ map[string]string, ok bool) {
	n, size, ok := metadataPairs(b, nil)
	if !ok {
		return nil, false
	}
	m := make(map[string]string, n)
	if n > 0 {
		var all strings.Builder
		all.Grow(size)
		metadataPairs(b, func(key, value []byte) {
			all.Write(key)
			all.Write(value)
		})
		text, at := all.String(), 0
		metadataPairs(b, func(key, value []byte) {
			k, v := at+len(key), at+len(key)+len(value)
			m[text[at:k]], at = text[k:v], v
		})
	}
	return m, true
}

// metadataPairs reads an object of strings (scanMetadata), handing each
// pair's bytes to pair when it is not nil, and returns the pairs and the
// bytes of their keys and values.
func metadataPairs(b []byte, pair func(key, value []byte)) (n, size int, ok bool) {
	s := jsonText{b: b}
	if !s.eat('{') {
		return 0, 0, false
	}
	if s.eat('}') {
		return 0, 0, s.end()
	}
	for {
		key, ok := s.strBytes()
		if !ok || !s.eat(':') {
			return 0, 0, false
		}
		value, ok := s.strBytes()
		if !ok {
			return 0, 0, false
		}
		if n, size = n+1, size+len(key)+len(value); pair != nil {
			pair(key, value)
		}
		if s.eat('}') {
			return n, size, s.end()
		}
		if !s.eat(',') {
			return 0, 0, false
		}
	}
}
