package grpcapi

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/commands"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/audit"
)

// Limits of an import.
const (
	// importEventsPerMessageMax bounds the events of one ImportEventsRequest.
	importEventsPerMessageMax = 8192
	// importEventsMax bounds the events of one import.
	importEventsMax = 100_000_000
	// importSpoolBytesMax bounds the verified log an import keeps on disk
	// until the whole stream has been verified (about 250 bytes an event plus
	// its payload: 100M events of 400 bytes fit).
	importSpoolBytesMax = 64 << 30
	// importChunkBytesMax bounds the records of one append (and so the
	// memory an import holds while appending), with eventstore.AppendMax.
	importChunkBytesMax = 64 << 20
	// importAppendTimeout bounds one append of a chunk.
	importAppendTimeout = 2 * time.Minute
	// importHeadTimeout bounds a look-up of the target's head.
	importHeadTimeout = 10 * time.Second
)

// ImportEvents loads an exported log into a new, empty ledger, named by the
// first message. Every event is checked as it arrives (audit.ImportChecker:
// gapless positions from 1, prev_hash links, each hash recomputed under the
// events' own ledger name, a canonical payload that decodes, and the event
// applies to the state of those before without breaking an invariant), then
// sealed anew under the target's name when it differs, and kept in a spool
// file (in the system's temporary directory, $TMPDIR; at most 64 GiB).
// Nothing is written to the log before the whole stream has been verified: a
// bad event anywhere leaves the target as it was. Verifying holds the
// ledger's state in memory, as its writer will.
//
// Then the spool is appended in chunks (eventstore.AppendMax records or
// 64 MiB, whichever comes first), each one fenced transaction: a log of one
// chunk goes in atomically. A larger one is not atomic across chunks, but by
// then the only failures left are the infrastructure's, and a failure leaves
// a prefix of the log: sending the same log again into the same ledger
// resumes after it (the target's head must be the log's own event at that
// position, sealed under the target name). The target is marked importing
// (eventstore.BeginImport) before the first chunk, and the last chunk's
// transaction makes it active: until then it takes no commands, here or in
// any ledgerd (FailedPrecondition "ledger is importing"), so nothing can make
// the import impossible to resume, even after a crash. An import that
// completed answers FailedPrecondition when sent again. After the import,
// the ledger's writer, relay and projectors start.
//
// Errors: InvalidArgument on ledger (malformed, missing from the first
// message, or another name in a later one) and on events (over 8,192 in a
// message, over 100M in all or 64 GiB spooled, an empty later message, a
// malformed event, or the first bad event: its position and the reason);
// FailedPrecondition when the target holds events that are not a prefix of
// this log, already holds all of it, or is archived (an empty ledger, made by
// CreateLedger, is a new one); Aborted when
// another writer appended to the target during the import; Unavailable when
// an append failed (send the same log again to resume); the stream's own
// Canceled or DeadlineExceeded; Internal otherwise.
func (s *AuditServer) ImportEvents(stream grpc.ClientStreamingServer[ledgerv1.ImportEventsRequest, ledgerv1.ImportEventsResponse]) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if errors.Is(err, io.EOF) {
		return invalidArgument("ledger", "the first message names the ledger to import into")
	}
	if err != nil {
		return err
	}
	if !domain.ValidLedgerName(first.GetLedger()) {
		return invalidArgument("ledger", ledgerNameReason)
	}
	t, err := s.importTarget(ctx, first.GetLedger())
	if err != nil {
		return err
	}
	sp, err := newImportSpool()
	if err != nil {
		return s.importInternal(t.ledger, "spool", err)
	}
	defer sp.close(s)
	checker, err := s.importReceive(stream, first, t, sp)
	if err != nil {
		return err
	}
	n, _ := checker.Head()
	if err := t.completes(n); err != nil {
		return err
	}
	// Marked before the first chunk goes in, cleared by the last chunk's own
	// transaction: a ledger an import stopped in takes no commands (a write
	// would make the import impossible to resume) until the same log is sent
	// again.
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), importHeadTimeout)
	err = s.store.BeginImport(bctx, t.ledger, commands.LedgersMaxDefault)
	cancel()
	if err != nil {
		if errors.Is(err, eventstore.ErrTooManyLiveLedgers) {
			return status.Errorf(codes.ResourceExhausted, "%v: archive some first", err)
		}
		if errors.Is(err, eventstore.ErrLedgerNotImportable) {
			return statusOf(err)
		}
		return s.importInternal(t.ledger, "begin", err)
	}
	head, hash, err := s.importAppend(ctx, t, sp, n)
	if err != nil {
		return err
	}
	if _, err := s.writers.Writer(t.ledger); err != nil {
		// The log is in: the writer starts on first use or at the next start.
		s.logger.Warn("import: start the writer", "ledger", t.ledger, "err", err)
	}
	s.logger.Info("import", "ledger", t.ledger, "source", checker.Ledger(), "events", n, "resumed_after", t.head)
	return stream.SendAndClose(&ledgerv1.ImportEventsResponse{Ledger: t.ledger, Events: n, Position: head,
		Hash: hex.EncodeToString(hash[:])})
}

