package grpcapi

import (
	"cmp"
	"context"
	"slices"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/queries"
)

// Bounds of one ReadStatementLinesResponse: lines, and their bytes, under
// gRPC's default 4 MiB receive limit.
const (
	statementLinesBatchMax = 1000
	statementLinesBytesMax = 3 << 20
)

// Bounds of a client that reads slowly: the messages read ahead of it,
// and how long the read waits for it to take one before it gives up.
const (
	// statementLinesAhead is the messages queued behind the one being sent
	// (which gRPC holds, with what its transport has not written yet).
	statementLinesAhead = 2
	// StatementLinesStallMax bounds how long a ReadStatementLines stream
	// holds its PostgreSQL snapshot (and connection) while its client reads
	// nothing: an open snapshot keeps VACUUM from every row deleted after
	// it began, in every table. A client that reads steadily takes a
	// message (at most 3 MiB) well within it.
	StatementLinesStallMax = 30 * time.Second
)

// ReadStatementLines streams every statement line of a ledger up to
// to_position, each with its account, in batches. The lines are read from
// PostgreSQL in one snapshot, ahead of the client by the message being
// sent and statementLinesAhead more; when the client takes none for
// StatementLinesStallMax, the read ends, its snapshot and connection are
// let go, and the stream fails once what was read is sent. The stream
// itself (one of StatementLinesStreamsMax) ends when its client takes no
// message for StreamStallMax.
//
// Errors: InvalidArgument (to_position 0); as ListStatement's wait for a
// min_position (NotFound, a position past the head, not reached in
// time); DataLoss for a stored text that is not UTF-8; Aborted for a
// client that read nothing for StatementLinesStallMax or StreamStallMax;
// the stream's.
func (s *AuditServer) ReadStatementLines(req *ledgerv1.ReadStatementLinesRequest,
	stream grpc.ServerStreamingServer[ledgerv1.ReadStatementLinesResponse]) error {
	if req.GetToPosition() == 0 {
		return invalidArgument("to_position", "0: want the last position to read, at least 1")
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	stall := cmp.Or(s.linesStallMax, StatementLinesStallMax)
	ahead := make(chan *encodedMessage, statementLinesAhead)
	var readErr error
	go func() {
		defer close(ahead)
		wait := time.NewTimer(stall)
		defer wait.Stop()
		out := &lineSender{pool: s.wires, send: func(m *encodedMessage) error {
			wait.Reset(stall)
			select {
			case ahead <- m:
				return nil
			case <-wait.C:
				return status.Errorf(codes.Aborted, "statement lines of %s: the client read nothing for %s: "+
					"the read was ended", req.GetLedger(), stall)
			case <-ctx.Done():
				return status.FromContextError(ctx.Err()).Err()
			}
		}}
		err := s.reads.StatementLines(ctx, req.GetLedger(), req.GetToPosition(), out.add)
		if err == nil {
			err = out.flush()
		}
		out.release()
		switch {
		case out.err != nil:
			readErr = out.err // a status: DataLoss, Aborted, or the stream's end
		case err != nil:
			readErr = statusOf(err)
		}
	}()
	// A client that stops reading loses the stream (StreamStallMax), not
	// only the read.
	sender := newStallSender(stream, "statement lines of "+req.GetLedger(), s.streamStallMax)
	defer sender.stop()
	var sendErr error
	for m := range ahead {
		if sendErr == nil {
			if sendErr = sender.send(m); sendErr != nil {
				cancel() // the read stops; what it queued is let go
			}
			continue
		}
		m.release()
	}
	if sendErr == nil {
		sendErr = sender.finish()
	}
	return cmp.Or(sendErr, readErr)
}

// ReadStatementLines writes its messages' wire form itself, as ReadEvents
// does (logwire.go): an AccountStatementLine, a StatementLine and two
// Timestamps built per line, then marshalled through protobuf's
// reflection, were about half of what ledgerd spent on a line (docs/perf.md,
// "Session 22"). The bytes are a ReadStatementLinesResponse's, fields in
// number order, zero values left out; TestEncodedLinesAreProtobufs holds
// them to what protobuf reads.

// lineSender batches lines into messages, each written in its wire form
// into a buffer of pool, and hands each to send.
type lineSender struct {
	send  func(*encodedMessage) error
	pool  *bufferPool
	wire  []byte
	lines int
	// line and item are the scratch of one line: its StatementLine, then
	// its AccountStatementLine, each written before its length is known.
	line, item []byte
	// err is send's, or DataLoss, which ends the reading.
	err error
}

// add puts a line in the message being built, sending that message first
// when the line would make it too long.
func (o *lineSender) add(account string, seq uint32, l *queries.StatementLine) error {
	if bad := badLineText(account, l); bad != "" {
		o.err = status.Errorf(codes.DataLoss, "statement line of %s at %d: stored %s is not UTF-8", account, l.Position, bad)
		return o.err
	}
	o.line = appendStatementLine(o.line[:0], l)
	o.item = appendAccountLine(o.item[:0], account, o.line, seq)
	n := 1 + protowire.SizeBytes(len(o.item))
	if o.lines == statementLinesBatchMax || (o.lines > 0 && len(o.wire)+n > statementLinesBytesMax) {
		if err := o.flush(); err != nil {
			return err
		}
	}
	if o.wire == nil {
		o.wire = (*o.pool.Get(0))[:0]
	}
	o.wire = protowire.AppendTag(o.wire, linesResponseLines, protowire.BytesType)
	o.wire = protowire.AppendBytes(o.wire, o.item)
	o.lines++
	return nil
}

// flush sends the message being built, if it holds a line. A message send
// refuses goes back to the pool.
func (o *lineSender) flush() error {
	if o.lines == 0 {
		return nil
	}
	m := &encodedMessage{wire: o.wire, pool: o.pool}
	o.wire, o.lines = nil, 0
	if err := o.send(m); err != nil {
		m.release()
		o.err = err
		return err
	}
	return nil
}

// release puts back the buffer of a message never sent (the read failed).
func (o *lineSender) release() {
	(&encodedMessage{wire: o.wire, pool: o.pool}).release()
	o.wire = nil
}

// Field numbers of ReadStatementLinesResponse, AccountStatementLine and
// StatementLine (ledger.proto).
const (
	linesResponseLines = 1

	accountLineAccount = 1
	accountLineLine    = 2
	accountLineSeq     = 3

	lineFieldPosition         = 1
	lineFieldTransferID       = 2
	lineFieldKind             = 3
	lineFieldCounterAccounts  = 4
	lineFieldDirection        = 5
	lineFieldAmount           = 6
	lineFieldRunningBalance   = 7
	lineFieldPending          = 8
	lineFieldEffectiveAt      = 9
	lineFieldRecordedAt       = 10
	lineFieldReference        = 11
	lineFieldMetadata         = 12
	lineFieldPostingIndex     = 13
	lineFieldRunningAvailable = 14

	mapEntryKey   = 1
	mapEntryValue = 2
)

// badLineText names the first text of a line that is not UTF-8, which a
// proto string cannot carry; "" when all are.
func badLineText(account string, l *queries.StatementLine) string {
	for _, t := range [...]struct{ name, s string }{{"account", account}, {"transfer_id", l.TransferID}, {"kind", l.Kind},
		{"amount", l.Amount}, {"running_balance", l.RunningBalance}, {"running_available", l.RunningAvailable},
		{"reference", l.Reference}} {
		if !utf8.ValidString(t.s) {
			return t.name
		}
	}
	for _, c := range l.CounterAccounts {
		if !utf8.ValidString(c) {
			return "counter_accounts"
		}
	}
	for k, v := range l.Metadata {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return "metadata"
		}
	}
	return ""
}

