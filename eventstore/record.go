// Package eventstore is the Postgres event store: the append-only, hash-chained
// log of every ledger, and the source of truth for everything else.
package eventstore

import (
	"crypto/sha256"
	"strconv"
	"time"
)

// HashSize is the size of a SHA-256 hash.
const HashSize = sha256.Size

// Hash is a SHA-256 hash of the chain.
type Hash [HashSize]byte

// Record is one event in the log with its envelope.
type Record struct {
	Ledger        string
	Position      uint64
	Type          string
	SchemaVersion int
	// RecordedAt is kept to the microsecond: Postgres timestamptz precision, so
	// that what is hashed is what is stored.
	RecordedAt time.Time
	// CommandID is the id of the command that produced the event (transfer id,
	// account id, asset code).
	CommandID string
	// Payload is the event's canonical JSON.
	Payload  []byte
	PrevHash Hash
	Hash     Hash
}

// recordedAtLayout fixes the text of recorded_at in the hashed bytes.
const recordedAtLayout = "2006-01-02T15:04:05.000000Z"

// Canonical returns the bytes the hash covers: the envelope, less the hashes, as
// JSON with a fixed key order. An auditor can recompute it from a stored row.
func (r *Record) Canonical() []byte { return r.AppendCanonical(make([]byte, 0, 160+len(r.Payload))) }

// AppendCanonical appends the canonical bytes to b. Its strings are quoted
// as strconv.AppendQuote quotes them and recorded_at is written as
// time.Time.AppendFormat writes recordedAtLayout, by hand on the usual
// inputs (the writer, every projection and every audit hash each event):
// FuzzCanonicalFastPaths holds the two to the same bytes.
func (r *Record) AppendCanonical(b []byte) []byte {
	b = append(b, `{"ledger":`...)
	b = appendQuote(b, r.Ledger)
	b = append(b, `,"position":`...)
	b = strconv.AppendUint(b, r.Position, 10)
	b = append(b, `,"type":`...)
	b = appendQuote(b, r.Type)
	b = append(b, `,"schema_version":`...)
	b = strconv.AppendInt(b, int64(r.SchemaVersion), 10)
	b = append(b, `,"recorded_at":"`...)
	b = appendRecordedAt(b, r.RecordedAt)
	b = append(b, `","command_id":`...)
	b = appendQuote(b, r.CommandID)
	b = append(b, `,"payload":`...)
	b = append(b, r.Payload...)
	return append(b, '}')
}

// appendQuote is strconv.AppendQuote(b, s): printable ASCII other than the
// quote and the backslash is written as it is, which is what AppendQuote
// does with it; anything else goes to AppendQuote.
func appendQuote(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return strconv.AppendQuote(b, s)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// appendRecordedAt is t.UTC().AppendFormat(b, recordedAtLayout) for years
// 0 to 9999, which that layout writes in four digits.
func appendRecordedAt(b []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(b, recordedAtLayout)
	}
	hour, minute, sec := t.Clock()
	us := t.Nanosecond() / 1000
	b = appendDigits(b, year, 4)
	b = append(b, '-')
	b = appendDigits(b, int(month), 2)
	b = append(b, '-')
	b = appendDigits(b, day, 2)
	b = append(b, 'T')
	b = appendDigits(b, hour, 2)
	b = append(b, ':')
	b = appendDigits(b, minute, 2)
	b = append(b, ':')
	b = appendDigits(b, sec, 2)
	b = append(b, '.')
	b = appendDigits(b, us, 6)
	return append(b, 'Z')
}

// appendDigits appends v, 0 <= v < 10^n, in exactly n decimal digits.
func appendDigits(b []byte, v, n int) []byte {
	b = append(b, "000000"[:n]...)
	for i := len(b) - 1; v > 0; i-- {
		b[i] = byte('0' + v%10)
		v /= 10
	}
	return b
}

// Seal sets r's PrevHash to prev and Hash to SHA-256(prev ‖ canonical bytes).
func (r *Record) Seal(prev Hash) {
	r.PrevHash = prev
	r.Hash = r.computeHash()
}

func (r *Record) computeHash() Hash {
	// On the stack for the usual event; one hash call, no digest allocation.
	var buf [768]byte
	b := append(buf[:0], r.PrevHash[:]...)
	b = r.AppendCanonical(b)
	return sha256.Sum256(b)
}

// VerifyHash reports whether r's Hash matches its content and PrevHash.
func (r *Record) VerifyHash() bool { return r.computeHash() == r.Hash }
