package natsbus

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"

	"github.com/klauspost/compress/s2"
	"github.com/nats-io/nats.go"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
)

// A frame is one stream message carrying consecutive records of one ledger:
// what JetStream costs is per message (a store, an index entry, an
// acknowledgement, a delivery to each consumer), so the relay sends a
// commit's records together rather than one message each. Consumers see
// every position exactly once, in order, whatever the framing.
//
// Body: frameMagic, the uvarint record count, then each record as a uvarint
// length and its binary form (eventstore.Record.AppendBinary). Or, as the
// relay publishes by default, frameMagicS2 and what follows frameMagic in
// that form compressed as one S2 block: a transfer's record is about 260
// bytes and 73 compressed (JSON keys, ids and accounts repeat from record to
// record), and what the stream holds costs memory in every process it passes
// through (the embedded server's caches keep about ten seconds of it, each
// reader its buffered frames) and disk for as long as it is kept; S2 costs
// about 0.2 µs an event to compress and 0.1 to read back (docs/perf.md,
// "Session 27"). Headers Ledger-First and Ledger-Last name the positions it
// holds, so that a position can be found in the stream without reading the
// bodies.
const (
	frameMagic   = "LGF\x01"
	frameMagicS2 = "LGF\x02"
	// HeaderFirst and HeaderLast are the first and last positions a frame holds.
	HeaderFirst = "Ledger-First"
	HeaderLast  = "Ledger-Last"
	// frameRecordsMax and frameBytesMax bound a frame of several records:
	// well under NATS's default max_payload (1 MiB), so that a frame of
	// small records is never refused; a single record larger than that
	// travels alone.
	frameRecordsMax = 1024
	frameBytesMax   = 512 << 10
	// frameEnvelopeMax bounds a record's binary form in a frame beyond its
	// payload: its length prefix, the fixed part, and the longest ledger
	// name, type and command id (an alert's id, domain.ValidCommandID).
	frameEnvelopeMax = binary.MaxVarintLen64 + frameRecordOverhead + domain.LedgerNameLenMax + domain.EventTypeLenMax +
		domain.AlertIDLenMax
	// frameDecodedMax bounds what follows a frame's magic, decoded: a
	// frame of several records (frameBytesMax), or the largest record a
	// writer decides alone (a period's close over the most assets,
	// domain.EventPayloadMax, about 2 MiB). A compressed frame claiming
	// more is refused unread: a hundred bytes of S2 can claim a megabyte.
	frameDecodedMax = binary.MaxVarintLen64 + max(frameBytesMax, frameEnvelopeMax+domain.EventPayloadMax)
	// frameS2ExtraMax is what an S2 block may add to its input (its length
	// and the literal's tag, for data that does not compress):
	// s2.MaxEncodedLen, held to it by a test.
	frameS2ExtraMax = 16
	// frameHeadersMax bounds a frame message's headers as NATS counts them
	// against max_payload: Ledger-First, Ledger-Last, Nats-Msg-Id (the
	// ledger and two positions) and Nats-Expected-Last-Sequence.
	frameHeadersMax = 1 << 10
	// MaxPayloadMin is the least max_payload a NATS server must allow for
	// the relay to publish every record a writer decides: the largest
	// frame, plain (frameMagic) or compressed (frameMagicS2, a little
	// larger for data that does not compress), with its headers. About
	// 2.1 MB; NATS's default is 1 MiB.
	MaxPayloadMin = len(frameMagicS2) + frameDecodedMax + frameS2ExtraMax + frameHeadersMax
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
// ledger, on subject, its body compressed.
func NewFrame(subject string, recs []eventstore.Record) *nats.Msg {
	return newFrame(subject, recs, false)
}

// frameBuffers holds the buffers a frame is made in (its records, then
// their S2 block), shared by every relay of the process: about a megabyte
// a frame in flight, not a megabyte kept per relay.
var frameBuffers = sync.Pool{New: func() any { return new([]byte) }}

// newFrame returns the message carrying recs on subject, plain (frameMagic)
// or compressed (frameMagicS2).
func newFrame(subject string, recs []eventstore.Record, plain bool) *nats.Msg {
	size := len(frameMagic) + binary.MaxVarintLen64
	for i := range recs {
		size += recordSizeMax(&recs[i])
	}
	bodyBuf := frameBuffers.Get().(*[]byte)
	defer frameBuffers.Put(bodyBuf)
	b := slices.Grow((*bodyBuf)[:0], size)
	b = append(b, frameMagic...)
	b = binary.AppendUvarint(b, uint64(len(recs)))
	for i := range recs {
		// The record's length goes before it: written after it, then
		// moved in front (a record's binary form is its only copy here).
		at := len(b)
		b = recs[i].AppendBinary(b)
		n := len(b) - at
		var prefix [binary.MaxVarintLen64]byte
		k := binary.PutUvarint(prefix[:], uint64(n))
		b = slices.Insert(b, at, prefix[:k]...)
	}
	*bodyBuf = b
	magic, data := "", b // b begins with frameMagic
	if !plain {
		compBuf := frameBuffers.Get().(*[]byte)
		defer frameBuffers.Put(compBuf)
		*compBuf = s2.Encode((*compBuf)[:cap(*compBuf)], b[len(frameMagic):])
		magic, data = frameMagicS2, *compBuf
	}
	// Copied out of the pooled buffers into a message of its size: nats.go
	// holds the message until its publication is acknowledged (to send it
	// again), and the buffers' room exceeds it.
	msg := nats.NewMsg(subject)
	msg.Data = append(append(make([]byte, 0, len(magic)+len(data)), magic...), data...)
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
// share data's memory (a plain frame's) or the buffer a compressed one was
// decoded into. It does not verify hashes.
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
	data, err := frameBody(data)
	if err != nil {
		return nil, err
	}
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

// frameBody is what follows a frame's magic, uncompressed: data's own bytes
// for a plain frame, a buffer of its own for a compressed one.
//
// Errors: ErrBadFrame.
func frameBody(data []byte) ([]byte, error) {
	if len(data) < len(frameMagic) {
		return nil, fmt.Errorf("bad magic: %w", ErrBadFrame)
	}
	switch magic, body := string(data[:len(frameMagic)]), data[len(frameMagic):]; magic {
	case frameMagic:
		return body, nil
	case frameMagicS2:
		n, err := s2.DecodedLen(body)
		if err != nil {
			return nil, fmt.Errorf("compressed body: %v: %w", err, ErrBadFrame)
		}
		if n > frameDecodedMax {
			return nil, fmt.Errorf("compressed body of %d bytes decoded, at most %d: %w", n, frameDecodedMax, ErrBadFrame)
		}
		plain, err := s2.Decode(make([]byte, n), body)
		if err != nil {
			return nil, fmt.Errorf("compressed body: %v: %w", err, ErrBadFrame)
		}
		return plain, nil
	default:
		return nil, fmt.Errorf("bad magic: %w", ErrBadFrame)
	}
}

// frameSize is what a well-formed frame's records take decoded: a plain
// frame's own length, a compressed one's decoded length.
func frameSize(data []byte) int {
	if len(data) > len(frameMagicS2) && string(data[:len(frameMagicS2)]) == frameMagicS2 {
		if n, err := s2.DecodedLen(data[len(frameMagicS2):]); err == nil {
			return n
		}
	}
	return len(data)
}
