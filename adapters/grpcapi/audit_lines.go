package grpcapi

import (
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/queries"
)

// Bounds of one ReadStatementLinesResponse: lines, and their bytes as
// counted by lineBytes, under gRPC's default 4 MiB receive limit.
const (
	statementLinesBatchMax = 1000
	statementLinesBytesMax = 3 << 20
)

// ReadStatementLines streams every statement line of a ledger up to
// to_position, each with its account, in batches.
//
// Errors: InvalidArgument (to_position 0); as ListStatement's wait for a
// min_position (NotFound, a position past the head, not reached in
// time); the stream's.
func (s *AuditServer) ReadStatementLines(req *ledgerv1.ReadStatementLinesRequest,
	stream grpc.ServerStreamingServer[ledgerv1.ReadStatementLinesResponse]) error {
	if req.GetToPosition() == 0 {
		return invalidArgument("to_position", "0: want the last position to read, at least 1")
	}
	out := &lineSender{stream: stream}
	err := s.reads.StatementLines(stream.Context(), req.GetLedger(), req.GetToPosition(), out.add)
	switch {
	case out.err != nil:
		return out.err // the stream's, as it is
	case err != nil:
		return statusOf(err)
	}
	return out.flush()
}

// lineSender batches lines into messages. A message's lines, their wire
// forms and their times are three arrays, new for each message: gRPC may
// read a message after Send returns.
type lineSender struct {
	stream grpc.ServerStreamingServer[ledgerv1.ReadStatementLinesResponse]
	lines  []*ledgerv1.AccountStatementLine
	bytes  int
	wire   []ledgerv1.StatementLine
	owned  []ledgerv1.AccountStatementLine
	times  []timestamppb.Timestamp
	// err is the stream's, which ends the reading.
	err error
}

// add puts a line in the message being built, sending that message first
// when the line would make it too long.
func (o *lineSender) add(account string, seq uint32, l *queries.StatementLine) error {
	n := lineBytes(account, l)
	if len(o.lines) == statementLinesBatchMax || (len(o.lines) > 0 && o.bytes+n > statementLinesBytesMax) {
		if err := o.flush(); err != nil {
			return err
		}
	}
	if o.wire == nil {
		o.wire = make([]ledgerv1.StatementLine, statementLinesBatchMax)
		o.owned = make([]ledgerv1.AccountStatementLine, statementLinesBatchMax)
		o.times = make([]timestamppb.Timestamp, 2*statementLinesBatchMax)
		o.lines = make([]*ledgerv1.AccountStatementLine, 0, statementLinesBatchMax)
	}
	i := len(o.lines)
	a := &o.owned[i]
	a.Account, a.Seq, a.Line = account, seq, statementLineIn(&o.wire[i], o.times[2*i:2*i+2], l)
	o.lines = append(o.lines, a)
	o.bytes += n
	return nil
}

// flush sends the message being built, if it holds a line.
func (o *lineSender) flush() error {
	if len(o.lines) == 0 {
		return nil
	}
	if err := o.stream.Send(&ledgerv1.ReadStatementLinesResponse{Lines: o.lines}); err != nil {
		o.err = err
		return err
	}
	o.lines, o.bytes, o.wire, o.owned, o.times = nil, 0, nil, nil, nil
	return nil
}

// lineBytes estimates what a line takes on the wire: its texts, and 96
// bytes for its numbers, times, lengths and the fields' tags.
func lineBytes(account string, l *queries.StatementLine) int {
	n := 96 + len(account) + len(l.TransferID) + len(l.Kind) + len(l.Amount) + len(l.RunningBalance) +
		len(l.RunningAvailable) + len(l.Reference)
	for _, c := range l.CounterAccounts {
		n += len(c) + 2
	}
	for k, v := range l.Metadata {
		n += len(k) + len(v) + 6
	}
	return n
}
