package grpcapi

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
)

// Bounds of one ReadEventsResponse.
const (
	readEventsBatchMax = 1000
	// readEventsBytesMax bounds a message's length on the wire, under
	// gRPC's default 4 MiB receive limit: a client with default options
	// reads any ledger, whatever its events.
	readEventsBytesMax = 3 << 20
)

// Bounds of the ReadEvents streams open at once. Each holds up to two pages
// of the log (eventstore.ReadMax events, one read ahead) and a message being
// built: about 15 MiB at most.
const (
	// ReadEventsStreamsMax bounds them in all: about 240 MiB.
	ReadEventsStreamsMax = 16
	// ReadEventsStreamsPerKeyMax bounds them per API key, so that one
	// auditor cannot take them all.
	ReadEventsStreamsPerKeyMax = 4
)

// Bounds of the ReadStatementLines streams open at once. Each holds a few
// messages read ahead and, while it reads (at most StatementLinesStallMax
// past its client's last take), a PostgreSQL connection in a snapshot:
// few, so that audits never take much of the pool.
const (
	StatementLinesStreamsMax       = 2
	StatementLinesStreamsPerKeyMax = 1
)

// The methods CallsLimits bound.
const (
	readEventsMethod         = "/ledger.v1.AuditService/ReadEvents"
	readStatementLinesMethod = "/ledger.v1.AuditService/ReadStatementLines"
)

// CallsLimit bounds the calls of one method in progress (a stream's last
// as long as it is open), in all and per key. Its interceptors go after
// Auth's, which tell the key (without auth, only the bound in all holds).
type CallsLimit struct {
	method         string
	max, perKeyMax int
	mu             sync.Mutex
	total          int
	perKey         map[string]int
}

// NewReadEventsLimit bounds the ReadEvents streams (ReadEventsStreamsMax,
// ReadEventsStreamsPerKeyMax).
func NewReadEventsLimit() *CallsLimit {
	return &CallsLimit{method: readEventsMethod, max: ReadEventsStreamsMax, perKeyMax: ReadEventsStreamsPerKeyMax,
		perKey: map[string]int{}}
}

// NewStatementLinesLimit bounds the ReadStatementLines streams
// (StatementLinesStreamsMax, StatementLinesStreamsPerKeyMax).
func NewStatementLinesLimit() *CallsLimit {
	return &CallsLimit{method: readStatementLinesMethod, max: StatementLinesStreamsMax,
		perKeyMax: StatementLinesStreamsPerKeyMax, perKey: map[string]int{}}
}

// StreamInterceptor refuses a stream of l's method beyond the bounds.
//
// Errors: ResourceExhausted.
func (l *CallsLimit) StreamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if info.FullMethod != l.method {
		return handler(srv, ss)
	}
	key, keyed := KeyFrom(ss.Context())
	if err := l.acquire(key.ID, keyed); err != nil {
		return err
	}
	defer l.release(key.ID, keyed)
	return handler(srv, ss)
}

// UnaryInterceptor refuses a call of l's method beyond the bounds.
//
// Errors: ResourceExhausted.
func (l *CallsLimit) UnaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if info.FullMethod != l.method {
		return handler(ctx, req)
	}
	key, keyed := KeyFrom(ctx)
	if err := l.acquire(key.ID, keyed); err != nil {
		return nil, err
	}
	defer l.release(key.ID, keyed)
	return handler(ctx, req)
}

func (l *CallsLimit) acquire(key string, keyed bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	name := l.method[strings.LastIndexByte(l.method, '/')+1:]
	if l.total >= l.max {
		return status.Errorf(codes.ResourceExhausted, "%d %s calls are in progress, at most %d: retry when one ends",
			l.total, name, l.max)
	}
	if keyed && l.perKey[key] >= l.perKeyMax {
		return status.Errorf(codes.ResourceExhausted, "api key %s has %d %s calls in progress, at most %d: retry when one ends",
			key, l.perKey[key], name, l.perKeyMax)
	}
	l.total++
	if keyed {
		l.perKey[key]++
	}
	return nil
}

func (l *CallsLimit) release(key string, keyed bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if keyed {
		if l.perKey[key]--; l.perKey[key] == 0 {
			delete(l.perKey, key)
		}
	}
}