// importTarget is the ledger an import writes into, as found at its start.
type importTarget struct {
	ledger string
	// head and hash are the target's head: 0 for a new ledger, else where an
	// interrupted import of the same log stopped.
	head uint64
	hash eventstore.Hash
	// first is the hash of the target's first event (when head > 0).
	first eventstore.Hash
}

// importTarget looks the target up: a new ledger with no writer running, or
// one to be checked, as the log arrives, for a prefix of it.
func (s *AuditServer) importTarget(ctx context.Context, ledger string) (*importTarget, error) {
	hctx, cancel := context.WithTimeout(ctx, importHeadTimeout)
	defer cancel()
	t := &importTarget{ledger: ledger}
	lg, err := s.store.Ledger(hctx, ledger)
	switch {
	case errors.Is(err, eventstore.ErrLedgerNotFound):
	case err != nil:
		return nil, s.importInternal(ledger, "status", err)
	case lg.Status == eventstore.StatusArchived:
		return nil, status.Errorf(codes.FailedPrecondition, "ledger %q is archived: import into a new ledger", ledger)
	}
	// An active ledger with events is checked against the log like an
	// interrupted import, so that the answer can say it holds this log
	// already; BeginImport refuses it in any case.
	head, hash, err := s.store.Head(hctx, ledger)
	if err != nil {
		return nil, s.importInternal(ledger, "head", err)
	}
	if head == 0 {
		// A new ledger, or an empty one (created, or left importing before
		// its first chunk). A writer of it that appends before BeginImport
		// makes BeginImport refuse; after, the log refuses its appends
		// (importing), and once the import is in, fencing makes it reload.
		return t, nil
	}
	recs, err := s.store.Read(hctx, ledger, 1, 1)
	if err != nil {
		return nil, s.importInternal(ledger, "read", err)
	}
	if len(recs) != 1 || recs[0].Position != 1 {
		return nil, s.importInternal(ledger, "read", fmt.Errorf("head %d but no event at 1", head))
	}
	t.head, t.hash, t.first = head, hash, recs[0].Hash
	return t, nil
}

// exists refuses a target that already holds events other than this log's.
func (t *importTarget) exists() error {
	return status.Errorf(codes.FailedPrecondition,
		"ledger %q exists (%d events) and is not an interrupted import of this log: import into a new ledger", t.ledger, t.head)
}

// follows checks r, sealed under the target's name, against what the target
// already holds: the same event at position 1 and at its head.
func (t *importTarget) follows(r *eventstore.Record) error {
	if t.head == 0 {
		return nil
	}
	if (r.Position == 1 && r.Hash != t.first) || (r.Position == t.head && r.Hash != t.hash) {
		return t.exists()
	}
	return nil
}

// completes checks, once the log of n events has been verified, that it has
// something to add to the target.
func (t *importTarget) completes(n uint64) error {
	switch {
	case n == 0:
		return invalidArgument("events", "no events: the log is empty")
	case t.head == 0:
		return nil
	case n < t.head:
		return t.exists()
	case n == t.head:
		return status.Errorf(codes.FailedPrecondition, "ledger %q already holds this log: %d events, head %x",
			t.ledger, n, t.hash[:])
	}
	return nil
}

