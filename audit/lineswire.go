package audit

import (
	"encoding/binary"
	"fmt"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/internal/protoread"
)

// ReadStatementLines' messages are read here by hand (protoread):
// protobuf's unmarshalling (an AccountStatementLine, a StatementLine, two
// Timestamps and a dozen strings a line) and then a line built from them
// were most of what verify spent on a line (docs/perf.md, "Session 22").
// Each line's fields stay slices of its message, and what its digest
// covers is written from them (wireLine.appendDigested: what appendLine
// writes for lineOf of the line protobuf reads). A string that is not
// UTF-8 (any copy of it) fails the message, as it fails protobuf's; so does
// a message of more lines than ledgerd sends (statementPageMax).
// TestLinesWireReadsAsProtobuf and FuzzLinesWire hold it to protobuf.

// linesPage is one ReadStatementLinesResponse as read: its bytes, kept
// (and reused) until the next message, and its lines, slices of them.
type linesPage struct {
	wire  []byte
	lines []wireLine
}

// ReadWire copies the message and reads its lines (protoread.Reader).
func (p *linesPage) ReadWire(data mem.BufferSlice) error {
	p.wire = p.wire[:0]
	for _, b := range data {
		p.wire = append(p.wire, b.ReadOnlyData()...)
	}
	return p.check()
}

// Field numbers of ReadStatementLinesResponse, AccountStatementLine,
// StatementLine, Timestamp and a map entry (ledger.proto).
const (
	wireResponseLines = 1

	wireAccountLineAccount = 1
	wireAccountLineLine    = 2
	wireAccountLineSeq     = 3

	wireLinePosition         = 1
	wireLineTransferID       = 2
	wireLineKind             = 3
	wireLineCounterAccounts  = 4
	wireLineDirection        = 5
	wireLineAmount           = 6
	wireLineRunningBalance   = 7
	wireLinePending          = 8
	wireLineEffectiveAt      = 9
	wireLineRecordedAt       = 10
	wireLineReference        = 11
	wireLineMetadata         = 12
	wireLinePostingIndex     = 13
	wireLineRunningAvailable = 14

	wireEntryKey   = 1
	wireEntryValue = 2
)

// check reads every line of the message, so that a message protobuf
// would refuse is refused before any of its lines is summed. A message
// holds at most statementPageMax lines, as ledgerd sends them: each line
// read takes a few hundred bytes, and an empty one two on the wire.
//
// Errors: for bytes that are not a ReadStatementLinesResponse, or more
// lines than a message holds.
func (p *linesPage) check() error {
	b, n := p.wire, 0
	for len(b) > 0 {
		var f protoread.Field
		var err error
		if f, b, err = protoread.Next(b); err != nil {
			p.lines = p.lines[:0]
			return fmt.Errorf("statement lines: %w", err)
		}
		if f.Num != wireResponseLines || f.Type != protowire.BytesType {
			continue
		}
		if n == statementPageMax {
			p.lines = p.lines[:0]
			return fmt.Errorf("statement lines: more than %d in a message", statementPageMax)
		}
		if n == len(p.lines) {
			p.lines = append(p.lines, wireLine{})
		}
		l := &p.lines[n]
		l.reset()
		if err := l.read(f.Bytes); err != nil {
			p.lines = p.lines[:0]
			return err
		}
		n++
	}
	p.lines = p.lines[:n]
	return nil
}

// wireLine is one AccountStatementLine as read: its texts are slices of
// the message.
type wireLine struct {
	account, transferID, kind, amount, balance, available, reference []byte
	counters                                                         [][]byte
	keys, values                                                     [][]byte // the metadata's entries, in order
	seq, postingIndex                                                uint32
	position                                                         uint64
	direction                                                        int32
	pending                                                          bool
	effective, recorded                                              [2]int64 // seconds, nanos
}

func (l *wireLine) reset() {
	counters, keys, values := l.counters[:0], l.keys[:0], l.values[:0]
	*l = wireLine{counters: counters, keys: keys, values: values}
}

// read reads an AccountStatementLine into l.
//
// Errors: for bytes that are not one.
func (l *wireLine) read(b []byte) error {
	for len(b) > 0 {
		var f protoread.Field
		var err error
		if f, b, err = protoread.Next(b); err != nil {
			return fmt.Errorf("statement line: %w", err)
		}
		switch {
		case f.Type == protowire.VarintType && f.Num == wireAccountLineSeq:
			l.seq = uint32(f.V)
		case f.Type != protowire.BytesType:
		case f.Num == wireAccountLineAccount:
			if !utf8.Valid(f.Bytes) {
				return fmt.Errorf("statement line: account is not UTF-8")
			}
			l.account = f.Bytes
		case f.Num == wireAccountLineLine:
			if err := l.readLine(f.Bytes); err != nil {
				return err
			}
		}
	}
	return nil
}

