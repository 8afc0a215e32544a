package natsbus

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/nats-io/nats.go"

	"github.com/ledgerd/ledger/eventstore"
)

// A frame is one stream message carrying consecutive records of one ledger:
// what JetStream costs is per message (a store, an index entry, an
// acknowledgement, a delivery to each consumer), so the relay sends a
// commit's records together rather than one message each. Consumers see
// every position exactly once, in order, whatever the framing.
//
// Body: frameMagic, the uvarint record count, then each record as a uvarint
// length and its binary form (eventstore.Record.AppendBinary). Headers
// Ledger-First and Ledger-Last name the positions it holds, so that a
// position can be found in the stream without reading the bodies.
const (
	frameMagic = "LGF\x01"
	// HeaderFirst and HeaderLast are the first and last positions a frame holds.
	HeaderFirst = "Ledger-First"
	HeaderLast  = "Ledger-Last"
	// frameRecordsMax and frameBytesMax bound a frame: well under NATS's
	// default max_payload (1 MiB), so a frame of small records is never
	// refused; a single record larger than that travels alone.
	frameRecordsMax = 1024
	frameBytesMax   = 512 << 10
)

// ErrBadFrame means a stream message is not a well-formed frame of the
// ledger's consecutive records.
var ErrBadFrame = errors.New("malformed frame")

// frameCut returns how many of recs (at least one) the next frame holds.
func frameCut(recs []eventstore.Record) int {
	size := 0
	for i := range recs {
		size += recordSizeMax(&recs[i])
		if i > 0 && (i == frameRecordsMax || size > frameBytesMax) {
			return i
		}
	}
	return len(recs)
}

// frameRecordOverhead is a record's binary form beyond its strings and
// payload, at most: magic, length prefixes, numbers and the two hashes.
const frameRecordOverhead = 4 + 6*binary.MaxVarintLen64 + 2*eventstore.HashSize

// recordSizeMax bounds rec's binary form in a frame, its length prefix included.
func recordSizeMax(rec *eventstore.Record) int {
	return binary.MaxVarintLen64 + frameRecordOverhead + len(rec.Payload) + len(rec.Type) + len(rec.CommandID) + len(rec.Ledger)
}

// NewFrame returns the message carrying recs, consecutive positions of one
// ledger, on subject.
func NewFrame(subject string, recs []eventstore.Record) *nats.Msg {
	size := len(frameMagic) + binary.MaxVarintLen64
	for i := range recs {
		size += recordSizeMax(&recs[i])
	}
	b := make([]byte, 0, size)
	b = append(b, frameMagic...)
	b = binary.AppendUvarint(b, uint64(len(recs)))
	var one []byte
	for i := range recs {
		one = recs[i].AppendBinary(one[:0])
		b = binary.AppendUvarint(b, uint64(len(one)))
		b = append(b, one...)
	}
	msg := nats.NewMsg(subject)
	msg.Data = b
	msg.Header.Set(HeaderFirst, strconv.FormatUint(recs[0].Position, 10))
	msg.Header.Set(HeaderLast, strconv.FormatUint(recs[len(recs)-1].Position, 10))
	return msg
}

// frameSpan reads the positions a frame's headers name.
//
// Errors: ErrBadFrame.
func frameSpan(h nats.Header) (first, last uint64, err error) {
	first, err1 := strconv.ParseUint(h.Get(HeaderFirst), 10, 64)
	last, err2 := strconv.ParseUint(h.Get(HeaderLast), 10, 64)
	if err1 != nil || err2 != nil || first == 0 || last < first || last-first >= frameRecordsMax {
		return 0, 0, fmt.Errorf("frame headers %s=%q %s=%q: %w", HeaderFirst, h.Get(HeaderFirst), HeaderLast, h.Get(HeaderLast), ErrBadFrame)
	}
	return first, last, nil
}

// ParseFrame reads a frame's records, checking that they are the ledger's
// and consecutive from first to last (its headers). The records' payloads
// share data's memory. It does not verify hashes.
//
// Errors: ErrBadFrame, or eventstore.ErrMalformed for a record.
func ParseFrame(ledger string, first, last uint64, data []byte) ([]eventstore.Record, error) {
	return appendFrame(nil, ledger, first, last, data)
}

// appendFrame is ParseFrame appending the frame's records to dst (nil: a
// slice of their own): a source gathers the frames of a batch into one
// slice instead of a slice a frame copied into it. On an error it returns
// nil, and may have overwritten dst's spare capacity (past its length).
func appendFrame(dst []eventstore.Record, ledger string, first, last uint64, data []byte) ([]eventstore.Record, error) {
	if len(data) < len(frameMagic) || string(data[:len(frameMagic)]) != frameMagic {
		return nil, fmt.Errorf("bad magic: %w", ErrBadFrame)
	}
	data = data[len(frameMagic):]
	n, k := binary.Uvarint(data)
	if k <= 0 || n == 0 || n > frameRecordsMax || n != last-first+1 {
		return nil, fmt.Errorf("count %d for positions %d..%d: %w", n, first, last, ErrBadFrame)
	}
	data = data[k:]
	recs := slices.Grow(dst, int(n))
	for i := uint64(0); i < n; i++ {
		size, k := binary.Uvarint(data)
		if k <= 0 || size > uint64(len(data)-k) {
			return nil, fmt.Errorf("record %d of %d: length: %w", i, n, ErrBadFrame)
		}
		rec, err := eventstore.ParseRecordBinary(data[k : k+int(size)])
		if err != nil {
			return nil, fmt.Errorf("record %d of %d: %w", i, n, err)
		}
		if rec.Ledger != ledger || rec.Position != first+i {
			return nil, fmt.Errorf("record %d of %d is %s@%d, want %s@%d: %w", i, n, rec.Ledger, rec.Position, ledger, first+i, ErrBadFrame)
		}
		recs = append(recs, rec)
		data = data[k+int(size):]
	}
	if len(data) != 0 {
		return nil, fmt.Errorf("%d bytes after the last record: %w", len(data), ErrBadFrame)
	}
	return recs, nil
}