// importReceive verifies the stream, event by event, and spools each event
// sealed under the target's name.
func (s *AuditServer) importReceive(stream grpc.ClientStreamingServer[ledgerv1.ImportEventsRequest, ledgerv1.ImportEventsResponse],
	msg *ledgerv1.ImportEventsRequest, t *importTarget, sp *importSpool) (*audit.ImportChecker, error) {
	checker := audit.NewImportChecker(sp.record)
	var prev eventstore.Hash // the target's chain
	for n := 0; ; n++ {
		events := msg.GetEvents()
		switch {
		case len(events) > importEventsPerMessageMax:
			return nil, invalidArgument("events", fmt.Sprintf("%d in one message, at most %d", len(events), importEventsPerMessageMax))
		case n > 0 && len(events) == 0:
			return nil, invalidArgument("events", "a message after the first carries no events")
		case n > 0 && msg.GetLedger() != "" && msg.GetLedger() != t.ledger:
			return nil, invalidArgument("ledger", fmt.Sprintf("%q in a later message: the first named %q", msg.GetLedger(), t.ledger))
		}
		for _, ev := range events {
			if head, _ := checker.Head(); head >= importEventsMax {
				return nil, invalidArgument("events", fmt.Sprintf("more than %d", importEventsMax))
			}
			r, err := importRecordOf(ev)
			if err != nil {
				return nil, invalidArgument("events", err.Error())
			}
			if err := checker.Check(&r); err != nil {
				var ie *audit.ImportError
				if errors.As(err, &ie) {
					return nil, invalidArgument("events", err.Error())
				}
				return nil, s.importInternal(t.ledger, "check", err)
			}
			if r.Ledger != t.ledger {
				r.Ledger = t.ledger
				r.Seal(prev)
			}
			prev = r.Hash
			if err := t.follows(&r); err != nil {
				return nil, err
			}
			if err := sp.put(&r); err != nil {
				return nil, s.importInternal(t.ledger, "spool", err)
			}
			if sp.size > importSpoolBytesMax {
				return nil, invalidArgument("events", fmt.Sprintf("over %d bytes", int64(importSpoolBytesMax)))
			}
		}
		var err error
		msg, err = stream.Recv()
		if errors.Is(err, io.EOF) {
			return checker, nil
		}
		if err != nil {
			return nil, err
		}
	}
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

// importAppend appends the spooled log after the target's head, in chunks.
func (s *AuditServer) importAppend(ctx context.Context, t *importTarget, sp *importSpool, n uint64) (uint64, eventstore.Hash, error) {
	if err := sp.w.Flush(); err != nil {
		return 0, eventstore.Hash{}, s.importInternal(t.ledger, "spool", err)
	}
	br := bufio.NewReaderSize(io.NewSectionReader(sp.f, 0, sp.size), 1<<20)
	head, hash := t.head, t.hash
	var (
		chunk []eventstore.Record
		size  int
	)
	for pos := uint64(1); pos <= n; pos++ {
		b, err := importReadFrame(br)
		if err != nil {
			return 0, eventstore.Hash{}, s.importInternal(t.ledger, "spool", err)
		}
		if pos <= t.head {
			continue // in the target already: checked equal on the way in
		}
		r, err := eventstore.ParseRecordBinary(b)
		if err != nil {
			return 0, eventstore.Hash{}, s.importInternal(t.ledger, "spool", err)
		}
		chunk = append(chunk, r)
		size += len(b)
		if len(chunk) < eventstore.AppendMax && size < importChunkBytesMax && pos < n {
			continue
		}
		if err := s.importAppendChunk(ctx, t, head, hash, chunk, n); err != nil {
			return 0, eventstore.Hash{}, err
		}
		last := &chunk[len(chunk)-1]
		head, hash = last.Position, last.Hash
		chunk, size = chunk[:0], 0
	}
	return head, hash, nil
}

// importAppendChunk appends one chunk after expected. The log is verified by
// now, so the append goes on if the client goes away.
func (s *AuditServer) importAppendChunk(ctx context.Context, t *importTarget, expected uint64, prev eventstore.Hash,
	chunk []eventstore.Record, n uint64) error {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), importAppendTimeout)
	defer cancel()
	last := &chunk[len(chunk)-1]
	err := s.store.AppendImport(actx, t.ledger, expected, prev, chunk, last.Position == n)
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(err, eventstore.ErrLedgerArchived), errors.Is(err, eventstore.ErrLedgerNotImportable):
		return status.Errorf(codes.Aborted,
			"ledger %q changed status during the import, after position %d: %v", t.ledger, expected, err)
	case errors.Is(err, eventstore.ErrFenced):
		return status.Errorf(codes.Aborted,
			"ledger %q was written by another writer during the import, after position %d: import into a new ledger", t.ledger, expected)
	case errors.Is(err, eventstore.ErrBadBatch):
		return s.importInternal(t.ledger, "append", err)
	}
	// After a failed COMMIT the outcome is unknown: the head tells.
	hctx, hcancel := context.WithTimeout(context.WithoutCancel(ctx), importHeadTimeout)
	defer hcancel()
	if head, hash, herr := s.store.Head(hctx, t.ledger); herr == nil && head == last.Position && hash == last.Hash {
		return nil
	}
	s.logger.Error("import: append", "ledger", t.ledger, "after", expected, "events", n, "err", err)
	return status.Errorf(codes.Unavailable,
		"import into %q stopped after position %d of %d: send the same log again to resume", t.ledger, expected, n)
}