// readLine reads a StatementLine into l, over what an earlier occurrence
// of the field set (protobuf merges them).
func (l *wireLine) readLine(b []byte) error {
	for len(b) > 0 {
		var f protoread.Field
		var err error
		if f, b, err = protoread.Next(b); err != nil {
			return fmt.Errorf("statement line: %w", err)
		}
		if f.Type == protowire.VarintType {
			switch f.Num {
			case wireLinePosition:
				l.position = f.V
			case wireLineDirection:
				l.direction = int32(f.V)
			case wireLinePending:
				l.pending = f.V != 0
			case wireLinePostingIndex:
				l.postingIndex = uint32(f.V)
			}
			continue
		}
		if f.Type != protowire.BytesType {
			continue
		}
		text := f.Bytes
		switch f.Num {
		case wireLineTransferID:
			l.transferID = text
		case wireLineKind:
			l.kind = text
		case wireLineCounterAccounts:
			l.counters = append(l.counters, text)
		case wireLineAmount:
			l.amount = text
		case wireLineRunningBalance:
			l.balance = text
		case wireLineRunningAvailable:
			l.available = text
		case wireLineReference:
			l.reference = text
		case wireLineEffectiveAt:
			err = protoread.Timestamp(text, &l.effective)
		case wireLineRecordedAt:
			err = protoread.Timestamp(text, &l.recorded)
		case wireLineMetadata:
			err = l.readEntry(text)
		default:
			continue
		}
		if err != nil {
			return err
		}
		if f.Num != wireLineEffectiveAt && f.Num != wireLineRecordedAt && f.Num != wireLineMetadata && !utf8.Valid(text) {
			return fmt.Errorf("statement line at %d: field %d is not UTF-8", l.position, f.Num)
		}
	}
	return nil
}

// readEntry reads one metadata entry (a missing key or value is "").
func (l *wireLine) readEntry(b []byte) error {
	var key, value []byte
	for len(b) > 0 {
		var f protoread.Field
		var err error
		if f, b, err = protoread.Next(b); err != nil {
			return fmt.Errorf("statement line metadata: %w", err)
		}
		if f.Type != protowire.BytesType || (f.Num != wireEntryKey && f.Num != wireEntryValue) {
			continue
		}
		if !utf8.Valid(f.Bytes) {
			return fmt.Errorf("statement line at %d: metadata is not UTF-8", l.position)
		}
		if f.Num == wireEntryKey {
			key = f.Bytes
		} else {
			value = f.Bytes
		}
	}
	l.keys, l.values = append(l.keys, key), append(l.values, value)
	return nil
}

// appendDigested appends what a line's digest covers (appendLine), as
// lineOf would have it from the line protobuf reads.
func (l *wireLine) appendDigested(b []byte) []byte {
	b = binary.AppendUvarint(b, l.position)
	b = binary.AppendUvarint(b, uint64(l.postingIndex))
	// As a Timestamp's AsTime reads the fields.
	b = binary.AppendVarint(b, lineTime(time.Unix(l.effective[0], l.effective[1])))
	b = binary.AppendVarint(b, lineTime(time.Unix(l.recorded[0], l.recorded[1])))
	b = append(append(b, directionSide(ledgerv1.Direction(l.direction))...), 0)
	if l.pending {
		b = append(b, "true\x00"...)
	} else {
		b = append(b, "false\x00"...)
	}
	b = appendText(b, l.kind)
	b = appendText(b, l.transferID)
	for i, c := range l.counters {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, c...)
	}
	b = append(b, 0)
	for _, t := range [...][]byte{l.amount, l.balance, l.available, l.reference} {
		b = appendText(b, t)
	}
	if len(l.keys) > 0 {
		// Rare: the metadata's text, as lineOf makes it, from a map.
		m := make(map[string]string, len(l.keys))
		for i, k := range l.keys {
			m[string(k)] = string(l.values[i])
		}
		b = append(b, metadataText(m)...)
	}
	return append(b, 0)
}

func appendText(b, t []byte) []byte { return append(append(b, t...), 0) }
