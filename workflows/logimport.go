package workflows

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/ledgerd/ledger/audit"
	"github.com/ledgerd/ledger/commands"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
)

// Limits of an import.
const (
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

// Errors of a log import; each is wrapped with what was refused.
var (
	// ErrImportBadLog: the log is empty, too large (over 100M events or
	// 64 GiB spooled), or an event of it is refused (its position and the
	// reason).
	ErrImportBadLog = domain.NewInvalid("events", "bad log", "")
	// ErrImportArchived: the target ledger is archived.
	ErrImportArchived = domain.NewError(domain.KindConflict, "target archived", "")
	// ErrImportExists: the target holds events that are not a prefix of
	// this log.
	ErrImportExists = domain.NewError(domain.KindConflict, "target holds another log", "")
	// ErrImportDone: the target holds all of this log already.
	ErrImportDone = domain.NewError(domain.KindConflict, "target holds this log", "")
	// ErrImportInterrupted: another writer appended to the target, or its
	// status changed, during the import.
	ErrImportInterrupted = domain.NewError(domain.KindAborted, "import interrupted", "")
	// ErrImportStopped: an append failed; sending the same log again
	// resumes after what went in.
	ErrImportStopped = domain.NewError(domain.KindUnavailable, "import stopped", "")
)

// Events is an import's log as it arrives, a batch at a time.
type Events interface {
	// Next returns the next batch of events; io.EOF after the last. Its
	// other errors (the stream's, a malformed event) end the import and are
	// returned as they are.
	Next() ([]eventstore.Record, error)
}

// Writers start a ledger's writer (commands.Ledgers).
type Writers interface {
	Writer(ledger string) (*commands.Writer, error)
}

// LogImport loads exported logs into ledgers.
type LogImport struct {
	store   *eventstore.Store
	writers Writers
	logger  *slog.Logger
}

// NewLogImport returns a LogImport into store; writers start a ledger's
// writer once its log is in.
func NewLogImport(store *eventstore.Store, writers Writers, logger *slog.Logger) *LogImport {
	if logger == nil {
		logger = slog.Default()
	}
	return &LogImport{store: store, writers: writers, logger: logger}
}

// Imported is what an import loaded.
type Imported struct {
	Ledger string
	// Events is the log's length; Position and Hash the target's head after.
	Events   uint64
	Position uint64
	Hash     eventstore.Hash
}

// Import loads an exported log (events) into ledger, a new, empty ledger.
// Every event is checked as it arrives (audit.ImportChecker: gapless
// positions from 1, prev_hash links, each hash recomputed under the events'
// own ledger name, a canonical payload that decodes, and the event applies to
// the state of those before without breaking an invariant), then sealed anew
// under the target's name when it differs, and kept in a spool file (in the
// system's temporary directory, $TMPDIR; at most 64 GiB). Nothing is written
// to the log before the whole stream has been verified: a bad event anywhere
// leaves the target as it was. Verifying holds the ledger's state in memory,
// as its writer will.
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
// any ledgerd (eventstore.ErrLedgerImporting), so nothing can make the import
// impossible to resume, even after a crash. An import that completed answers
// ErrImportDone when sent again. After the import, the ledger's writer starts.
//
// Errors: ErrImportBadLog; ErrImportArchived; ErrImportExists (an empty
// ledger, made by CreateLedger, is a new one); ErrImportDone;
// eventstore.ErrLedgerNotImportable; commands.ErrTooManyLedgers (the
// bound of active and importing ledgers);
// ErrImportInterrupted; ErrImportStopped; events' own errors, as they are;
// the context's; an error of the database or the spool otherwise.
func (li *LogImport) Import(ctx context.Context, ledger string, events Events) (Imported, error) {
	t, err := li.target(ctx, ledger)
	if err != nil {
		return Imported{}, err
	}
	sp, err := newImportSpool()
	if err != nil {
		return Imported{}, fmt.Errorf("import into %s: spool: %w", ledger, err)
	}
	defer sp.close(li.logger)
	checker, err := li.receive(events, t, sp)
	if err != nil {
		return Imported{}, err
	}
	n, _ := checker.Head()
	if err := t.completes(n); err != nil {
		return Imported{}, err
	}
	// Marked before the first chunk goes in, cleared by the last chunk's own
	// transaction: a ledger an import stopped in takes no commands (a write
	// would make the import impossible to resume) until the same log is sent
	// again.
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), importHeadTimeout)
	err = li.store.BeginImport(bctx, t.ledger, commands.LedgersMaxDefault)
	cancel()
	if err != nil {
		if errors.Is(err, eventstore.ErrTooManyLiveLedgers) {
			return Imported{}, refuse(commands.ErrTooManyLedgers, "%v: archive some first", err)
		}
		if errors.Is(err, eventstore.ErrLedgerNotImportable) {
			return Imported{}, err // says it all
		}
		return Imported{}, fmt.Errorf("import into %s: begin: %w", t.ledger, err)
	}
	head, hash, err := li.appendSpool(ctx, t, sp, n)
	if err != nil {
		return Imported{}, err
	}
	if _, err := li.writers.Writer(t.ledger); err != nil {
		// The log is in: the writer starts on first use or at the next start.
		li.logger.Warn("import: start the writer", "ledger", t.ledger, "err", err)
	}
	li.logger.Info("import", "ledger", t.ledger, "source", checker.Ledger(), "events", n, "resumed_after", t.head)
	return Imported{Ledger: t.ledger, Events: n, Position: head, Hash: hash}, nil
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

