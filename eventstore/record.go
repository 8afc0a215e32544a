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

// AppendCanonical appends the canonical bytes to b.
func (r *Record) AppendCanonical(b []byte) []byte {
	b = append(b, `{"ledger":`...)
	b = strconv.AppendQuote(b, r.Ledger)
	b = append(b, `,"position":`...)
	b = strconv.AppendUint(b, r.Position, 10)
	b = append(b, `,"type":`...)
	b = strconv.AppendQuote(b, r.Type)
	b = append(b, `,"schema_version":`...)
	b = strconv.AppendInt(b, int64(r.SchemaVersion), 10)
	b = append(b, `,"recorded_at":"`...)
	b = r.RecordedAt.UTC().AppendFormat(b, recordedAtLayout)
	b = append(b, `","command_id":`...)
	b = strconv.AppendQuote(b, r.CommandID)
	b = append(b, `,"payload":`...)
	b = append(b, r.Payload...)
	return append(b, '}')
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
