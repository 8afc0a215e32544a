package grpcapi

import (
	"cmp"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/eventstore"
)

// importEventsPerMessageMax bounds the events of one ImportEventsRequest.
const importEventsPerMessageMax = 8192

// ImportMessageWaitMax bounds how long ImportEvents waits for its
// client's next message while it receives the log, from the one before:
// a client that sends nothing (or too slowly) for that long loses the
// stream (Aborted), and the import what it spooled and its share of the
// receive budget. It is a message's bound, not a byte's (gRPC tells a
// handler of whole messages only): long enough for the largest message, 64
// MiB, at 110 KB/s, ledgerctl's 16 MiB at 28 KB/s. Once the log is in, the
// append takes what it takes.
const ImportMessageWaitMax = 10 * time.Minute

// ImportEvents loads an exported log into a new, empty ledger, named by the
// first message: workflows.LogImport.Import, which says how (verified whole
// into a spool, then appended in fenced chunks that resume when the same log
// is sent again).
//
// Errors: InvalidArgument on ledger (malformed, missing from the first
// message, or another name in a later one) and on events (over 8,192 in a
// message, over 100M in all or 64 GiB spooled, an empty later message, a
// malformed event, or the first bad event: its position and the reason);
// FailedPrecondition when the target holds events that are not a prefix of
// this log, already holds all of it, or is archived (an empty ledger, made by
// CreateLedger, is a new one); ResourceExhausted at the bound of live
// ledgers; Aborted when another writer appended to the target during the
// import; Unavailable when an append failed (send the same log again to
// resume); Aborted when the client's next message took more than
// ImportMessageWaitMax while the log was being received; the stream's own Canceled or DeadlineExceeded;
// Internal otherwise.
func (s *AuditServer) ImportEvents(stream grpc.ClientStreamingServer[ledgerv1.ImportEventsRequest, ledgerv1.ImportEventsResponse]) error {
	// The import runs on a goroutine of its own: a Recv waiting on a client
	// that sends nothing returns only once the handler returns, which ends
	// the stream.
	idle := cmp.Or(s.importIdleMax, ImportMessageWaitMax)
	heard := make(chan struct{}, 1)
	var receiving atomic.Bool
	receiving.Store(true)
	recv := func() (*ledgerv1.ImportEventsRequest, error) {
		m, err := stream.Recv()
		if err != nil {
			receiving.Store(false)
		}
		select {
		case heard <- struct{}{}:
		default:
		}
		return m, err
	}
	ended := make(chan error, 1)
	go func() { ended <- s.importEvents(stream, recv) }()
	t := time.NewTimer(idle)
	defer t.Stop()
	for {
		select {
		case err := <-ended:
			return err
		case <-heard:
			if receiving.Load() {
				t.Reset(idle)
			} else {
				t.Stop()
			}
		case <-t.C:
			if !receiving.Load() {
				continue // the log came in meanwhile: the import goes on
			}
			return status.Errorf(codes.Aborted, "import: no message from the client for %s: the stream was ended", idle)
		}
	}
}

// importEvents is ImportEvents' work, receiving through recv.
func (s *AuditServer) importEvents(stream grpc.ClientStreamingServer[ledgerv1.ImportEventsRequest, ledgerv1.ImportEventsResponse],
	recv func() (*ledgerv1.ImportEventsRequest, error)) error {
	first, err := recv()
	if errors.Is(err, io.EOF) {
		return invalidArgument("ledger", "the first message names the ledger to import into")
	}
	if err != nil {
		return err
	}
	src := &importStream{recv: recv, next: first, ledger: first.GetLedger()}
	got, err := s.logImport.Import(stream.Context(), first.GetLedger(), src)
	if err != nil {
		if src.err != nil && errors.Is(err, src.err) {
			return src.err // already the client's answer
		}
		return statusOf(err)
	}
	return stream.SendAndClose(&ledgerv1.ImportEventsResponse{Ledger: got.Ledger, Events: got.Events, Position: got.Position,
		Hash: hex.EncodeToString(got.Hash[:])})
}

// importStream decodes an ImportEvents stream for the import, a message at a
// time.
type importStream struct {
	recv   func() (*ledgerv1.ImportEventsRequest, error)
	ledger string
	// next is the message received but not yet decoded (the first).
	next *ledgerv1.ImportEventsRequest
	n    int
	// err is the last error Next returned: a status, or the stream's own.
	err error
}

// Next returns the next message's events.
//
// Errors: io.EOF after the last; InvalidArgument on events or ledger; the
// stream's.
func (st *importStream) Next() ([]eventstore.Record, error) {
	recs, err := st.decode()
	st.err = err
	if errors.Is(err, io.EOF) {
		st.err = nil
	}
	return recs, err
}

func (st *importStream) decode() ([]eventstore.Record, error) {
	msg := st.next
	st.next = nil
	if msg == nil {
		var err error
		if msg, err = st.recv(); err != nil {
			return nil, err
		}
	}
	events := msg.GetEvents()
	switch {
	case len(events) > importEventsPerMessageMax:
		return nil, invalidArgument("events", fmt.Sprintf("%d in one message, at most %d", len(events), importEventsPerMessageMax))
	case st.n > 0 && len(events) == 0:
		return nil, invalidArgument("events", "a message after the first carries no events")
	case st.n > 0 && msg.GetLedger() != "" && msg.GetLedger() != st.ledger:
		return nil, invalidArgument("ledger", fmt.Sprintf("%q in a later message: the first named %q", msg.GetLedger(), st.ledger))
	}
	st.n++
	recs := make([]eventstore.Record, len(events))
	for i, ev := range events {
		r, err := importRecordOf(ev)
		if err != nil {
			return nil, invalidArgument("events", err.Error())
		}
		recs[i] = r
	}
	return recs, nil
}

// importRecordOf rebuilds the record an event carries.
//
// Errors: a malformed recorded_at or hash, naming the position.
func importRecordOf(e *ledgerv1.LogEvent) (eventstore.Record, error) {
	if err := e.GetRecordedAt().CheckValid(); err != nil {
		return eventstore.Record{}, fmt.Errorf("malformed event at position %d: recorded_at: %w", e.GetPosition(), err)
	}
	r := eventstore.Record{Ledger: e.GetLedger(), Position: e.GetPosition(), Type: e.GetType(),
		SchemaVersion: int(e.GetSchemaVersion()), RecordedAt: e.GetRecordedAt().AsTime().UTC(),
		CommandID: e.GetCommandId(), Payload: []byte(e.GetPayload())}
	if err := importHash(&r.PrevHash, e.GetPrevHash()); err != nil {
		return eventstore.Record{}, fmt.Errorf("malformed event at position %d: prev_hash: %w", r.Position, err)
	}
	if err := importHash(&r.Hash, e.GetHash()); err != nil {
		return eventstore.Record{}, fmt.Errorf("malformed event at position %d: hash: %w", r.Position, err)
	}
	return r, nil
}

func importHash(h *eventstore.Hash, s string) error {
	if len(s) != 2*eventstore.HashSize {
		return fmt.Errorf("%d hex digits, want %d", len(s), 2*eventstore.HashSize)
	}
	_, err := hex.Decode(h[:], []byte(s))
	return err
}