// target looks the target up: a new ledger with no writer running, or
// one to be checked, as the log arrives, for a prefix of it.
func (li *LogImport) target(ctx context.Context, ledger string) (*importTarget, error) {
	hctx, cancel := context.WithTimeout(ctx, importHeadTimeout)
	defer cancel()
	t := &importTarget{ledger: ledger}
	lg, err := li.store.Ledger(hctx, ledger)
	switch {
	case errors.Is(err, domain.ErrUnknownLedger):
	case err != nil:
		return nil, importFailed(ledger, "status", err)
	case lg.Status == eventstore.StatusArchived:
		return nil, refuse(ErrImportArchived, "ledger %q is archived: import into a new ledger", ledger)
	}
	// An active ledger with events is checked against the log like an
	// interrupted import, so that the answer can say it holds this log
	// already; BeginImport refuses it in any case.
	head, hash, err := li.store.Head(hctx, ledger)
	if err != nil {
		return nil, importFailed(ledger, "head", err)
	}
	if head == 0 {
		// A new ledger, or an empty one (created, or left importing before
		// its first chunk). A writer of it that appends before BeginImport
		// makes BeginImport refuse; after, the log refuses its appends
		// (importing), and once the import is in, fencing makes it reload.
		return t, nil
	}
	recs, err := li.store.Read(hctx, ledger, 1, 1)
	if err != nil {
		return nil, importFailed(ledger, "read", err)
	}
	if len(recs) != 1 || recs[0].Position != 1 {
		return nil, importFailed(ledger, "read", fmt.Errorf("head %d but no event at 1", head))
	}
	t.head, t.hash, t.first = head, hash, recs[0].Hash
	return t, nil
}

// exists refuses a target that already holds events other than this log's.
func (t *importTarget) exists() error {
	return refuse(ErrImportExists,
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
		return refuse(ErrImportBadLog, "no events: the log is empty")
	case t.head == 0:
		return nil
	case n < t.head:
		return t.exists()
	case n == t.head:
		return refuse(ErrImportDone, "ledger %q already holds this log: %d events, head %x",
			t.ledger, n, t.hash[:])
	}
	return nil
}

