package servicelog

import (
	"encoding/hex"
	"fmt"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/ledgerd/ledger/audit"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/protoread"
)

// ReadEvents' messages are read here by hand (protoread), into records:
// protobuf's unmarshalling (a LogEvent and seven strings an event) and then
// a record built from it (the payload copied, the hashes decoded from hex)
// were a fifth of a replay's CPU in ledgerctl. The message's bytes are copied
// once; each record's payload is a slice of them, so a record kept keeps
// its whole message (verify's look-back ring of 65,536 records holds about
// 66 messages, not 65,536 payloads). TestEventsCodec holds the records to
// those RecordOf makes of protobuf's LogEvents.

// eventPage is a ReadEventsResponse read as records. A record that cannot
// be one (a hash that is not 64 hex digits) ends it: malformed says why,
// and recs holds the records before it.
type eventPage struct {
	recs      []eventstore.Record
	malformed error
	// ledger and typ are the last strings read, reused while they repeat:
	// every event of a ledger names it, and a log has few types.
	ledger, typ string
}

// ReadWire reads the message into records (protoread.Reader).
func (p *eventPage) ReadWire(data mem.BufferSlice) error { return p.decode(data.Materialize()) }

// Field numbers of ReadEventsResponse, LogEvent and Timestamp.
const (
	responseEvents = 1

	eventLedger        = 1
	eventPosition      = 2
	eventType          = 3
	eventSchemaVersion = 4
	eventRecordedAt    = 5
	eventCommandID     = 6
	eventPayload       = 7
	eventPrevHash      = 8
	eventHash          = 9
)

// decode reads a ReadEventsResponse, as protobuf would: a field of a number
// or wire type it does not expect is skipped, a scalar field given twice
// keeps its last value, and a string that is not UTF-8 fails the message.
//
// Errors: for bytes that are not a protobuf message.
func (p *eventPage) decode(b []byte) error {
	p.recs, p.malformed = p.recs[:0], nil
	for len(b) > 0 {
		var f protoread.Field
		var err error
		if f, b, err = protoread.Next(b); err != nil {
			return fmt.Errorf("events: %w", err)
		}
		if f.Num != responseEvents || f.Type != protowire.BytesType || p.malformed != nil {
			continue // what follows a malformed event is not handed on
		}
		r, err := p.event(f.Bytes)
		if err != nil {
			return err
		}
		if p.malformed == nil {
			p.recs = append(p.recs, r)
		}
	}
	return nil
}

// event reads one LogEvent into a record; its payload is a slice of b.
//
// Errors: for bytes that are not a LogEvent.
func (p *eventPage) event(b []byte) (eventstore.Record, error) {
	var r eventstore.Record
	var recorded [2]int64 // seconds, nanos
	var hashes [2][]byte
	for len(b) > 0 {
		var f protoread.Field
		var err error
		if f, b, err = protoread.Next(b); err != nil {
			return r, fmt.Errorf("event: %w", err)
		}
		switch {
		case f.Type == protowire.VarintType && f.Num == eventPosition:
			r.Position = f.V
		case f.Type == protowire.VarintType && f.Num == eventSchemaVersion:
			r.SchemaVersion = int(uint32(f.V))
		case f.Type != protowire.BytesType:
		case f.Num == eventLedger:
			p.ledger = reuse(p.ledger, f.Bytes)
			r.Ledger = p.ledger
		case f.Num == eventType:
			p.typ = reuse(p.typ, f.Bytes)
			r.Type = p.typ
		case f.Num == eventRecordedAt:
			if err := protoread.Timestamp(f.Bytes, &recorded); err != nil {
				return r, fmt.Errorf("recorded_at: %w", err)
			}
		case f.Num == eventCommandID:
			r.CommandID = string(f.Bytes)
		case f.Num == eventPayload:
			r.Payload = f.Bytes[:len(f.Bytes):len(f.Bytes)]
		case f.Num == eventPrevHash:
			hashes[0] = f.Bytes
		case f.Num == eventHash:
			hashes[1] = f.Bytes
		}
	}
	if !utf8.ValidString(r.Ledger) || !utf8.ValidString(r.Type) || !utf8.ValidString(r.CommandID) || !utf8.Valid(r.Payload) ||
		!utf8.Valid(hashes[0]) || !utf8.Valid(hashes[1]) {
		return r, fmt.Errorf("event at %d: a string field is not UTF-8", r.Position)
	}
	r.RecordedAt = time.Unix(recorded[0], recorded[1]).UTC()
	if p.malformed = hashOf(&r.PrevHash, hashes[0], "prev_hash", r.Position); p.malformed == nil {
		p.malformed = hashOf(&r.Hash, hashes[1], "hash", r.Position)
	}
	return r, nil
}

// reuse is last when v spells it, else v as a new string.
func reuse(last string, v []byte) string {
	if string(v) == last {
		return last
	}
	return string(v)
}

// hashOf decodes a hash from its hex text.
//
// Errors: *audit.MalformedError for text that is not 64 hex digits.
func hashOf(dst *eventstore.Hash, text []byte, name string, pos uint64) error {
	if len(text) != 2*eventstore.HashSize {
		return &audit.MalformedError{Position: pos,
			Err: fmt.Errorf("%s: %d hex digits, want %d", name, len(text), 2*eventstore.HashSize)}
	}
	if _, err := hex.Decode(dst[:], text); err != nil {
		return &audit.MalformedError{Position: pos, Err: fmt.Errorf("%s: %w", name, err)}
	}
	return nil
}
