package grpcapi

import (
	"encoding/hex"
	"errors"
	"sync"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/ledgerd/ledger/eventstore"
)

// ReadEvents writes its messages' wire form itself: building a LogEvent
// per event (its strings copied from the record, its hashes hex-encoded
// into a string) and then marshalling it through protobuf's reflection cost
// ledgerd about a fifth of its CPU in a replay (docs/perf.md, "Session
// 20"). The bytes are those proto.Marshal writes for the same
// ReadEventsResponse (fields in number order, zero values left out):
// TestEncodedEventsAreProtobufs holds them to it.

// encodedMessage is a message in its wire form (a ReadEventsResponse, a
// ReadStatementLinesResponse), which the server's codec (markingCodec)
// hands over as it is. Its bytes come from pool and go back there once
// gRPC has written them.
type encodedMessage struct {
	wire []byte
	pool *bufferPool
}

// buffer hands e's bytes over to gRPC, which puts them back in e's pool
// once written (the transport writes a message after SendMsg returns).
// They are handed over once: twice, two messages to come would share them.
//
// Errors: for a message handed over already.
func (e *encodedMessage) buffer() (mem.Buffer, error) {
	if e.wire == nil {
		return nil, errors.New("grpcapi: an encoded message marshalled twice")
	}
	wire := e.wire
	e.wire = nil
	return mem.NewBuffer(&wire, e.pool), nil
}

// release puts back the bytes of a message never handed over.
func (e *encodedMessage) release() {
	if e.wire != nil {
		wire := e.wire
		e.wire = nil
		e.pool.Put(&wire)
	}
}

// bufferPool holds the buffers of encoded messages, of any capacity up
// to wireBufferMax: a message grows its buffer as it needs, and the grown
// one comes back. Allocated (and so zeroed) afresh, a few hundred
// kilobytes a message, they were about a tenth of ledgerd's CPU in a
// replay.
type bufferPool struct{ pool sync.Pool }

// Get is a buffer of length n.
func (p *bufferPool) Get(n int) *[]byte {
	if b, ok := p.pool.Get().(*[]byte); ok && cap(*b) >= n {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, max(n, wireBufferBytes))
	return &b
}

// Put keeps b for a next message, unless it is larger than a message
// needs: one that grew for an event of its own is let go.
func (p *bufferPool) Put(b *[]byte) {
	if cap(*b) <= wireBufferMax {
		p.pool.Put(b)
	}
}

const (
	// wireBufferBytes is a new buffer's capacity: a message of a thousand
	// transfers is about 450 kB.
	wireBufferBytes = 512 << 10
	// wireBufferMax bounds a buffer kept: a message's bound, and the
	// event that may pass it.
	wireBufferMax = 2 * readEventsBytesMax
)

// LogEvent's field numbers (ledger.proto), and Timestamp's.
const (
	logEventLedger        = 1
	logEventPosition      = 2
	logEventType          = 3
	logEventSchemaVersion = 4
	logEventRecordedAt    = 5
	logEventCommandID     = 6
	logEventPayload       = 7
	logEventPrevHash      = 8
	logEventHash          = 9
	responseEvents        = 1 // ReadEventsResponse.events
	timestampSeconds      = 1
	timestampNanos        = 2
)

// hexHashLen is a hash's length in hex.
const hexHashLen = 2 * eventstore.HashSize

// eventWireLen is the length of r's LogEvent, without its own tag and length.
func eventWireLen(r *eventstore.Record) int {
	n := stringFieldLen(logEventLedger, len(r.Ledger)) + stringFieldLen(logEventType, len(r.Type)) +
		stringFieldLen(logEventCommandID, len(r.CommandID)) + stringFieldLen(logEventPayload, len(r.Payload)) +
		stringFieldLen(logEventPrevHash, hexHashLen) + stringFieldLen(logEventHash, hexHashLen)
	if r.Position != 0 {
		n += protowire.SizeTag(logEventPosition) + protowire.SizeVarint(r.Position)
	}
	if r.SchemaVersion != 0 {
		n += protowire.SizeTag(logEventSchemaVersion) + protowire.SizeVarint(uint64(uint32(r.SchemaVersion)))
	}
	ts := timestampWireLen(r.RecordedAt)
	return n + protowire.SizeTag(logEventRecordedAt) + protowire.SizeBytes(ts)
}

// stringFieldLen is a string field's length on the wire; an empty one is
// left out, as proto3 does.
func stringFieldLen(num protowire.Number, n int) int {
	if n == 0 {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeBytes(n)
}

// timestampWireLen is the length of t as a Timestamp.
func timestampWireLen(t time.Time) int {
	sec, nanos := t.Unix(), int32(t.Nanosecond())
	n := 0
	if sec != 0 {
		n += protowire.SizeTag(timestampSeconds) + protowire.SizeVarint(uint64(sec))
	}
	if nanos != 0 {
		n += protowire.SizeTag(timestampNanos) + protowire.SizeVarint(uint64(int64(nanos)))
	}
	return n
}

// appendTimestampField appends t as a Timestamp field, present even when
// zero (as a message field set to a zero Timestamp is).
func appendTimestampField(b []byte, num protowire.Number, t time.Time) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(timestampWireLen(t)))
	if sec := t.Unix(); sec != 0 {
		b = protowire.AppendTag(b, timestampSeconds, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(sec))
	}
	if nanos := int32(t.Nanosecond()); nanos != 0 {
		b = protowire.AppendTag(b, timestampNanos, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(int64(nanos)))
	}
	return b
}

// appendEvent appends r, whose LogEvent is size bytes long (eventWireLen),
// as one element of ReadEventsResponse.events.
//
// Errors: DataLoss for a string of r that is not UTF-8, which a proto
// string cannot carry.
func appendEvent(b []byte, r *eventstore.Record, size int) ([]byte, error) {
	bad := ""
	switch {
	case !utf8.Valid(r.Payload):
		bad = "payload"
	case !utf8.ValidString(r.Type):
		bad = "type"
	case !utf8.ValidString(r.CommandID):
		bad = "command_id"
	case !utf8.ValidString(r.Ledger):
		bad = "ledger"
	}
	if bad != "" {
		return b, status.Errorf(codes.DataLoss, "event %d of %s: stored %s is not UTF-8", r.Position, r.Ledger, bad)
	}
	b = protowire.AppendTag(b, responseEvents, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(size))
	b = appendStringField(b, logEventLedger, r.Ledger)
	if r.Position != 0 {
		b = protowire.AppendTag(b, logEventPosition, protowire.VarintType)
		b = protowire.AppendVarint(b, r.Position)
	}
	b = appendStringField(b, logEventType, r.Type)
	if r.SchemaVersion != 0 {
		b = protowire.AppendTag(b, logEventSchemaVersion, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(uint32(r.SchemaVersion)))
	}
	b = appendTimestampField(b, logEventRecordedAt, r.RecordedAt)
	b = appendStringField(b, logEventCommandID, r.CommandID)
	if len(r.Payload) > 0 {
		b = protowire.AppendTag(b, logEventPayload, protowire.BytesType)
		b = protowire.AppendBytes(b, r.Payload)
	}
	b = appendHashField(b, logEventPrevHash, &r.PrevHash)
	return appendHashField(b, logEventHash, &r.Hash), nil
}

func appendStringField(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendHashField(b []byte, num protowire.Number, h *eventstore.Hash) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendVarint(b, hexHashLen)
	return hex.AppendEncode(b, h[:])
}