// importInternal logs an error that is not the client's and hides it.
func (s *AuditServer) importInternal(ledger, what string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return statusOf(err)
	}
	s.logger.Error("import: "+what, "ledger", ledger, "err", err)
	return status.Error(codes.Internal, "internal error")
}

// importSpool is the verified log on disk, in the binary form each record
// prefixed by its length, until it is appended: a temporary file, removed
// when the import ends.
type importSpool struct {
	f     *os.File
	w     *bufio.Writer
	size  int64
	index *audit.ImportIndex
	buf   []byte
}

func newImportSpool() (*importSpool, error) {
	f, err := os.CreateTemp("", "ledger-import-*.spool")
	if err != nil {
		return nil, err
	}
	sp := &importSpool{f: f, w: bufio.NewWriterSize(f, 1<<20)}
	sp.index = audit.NewImportIndex(f, importReadFrame, eventstore.ParseRecordBinary)
	return sp, nil
}

// put appends r to the spool.
func (sp *importSpool) put(r *eventstore.Record) error {
	body := r.AppendBinary(sp.buf[:0])
	var prefix [binary.MaxVarintLen64]byte
	p := binary.PutUvarint(prefix[:], uint64(len(body)))
	sp.index.Add(sp.size)
	if _, err := sp.w.Write(prefix[:p]); err != nil {
		return err
	}
	if _, err := sp.w.Write(body); err != nil {
		return err
	}
	sp.size += int64(p + len(body))
	sp.buf = body
	return nil
}

// record reads back the record at pos (for the checker).
func (sp *importSpool) record(pos uint64) (eventstore.Record, error) {
	if err := sp.w.Flush(); err != nil {
		return eventstore.Record{}, err
	}
	return sp.index.Record(pos)
}

func (sp *importSpool) close(s *AuditServer) {
	name := sp.f.Name()
	if err := sp.f.Close(); err != nil {
		s.logger.Warn("import: close the spool", "file", name, "err", err)
	}
	if err := os.Remove(name); err != nil {
		s.logger.Warn("import: remove the spool", "file", name, "err", err)
	}
}

// importReadFrame reads one length-prefixed record of the spool.
func importReadFrame(br *bufio.Reader) ([]byte, error) {
	n, err := binary.ReadUvarint(br)
	if err != nil {
		return nil, err
	}
	if n > audit.ImportLineMax {
		return nil, fmt.Errorf("spooled record of %d bytes", n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(br, b); err != nil {
		return nil, err
	}
	return b, nil
}
