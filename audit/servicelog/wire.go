package servicelog

import (
	"encoding/hex"
	"fmt"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/ledgerd/ledger/audit"
	"github.com/ledgerd/ledger/eventstore"

	// The proto codec requests go through registers itself on import.
	_ "google.golang.org/grpc/encoding/proto"
)

// ReadEvents' messages are read here by hand, into records: protobuf's
// unmarshalling (a LogEvent and seven strings an event) and then a record
// built from it (the payload copied, the hashes decoded from hex) were a
// fifth of a replay's CPU in ledgerctl. The message's bytes are copied
// once; each record's payload is a slice of them, so a record kept keeps
// its whole message (verify's look-back ring of 65,536 records holds about
// 66 messages, not 65,536 payloads). TestEventsCodec holds the records to
// those RecordOf makes of protobuf's LogEvents.

// eventsCodec is protobuf's codec, except that it reads an *eventPage
// itself. Its name is protobuf's: the server sees a protobuf call.
type eventsCodec struct{}

var protoCodec = encoding.GetCodecV2("proto")

func (eventsCodec) Name() string { return protoCodec.Name() }

func (eventsCodec) Marshal(v any) (mem.BufferSlice, error) { return protoCodec.Marshal(v) }

func (eventsCodec) Unmarshal(data mem.BufferSlice, v any) error {
	p, ok := v.(*eventPage)
	if !ok {
		return protoCodec.Unmarshal(data, v)
	}
	return p.decode(data.Materialize())
}

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

	timestampSeconds = 1
	timestampNanos   = 2
)

// decode reads a ReadEventsResponse, as protobuf would: a field of a number
// or wire type it does not expect is skipped, a scalar field given twice
// keeps its last value, and a string that is not UTF-8 fails the message.
//
// Errors: for bytes that are not a protobuf message.
func (p *eventPage) decode(b []byte) error {
	p.recs, p.malformed = p.recs[:0], nil
	for len(b) > 0 {
		var f field
		var err error
		if f, b, err = nextField(b); err != nil {
			return fmt.Errorf("events: %w", err)
		}
		if f.num != responseEvents || f.typ != protowire.BytesType || p.malformed != nil {
			continue // what follows a malformed event is not handed on
		}
		r, err := p.event(f.bytes)
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
	var seconds, nanos int64
	var hashes [2][]byte
	for len(b) > 0 {
		var f field
		var err error
		if f, b, err = nextField(b); err != nil {
			return r, fmt.Errorf("event: %w", err)
		}
		switch {
		case f.typ == protowire.VarintType && f.num == eventPosition:
			r.Position = f.v
		case f.typ == protowire.VarintType && f.num == eventSchemaVersion:
			r.SchemaVersion = int(uint32(f.v))
		case f.typ != protowire.BytesType:
		case f.num == eventLedger:
			p.ledger = reuse(p.ledger, f.bytes)
			r.Ledger = p.ledger
		case f.num == eventType:
			p.typ = reuse(p.typ, f.bytes)
			r.Type = p.typ
		case f.num == eventRecordedAt:
			if err := timestamp(f.bytes, &seconds, &nanos); err != nil {
				return r, err
			}
		case f.num == eventCommandID:
			r.CommandID = string(f.bytes)
		case f.num == eventPayload:
			r.Payload = f.bytes[:len(f.bytes):len(f.bytes)]
		case f.num == eventPrevHash:
			hashes[0] = f.bytes
		case f.num == eventHash:
			hashes[1] = f.bytes
		}
	}
	if !utf8.ValidString(r.Ledger) || !utf8.ValidString(r.Type) || !utf8.ValidString(r.CommandID) || !utf8.Valid(r.Payload) ||
		!utf8.Valid(hashes[0]) || !utf8.Valid(hashes[1]) {
		return r, fmt.Errorf("event at %d: a string field is not UTF-8", r.Position)
	}
	r.RecordedAt = time.Unix(seconds, nanos).UTC()
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

// timestamp reads a Timestamp's fields into seconds and nanos, which keep
// what earlier occurrences of the field set (protobuf merges them).
func timestamp(b []byte, seconds, nanos *int64) error {
	for len(b) > 0 {
		var f field
		var err error
		if f, b, err = nextField(b); err != nil {
			return fmt.Errorf("recorded_at: %w", err)
		}
		switch {
		case f.typ != protowire.VarintType:
		case f.num == timestampSeconds:
			*seconds = int64(f.v)
		case f.num == timestampNanos:
			*nanos = int64(int32(f.v))
		}
	}
	return nil
}

// field is one field of a message: a varint's value in v, a
// length-delimited field's bytes in bytes.
type field struct {
	num   protowire.Number
	typ   protowire.Type
	v     uint64
	bytes []byte
}

// nextField reads the field b starts with, and returns b past it.
//
// Errors: protowire's, for bytes that are not a field.
func nextField(b []byte) (field, []byte, error) {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 {
		return field{}, nil, protowire.ParseError(n)
	}
	b = b[n:]
	f := field{num: num, typ: typ}
	switch typ {
	case protowire.VarintType:
		f.v, n = protowire.ConsumeVarint(b)
	case protowire.BytesType:
		f.bytes, n = protowire.ConsumeBytes(b)
	default:
		n = protowire.ConsumeFieldValue(num, typ, b)
	}
	if n < 0 {
		return field{}, nil, protowire.ParseError(n)
	}
	return f, b[n:], nil
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