// ReadEvents streams a ledger's events in position order, from from_position
// (1 if 0) to to_position or, if that is 0 or past it, the head as of the
// call's start: events appended meanwhile are not sent, so the stream ends.
// Each event carries its payload byte for byte as hashed and both hashes in
// hex: what an auditor needs to recompute the chain. The stream sends what the
// log holds: a missing row is not skipped over silently by the auditor, who
// sees the gap in the positions.
//
// Errors: InvalidArgument on ledger (malformed or unknown) and on
// from_position (after to_position); DataLoss for a stored payload (or
// type, command id, ledger) that is not UTF-8 (a proto string cannot carry
// it); Aborted for a client that read nothing for StreamStallMax; Canceled
// or DeadlineExceeded with the call; Internal for a database error.
func (s *AuditServer) ReadEvents(req *ledgerv1.ReadEventsRequest, stream grpc.ServerStreamingServer[ledgerv1.ReadEventsResponse]) error {
	ctx := stream.Context()
	ledger, from, to := req.GetLedger(), max(req.GetFromPosition(), 1), req.GetToPosition()
	if to != 0 && from > to {
		return invalidArgument("from_position", fmt.Sprintf("%d is after to_position %d", from, to))
	}
	head, _, err := s.store.Head(ctx, ledger)
	if err != nil {
		return s.readError(ledger, from, err)
	}
	if head == 0 { // nothing to read: for an auditor, a ledger with no event is unknown
		return statusOf(fmt.Errorf("%q: %w", ledger, domain.ErrUnknownLedger))
	}
	if to == 0 || to > head {
		to = head
	}
	// The next page is read from PostgreSQL while this one is sent: the
	// query's latency hides behind the stream instead of adding to it.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pages := make(chan readPage, 1)
	go s.readPages(ctx, ledger, from, to, pages)
	// A client that stops reading loses the stream (StreamStallMax).
	sender := newStallSender(stream, "events of "+ledger, s.streamStallMax)
	defer sender.stop()
	out := &eventSender{send: sender.send, pool: s.wires}
	for page := range pages {
		if page.err != nil {
			return page.err
		}
		for i := range page.recs {
			if err := out.add(&page.recs[i]); err != nil {
				return err
			}
		}
	}
	if err := out.flush(); err != nil {
		return err
	}
	return sender.finish()
}

// readPage is a page of the log, or the error that ended the reading.
type readPage struct {
	recs []eventstore.Record
	err  error
}

// readPages reads ledger's log from..to into pages, in order, and closes
// pages at the end, after an error, or when ctx ends.
func (s *AuditServer) readPages(ctx context.Context, ledger string, from, to uint64, pages chan<- readPage) {
	defer close(pages)
	for from <= to {
		recs, err := s.store.Read(ctx, ledger, from, int(min(to-from+1, eventstore.ReadMax)))
		if err != nil {
			err = s.readError(ledger, from, err)
		}
		n := 0
		for n < len(recs) && recs[n].Position <= to {
			n++ // past a gap: a page is at most to-from+1 long
		}
		select {
		case pages <- readPage{recs: recs[:n], err: err}:
		case <-ctx.Done():
			return
		}
		if err != nil || len(recs) == 0 {
			return // rows missing up to the head: the auditor sees where
		}
		from = recs[len(recs)-1].Position + 1
	}
}

// eventSender batches events into messages within the bounds.
type eventSender struct {
	send   func(*encodedMessage) error
	pool   *bufferPool
	wire   []byte
	events int
}

// add batches r.
//
// Errors: the stream's; DataLoss for a stored string that is not UTF-8.
func (o *eventSender) add(r *eventstore.Record) error {
	size := eventWireLen(r)
	n := size + logEventFraming
	if o.events == readEventsBatchMax || o.events > 0 && len(o.wire)+n > readEventsBytesMax {
		if err := o.flush(); err != nil {
			return err
		}
	}
	if o.wire == nil {
		o.wire = (*o.pool.Get(0))[:0]
	}
	wire, err := appendEvent(o.wire, r, size)
	if err != nil {
		return err
	}
	o.wire = wire
	o.events++
	return nil
}

// logEventFraming bounds an event's tag and length in the message.
const logEventFraming = 1 + binary.MaxVarintLen64

// flush sends what is batched, as a message of its own: gRPC may still
// read it after SendMsg returns (a trace, a stats handler), and puts its
// buffer back in the pool once written.
func (o *eventSender) flush() error {
	if o.events == 0 {
		return nil
	}
	err := o.send(&encodedMessage{wire: o.wire, pool: o.pool})
	o.wire, o.events = nil, 0
	return err
}

// readError logs a database error and translates it.
func (s *AuditServer) readError(ledger string, from uint64, err error) error {
	st := statusOf(err)
	if status.Code(st) == codes.Internal {
		s.logger.Error("read events", "ledger", ledger, "from", from, "err", err)
	}
	return st
}