// appendAccountLine appends an AccountStatementLine: account, line (a
// StatementLine's wire) and seq.
func appendAccountLine(b []byte, account string, line []byte, seq uint32) []byte {
	b = appendStringField(b, accountLineAccount, account)
	b = protowire.AppendTag(b, accountLineLine, protowire.BytesType)
	b = protowire.AppendBytes(b, line)
	return appendVarintField(b, accountLineSeq, uint64(seq))
}

// appendStatementLine appends l as a StatementLine, as statementLineIn
// and protobuf would (both times always present, as there).
func appendStatementLine(b []byte, l *queries.StatementLine) []byte {
	b = appendVarintField(b, lineFieldPosition, l.Position)
	b = appendStringField(b, lineFieldTransferID, l.TransferID)
	b = appendStringField(b, lineFieldKind, l.Kind)
	for _, c := range l.CounterAccounts {
		// A repeated string's elements are all written, empty ones too.
		b = protowire.AppendTag(b, lineFieldCounterAccounts, protowire.BytesType)
		b = protowire.AppendString(b, c)
	}
	b = appendVarintField(b, lineFieldDirection, uint64(direction(l.Side)))
	b = appendStringField(b, lineFieldAmount, l.Amount)
	b = appendStringField(b, lineFieldRunningBalance, l.RunningBalance)
	if l.Pending {
		b = appendVarintField(b, lineFieldPending, 1)
	}
	b = appendTimestampField(b, lineFieldEffectiveAt, l.EffectiveAt)
	b = appendTimestampField(b, lineFieldRecordedAt, l.RecordedAt)
	b = appendStringField(b, lineFieldReference, l.Reference)
	if len(l.Metadata) > 0 {
		// In key order, as protobuf's deterministic marshalling: the same
		// line, the same bytes.
		keys := make([]string, 0, len(l.Metadata))
		for k := range l.Metadata {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			v := l.Metadata[k]
			// A map entry writes its key and value, empty or not.
			b = protowire.AppendTag(b, lineFieldMetadata, protowire.BytesType)
			b = protowire.AppendVarint(b, uint64(2+protowire.SizeBytes(len(k))+protowire.SizeBytes(len(v))))
			b = protowire.AppendTag(b, mapEntryKey, protowire.BytesType)
			b = protowire.AppendString(b, k)
			b = protowire.AppendTag(b, mapEntryValue, protowire.BytesType)
			b = protowire.AppendString(b, v)
		}
	}
	b = appendVarintField(b, lineFieldPostingIndex, uint64(l.PostingIndex))
	return appendStringField(b, lineFieldRunningAvailable, l.RunningAvailable)
}

// appendVarintField appends a varint field, left out when 0 (proto3).
func appendVarintField(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}