// receive verifies the log, event by event, and spools each event sealed
// under the target's name.
func (li *LogImport) receive(src Events, t *importTarget, sp *importSpool) (*audit.ImportChecker, error) {
	checker := audit.NewImportChecker(sp.record)
	var prev eventstore.Hash // the target's chain
	for {
		events, err := src.Next()
		if errors.Is(err, io.EOF) {
			if err := checker.Complete(); err != nil {
				return nil, refuse(ErrImportBadLog, "%s", err.Error())
			}
			return checker, nil
		}
		if err != nil {
			return nil, err
		}
		for i := range events {
			if head, _ := checker.Head(); head >= importEventsMax {
				return nil, refuse(ErrImportBadLog, "more than %d", importEventsMax)
			}
			r := &events[i]
			if err := checker.Check(r); err != nil {
				var ie *audit.ImportError
				if errors.As(err, &ie) {
					return nil, refuse(ErrImportBadLog, "%s", err.Error())
				}
				return nil, importFailed(t.ledger, "check", err)
			}
			if r.Ledger != t.ledger {
				r.Ledger = t.ledger
				r.Seal(prev)
			}
			prev = r.Hash
			if err := t.follows(r); err != nil {
				return nil, err
			}
			if err := sp.put(r); err != nil {
				return nil, importFailed(t.ledger, "spool", err)
			}
			if sp.size > importSpoolBytesMax {
				return nil, refuse(ErrImportBadLog, "over %d bytes", int64(importSpoolBytesMax))
			}
		}
	}
}

// appendSpool appends the spooled log after the target's head, in chunks.
func (li *LogImport) appendSpool(ctx context.Context, t *importTarget, sp *importSpool, n uint64) (uint64, eventstore.Hash, error) {
	if err := sp.w.Flush(); err != nil {
		return 0, eventstore.Hash{}, importFailed(t.ledger, "spool", err)
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
			return 0, eventstore.Hash{}, importFailed(t.ledger, "spool", err)
		}
		if pos <= t.head {
			continue // in the target already: checked equal on the way in
		}
		r, err := eventstore.ParseRecordBinary(b)
		if err != nil {
			return 0, eventstore.Hash{}, importFailed(t.ledger, "spool", err)
		}
		chunk = append(chunk, r)
		size += len(b)
		if len(chunk) < eventstore.AppendMax && size < importChunkBytesMax && pos < n {
			continue
		}
		if err := li.appendChunk(ctx, t, head, hash, chunk, n); err != nil {
			return 0, eventstore.Hash{}, err
		}
		last := &chunk[len(chunk)-1]
		head, hash = last.Position, last.Hash
		chunk, size = chunk[:0], 0
	}
	return head, hash, nil
}

// appendChunk appends one chunk after expected. The log is verified by
// now, so the append goes on if the client goes away.
func (li *LogImport) appendChunk(ctx context.Context, t *importTarget, expected uint64, prev eventstore.Hash,
	chunk []eventstore.Record, n uint64) error {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), importAppendTimeout)
	defer cancel()
	last := &chunk[len(chunk)-1]
	err := li.store.AppendImport(actx, t.ledger, expected, prev, chunk, last.Position == n)
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(err, eventstore.ErrLedgerArchived), errors.Is(err, eventstore.ErrLedgerNotImportable):
		return refuse(ErrImportInterrupted,
			"ledger %q changed status during the import, after position %d: %v", t.ledger, expected, err)
	case errors.Is(err, eventstore.ErrFenced):
		return refuse(ErrImportInterrupted,
			"ledger %q was written by another writer during the import, after position %d: import into a new ledger", t.ledger, expected)
	case errors.Is(err, eventstore.ErrBadBatch):
		return importFailed(t.ledger, "append", err)
	}
	// After a failed COMMIT the outcome is unknown: the head tells.
	hctx, hcancel := context.WithTimeout(context.WithoutCancel(ctx), importHeadTimeout)
	defer hcancel()
	if head, hash, herr := li.store.Head(hctx, t.ledger); herr == nil && head == last.Position && hash == last.Hash {
		return nil
	}
	li.logger.Error("import: append", "ledger", t.ledger, "after", expected, "events", n, "err", err)
	return refuse(ErrImportStopped,
		"import into %q stopped after position %d of %d: send the same log again to resume", t.ledger, expected, n)
}

// importFailed is an error that is not the client's: the transport logs
// it and hides it.
func importFailed(ledger, what string, err error) error {
	return fmt.Errorf("import into %s: %s: %w", ledger, what, err)
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

func (sp *importSpool) close(logger *slog.Logger) {
	name := sp.f.Name()
	if err := sp.f.Close(); err != nil {
		logger.Warn("import: close the spool", "file", name, "err", err)
	}
	if err := os.Remove(name); err != nil {
		logger.Warn("import: remove the spool", "file", name, "err", err)
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
