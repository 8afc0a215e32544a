package domain

import (
	"fmt"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// AppendEvent appends the canonical JSON of e to b: the same bytes as
// MarshalEvent (encoding/json), written without reflection because the writer
// encodes every event it decides. Tests hold the two equal.
func AppendEvent(b []byte, e Event) []byte {
	switch e := e.(type) {
	case TransferCommitted:
		return appendTransferCommitted(b, &e)
	case AccountOpened:
		return appendAccountOpened(b, &e)
	case AssetDefined:
		b = append(b, `{"code":`...)
		b = AppendJSONString(b, e.Code)
		b = append(b, `,"scale":`...)
		b = strconv.AppendUint(b, uint64(e.Scale), 10)
		return append(b, '}')
	}
	// The rarer events take the reflective path: the same bytes, by definition.
	out, err := MarshalEvent(e)
	if err != nil {
		panic(fmt.Sprintf("domain: event does not encode: %v", err))
	}
	return append(b, out...)
}

func appendTransferCommitted(b []byte, e *TransferCommitted) []byte {
	b = append(b, `{"id":`...)
	b = AppendJSONString(b, e.ID)
	b = append(b, `,"postings":`...)
	if e.Postings == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range e.Postings {
			if i > 0 {
				b = append(b, ',')
			}
			p := &e.Postings[i]
			b = append(b, `{"debit":`...)
			b = AppendJSONString(b, p.Debit)
			b = append(b, `,"credit":`...)
			b = AppendJSONString(b, p.Credit)
			b = append(b, `,"asset":`...)
			b = AppendJSONString(b, p.Asset)
			b = append(b, `,"amount":"`...)
			b = append(b, p.Amount.String()...)
			b = append(b, `"}`...)
		}
		b = append(b, ']')
	}
	if e.Reference != "" {
		b = append(b, `,"reference":`...)
		b = AppendJSONString(b, e.Reference)
	}
	if len(e.Metadata) > 0 {
		b = append(b, `,"metadata":`...)
		b = AppendJSONStringMap(b, e.Metadata)
	}
	b = append(b, `,"effective_at":"`...)
	b = e.EffectiveAt.AppendFormat(b, time.RFC3339Nano)
	return append(b, `"}`...)
}

func appendAccountOpened(b []byte, e *AccountOpened) []byte {
	b = append(b, `{"id":`...)
	b = AppendJSONString(b, e.ID)
	b = append(b, `,"asset":`...)
	b = AppendJSONString(b, e.Asset)
	b = append(b, `,"normal_balance":"`...)
	b = append(b, e.Normal.String()...)
	b = append(b, '"')
	if e.MinBalance != nil {
		b = append(b, `,"min_balance":"`...)
		b = append(b, e.MinBalance.String()...)
		b = append(b, '"')
	}
	if e.MaxBalance != nil {
		b = append(b, `,"max_balance":"`...)
		b = append(b, e.MaxBalance.String()...)
		b = append(b, '"')
	}
	if len(e.Metadata) > 0 {
		b = append(b, `,"metadata":`...)
		b = AppendJSONStringMap(b, e.Metadata)
	}
	return append(b, '}')
}

// AppendJSONStringMap writes m as a JSON object with its keys sorted, as
// encoding/json does.
func AppendJSONStringMap(b []byte, m map[string]string) []byte {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendJSONString(b, k)
		b = append(b, ':')
		b = AppendJSONString(b, m[k])
	}
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

// AppendJSONString writes s as a JSON string exactly as encoding/json does with
// HTML escaping on: <, > and & as \u00XX, U+2028 and U+2029 escaped, invalid
// UTF-8 replaced by U+FFFD.
func AppendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
