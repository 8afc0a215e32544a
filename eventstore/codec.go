package eventstore

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// AppendJSON appends r as one JSON object, its canonical envelope plus the two
// hashes in hex: the form in which records travel (NATS messages, exports).
func (r *Record) AppendJSON(b []byte) []byte {
	c := r.Canonical()
	b = append(b, c[:len(c)-1]...)
	b = append(b, `,"prev_hash":"`...)
	b = hex.AppendEncode(b, r.PrevHash[:])
	b = append(b, `","hash":"`...)
	b = hex.AppendEncode(b, r.Hash[:])
	return append(b, `"}`...)
}

type recordJSON struct {
	Ledger        string          `json:"ledger"`
	Position      uint64          `json:"position"`
	Type          string          `json:"type"`
	SchemaVersion int             `json:"schema_version"`
	RecordedAt    time.Time       `json:"recorded_at"`
	CommandID     string          `json:"command_id"`
	Payload       json.RawMessage `json:"payload"`
	PrevHash      string          `json:"prev_hash"`
	Hash          string          `json:"hash"`
}

// ParseRecordJSON reads a record written by AppendJSON. It does not verify the
// hash: call VerifyHash.
//
// Errors: the JSON or hex error of a malformed record.
func ParseRecordJSON(b []byte) (Record, error) {
	var j recordJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return Record{}, fmt.Errorf("parse record: %w", err)
	}
	r := Record{Ledger: j.Ledger, Position: j.Position, Type: j.Type, SchemaVersion: j.SchemaVersion,
		RecordedAt: j.RecordedAt.UTC(), CommandID: j.CommandID, Payload: []byte(j.Payload)}
	if err := decodeHash(&r.PrevHash, j.PrevHash); err != nil {
		return Record{}, fmt.Errorf("parse record %d: prev_hash: %w", j.Position, err)
	}
	if err := decodeHash(&r.Hash, j.Hash); err != nil {
		return Record{}, fmt.Errorf("parse record %d: hash: %w", j.Position, err)
	}
	return r, nil
}

func decodeHash(h *Hash, s string) error {
	if hex.DecodedLen(len(s)) != HashSize {
		return fmt.Errorf("want %d hex digits, got %d", 2*HashSize, len(s))
	}
	_, err := hex.Decode(h[:], []byte(s))
	return err
}
