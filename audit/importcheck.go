package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
)

// Limits of an import.
const (
	// ImportPayloadMax bounds one event's payload: the largest a writer
	// decides (domain.EventPayloadMax, a period's close over the most assets).
	ImportPayloadMax = domain.EventPayloadMax
	// ImportLineMax bounds one record in JSON Lines: its payload and envelope.
	ImportLineMax = ImportPayloadMax + 4<<10
	// importTypeLenMax bounds an event's type name.
	importTypeLenMax = domain.EventTypeLenMax
	// importIndexStride is every how many records ImportIndex keeps an offset:
	// a look-up skips at most this many records.
	importIndexStride = 64
)

// The reasons an import is refused; an *ImportError carries one of them.
var (
	ErrImportPosition     = errors.New("position out of order")
	ErrImportLedger       = errors.New("event of another ledger")
	ErrImportPrevHash     = errors.New("prev_hash does not link to the event before")
	ErrImportHash         = errors.New("hash does not match the event")
	ErrImportEnvelope     = errors.New("malformed envelope")
	ErrImportRecordedAt   = errors.New("recorded_at goes back")
	ErrImportPayload      = errors.New("payload does not decode")
	ErrImportNotCanonical = errors.New("payload is not in canonical form")
	ErrImportDuplicateID  = errors.New("id taken twice")
	ErrImportReversal     = errors.New("reversal does not match the transfer it reverses")
	ErrImportInvariant    = errors.New("invariant broken")
)

// ImportError is the refusal of an event: the first bad one of a log.
type ImportError struct {
	// Position is the event's own position (which, for an event out of
	// order, is not where it stands).
	Position uint64
	// Err is the reason: one of the ErrImport sentinels.
	Err    error
	Detail string
}

func (e *ImportError) Error() string {
	s := fmt.Sprintf("%v at position %d", e.Err, e.Position)
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

func (e *ImportError) Unwrap() error { return e.Err }

// ImportPrior returns the record at an earlier position of the log being
// checked: the checker asks for it to confirm a repeated id and to check a
// reversal against its original.
type ImportPrior func(pos uint64) (eventstore.Record, error)

// ImportChecker verifies an exported log event by event, in position order,
// as an import must before anything is written: each event follows the one
// before (gapless positions from 1, prev_hash links, one ledger), its hash is
// what its content gives under its own ledger name, its envelope is one a
// writer writes (command id, type, recorded time to the microsecond and never
// going back), its payload decodes and is byte for byte the canonical
// encoding of what it decodes to (so that PostgreSQL and every read model
// store it as is), it takes no transfer id taken before, a reversal undoes
// at most what is left of a posted transfer, and it applies to the state of
// the events before without breaking an invariant (domain.State.Evolve
// panics, and the panic is the refusal).
//
// It does not re-decide commands: bounds, effective-time windows and other
// rules of Decide hold for the state a writer saw, which a log may have
// changed since (bounds are changeable), and are not asserted on replay.
//
// A checker is not safe for concurrent use; after a refusal it refuses
// everything.
type ImportChecker struct {
	prior      ImportPrior
	state      *domain.State
	ledger     string
	head       uint64
	hash       eventstore.Hash
	recordedAt time.Time
	buf        []byte
	err        error
}

// NewImportChecker returns a checker of a log from position 1; prior gives
// records it has accepted before.
func NewImportChecker(prior ImportPrior) *ImportChecker {
	return &ImportChecker{prior: prior, state: domain.NewState()}
}

// Complete reports whether the log checked so far may end here: not
// between an AlertRaised and the hold it asks for, which a writer appends
// together (a log cut there would have its writer append something else
// where the hold stands).
//
// Errors: an *ImportError (ErrImportInvariant) at the head.
func (c *ImportChecker) Complete() error {
	if id, ok := c.state.AlertHoldPending(); ok {
		return refuse(c.head, ErrImportInvariant, "the log ends between the AlertRaised of alert %s and its hold: export one event more", id)
	}
	return nil
}

// Ledger is the name of the ledger of the events checked: the first one's.
func (c *ImportChecker) Ledger() string { return c.ledger }

// Head returns the position and hash of the last event accepted.
func (c *ImportChecker) Head() (uint64, eventstore.Hash) { return c.head, c.hash }

// Check verifies r, the next event of the log, and applies it to the state.
//
// Errors: an *ImportError naming r's position and the reason (the checker
// then refuses every later event with it); the error of prior, which is not
// the log's fault.
func (c *ImportChecker) Check(r *eventstore.Record) error {
	return c.checkDecoded(r, nil)
}

// checkDecoded is Check for a record whose hash the caller has verified and
// whose payload it has decoded into e (Verify, which checks the chain and
// decodes for its book first); with e nil, it is Check.
func (c *ImportChecker) checkDecoded(r *eventstore.Record, e domain.Event) error {
	if c.err != nil {
		return c.err
	}
	if err := c.check(r, e); err != nil {
		var ie *ImportError
		if errors.As(err, &ie) {
			c.err = err
		}
		return err
	}
	c.head, c.hash = r.Position, r.Hash
	c.recordedAt = r.RecordedAt
	if c.ledger == "" {
		c.ledger = r.Ledger
	}
	return nil
}

func refuse(pos uint64, reason error, format string, args ...any) error {
	return &ImportError{Position: pos, Err: reason, Detail: fmt.Sprintf(format, args...)}
}

func (c *ImportChecker) check(r *eventstore.Record, e domain.Event) error {
	pos := r.Position
	if err := c.checkChain(r, e == nil); err != nil {
		return err
	}
	if err := c.checkEnvelope(r); err != nil {
		return err
	}
	if e == nil {
		var err error
		if e, err = domain.UnmarshalEvent(r.Type, r.SchemaVersion, r.Payload); err != nil {
			return refuse(pos, ErrImportPayload, "%v", err)
		}
	}
	if err := c.checkCanonical(pos, e, r.Payload); err != nil {
		return err
	}
	if err := c.checkID(pos, e); err != nil {
		return err
	}
	if rev, ok := e.(domain.TransferReversed); ok {
		if err := c.checkReversal(pos, &rev); err != nil {
			return err
		}
	}
	// A closed period stays closed, and a close records the state's
	// figures: what the writer refuses or computes, which Evolve trusts.
	if err := domain.CheckPeriods(c.state, e); err != nil {
		return refuse(pos, ErrImportInvariant, "%v", err)
	}
	if a, ok := e.(domain.AlertRaised); ok {
		if err := domain.CheckRaised(c.state, &a, r.RecordedAt); err != nil {
			return refuse(pos, ErrImportInvariant, "%v", err)
		}
	}
	if err := domain.CheckAlertHolds(c.state, e); err != nil {
		return refuse(pos, ErrImportInvariant, "%v", err)
	}
	return c.evolve(pos, e)
}

// checkChain checks where r stands: after the event before, in its ledger,
// linked to it, with a hash that matches (when hash: else the caller
// verified it).
func (c *ImportChecker) checkChain(r *eventstore.Record, hash bool) error {
	pos := r.Position
	switch {
	case pos != c.head+1:
		return refuse(pos, ErrImportPosition, "expected position %d", c.head+1)
	case c.ledger == "" && !domain.ValidLedgerName(r.Ledger):
		return refuse(pos, ErrImportEnvelope, "ledger %q does not match [a-z0-9][a-z0-9-]{0,62}", r.Ledger)
	case c.ledger != "" && r.Ledger != c.ledger:
		return refuse(pos, ErrImportLedger, "ledger %q, the log's is %q", r.Ledger, c.ledger)
	case len(r.Payload) > ImportPayloadMax:
		return refuse(pos, ErrImportEnvelope, "payload of %d bytes, at most %d", len(r.Payload), ImportPayloadMax)
	case r.PrevHash != c.hash:
		return refuse(pos, ErrImportPrevHash, "prev_hash %x…, the event before has %x…", r.PrevHash[:4], c.hash[:4])
	case hash && !r.VerifyHash():
		return refuse(pos, ErrImportHash, "")
	}
	return nil
}

// checkEnvelope checks the fields a writer fills in.
func (c *ImportChecker) checkEnvelope(r *eventstore.Record) error {
	pos := r.Position
	switch {
	case len(r.Type) == 0 || len(r.Type) > importTypeLenMax:
		return refuse(pos, ErrImportEnvelope, "type of %d bytes", len(r.Type))
	case !domain.ValidCommandID(r.CommandID):
		// Every command id is an id, an asset code (an id too), a
		// statement line's external id or an alert's id.
		return refuse(pos, ErrImportEnvelope, "command_id %.80q does not match [A-Za-z0-9:_.@/-]{1,%d}", r.CommandID, domain.AlertIDLenMax)
	case r.RecordedAt.Nanosecond()%1000 != 0:
		return refuse(pos, ErrImportEnvelope, "recorded_at %s is not a whole microsecond", r.RecordedAt.Format(time.RFC3339Nano))
	case r.RecordedAt.Before(c.recordedAt):
		return refuse(pos, ErrImportRecordedAt, "%s after %s", r.RecordedAt.Format(time.RFC3339Nano),
			c.recordedAt.Format(time.RFC3339Nano))
	}
	return nil
}

// checkCanonical holds the payload to the bytes a writer would have written
// for its event; and refuses NUL in its strings, which no writer accepts and
// no read model can store.
func (c *ImportChecker) checkCanonical(pos uint64, e domain.Event, payload []byte) (err error) {
	defer func() {
		if p := recover(); p != nil { // AppendEvent panics on an event that does not encode
			err = refuse(pos, ErrImportNotCanonical, "%v", p)
		}
	}()
	c.buf = domain.AppendEvent(c.buf[:0], e)
	if !bytes.Equal(c.buf, payload) {
		return refuse(pos, ErrImportNotCanonical, "")
	}
	if importHasNUL(payload) {
		return refuse(pos, ErrImportPayload, "a string holds NUL")
	}
	return nil
}

// importHasNUL reports whether a canonical payload has a string with NUL,
// which canonical JSON writes as \u0000.
func importHasNUL(payload []byte) bool {
	if !bytes.Contains(payload, []byte(`\u0000`)) {
		return false
	}
	d := json.NewDecoder(bytes.NewReader(payload))
	for {
		tok, err := d.Token()
		if err != nil {
			return false // the payload decoded before: only io.EOF
		}
		if s, ok := tok.(string); ok && strings.IndexByte(s, 0) >= 0 {
			return true
		}
	}
}

// checkID refuses an event that takes a transfer id taken before: the
// writer's index holds 64-bit hashes, so a hit is confirmed against the
// event it points to.
func (c *ImportChecker) checkID(pos uint64, e domain.Event) error {
	id := domain.IndexKey(e)
	if id == "" {
		return nil
	}
	at, ok := c.state.TransferCandidate(id)
	if !ok {
		return nil
	}
	_, prior, err := c.priorEvent(at)
	if err != nil {
		return err
	}
	if domain.IndexKey(prior) == id {
		return refuse(pos, ErrImportDuplicateID, "%q was taken at position %d", id, at)
	}
	return nil
}

// priorEvent is the record at an earlier position pos, read again through
// prior, and its event.
func (c *ImportChecker) priorEvent(pos uint64) (eventstore.Record, domain.Event, error) {
	r, err := c.prior(pos)
	if err != nil {
		return r, nil, fmt.Errorf("read position %d again: %w", pos, err)
	}
	if r.Position != pos {
		return r, nil, fmt.Errorf("read position %d again: got %d", pos, r.Position)
	}
	e, err := domain.UnmarshalEvent(r.Type, r.SchemaVersion, r.Payload)
	if err != nil {
		return r, nil, fmt.Errorf("read position %d again: %w", pos, err)
	}
	return r, e, nil
}

// checkReversal checks a reversal against its original, which it names by
// id and position, by the domain's rule (domain.CheckReversal): each posting
// undoes the original's (credit to debit) by at most what is left of it, and
// something is reversed. What is left is what the state (State.Reversed)
// holds.
func (c *ImportChecker) checkReversal(pos uint64, e *domain.TransferReversed) error {
	at := e.TransferPosition
	if at == 0 || at >= pos {
		return refuse(pos, ErrImportReversal, "transfer_position %d", at)
	}
	_, prior, err := c.priorEvent(at)
	if err != nil {
		return err
	}
	original, ok := domain.ReversiblePostings(prior)
	if id, _ := domain.EventID(prior); !ok || id != e.TransferID {
		return refuse(pos, ErrImportReversal, "position %d is not the posted transfer %s", at, e.TransferID)
	}
	if _, err := domain.CheckReversal(original, c.state.Reversed(at), e.Postings); err != nil {
		return refuse(pos, ErrImportReversal, "%v", err)
	}
	return nil
}

// evolve applies e, turning the domain's panic on a broken invariant into a
// refusal. The state is then broken, and so is the checker.
func (c *ImportChecker) evolve(pos uint64, e domain.Event) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = refuse(pos, ErrImportInvariant, "%v", p)
		}
	}()
	c.state.Evolve(pos, e)
	if n := c.state.HoldCount(); n > domain.HoldsMax {
		return refuse(pos, ErrImportInvariant, "%d pending transfers open, a ledger holds at most %d", n, domain.HoldsMax)
	}
	return nil
}

// ImportIndex finds the records of a log file that is read, or written, in
// position order from 1: it keeps the offset of every 64th record, and a
// look-up reads forward from the nearest one. Its memory is 8 bytes per 64
// records.
type ImportIndex struct {
	r     io.ReaderAt
	frame func(*bufio.Reader) ([]byte, error)
	parse func([]byte) (eventstore.Record, error)
	marks []int64
	n     uint64
	br    *bufio.Reader
}

// NewImportIndex returns an index of the records in r, each read by frame
// (which returns its bytes, at most ImportLineMax) and decoded by parse.
func NewImportIndex(r io.ReaderAt, frame func(*bufio.Reader) ([]byte, error), parse func([]byte) (eventstore.Record, error)) *ImportIndex {
	return &ImportIndex{r: r, frame: frame, parse: parse, br: bufio.NewReaderSize(nil, ImportLineMax+1)}
}

// Add notes that the next record, at position Len()+1, starts at offset.
func (x *ImportIndex) Add(offset int64) {
	if x.n%importIndexStride == 0 {
		x.marks = append(x.marks, offset)
	}
	x.n++
}

// Len is the number of records added.
func (x *ImportIndex) Len() uint64 { return x.n }

// Record reads the record at pos (1..Len()).
//
// Errors: pos out of range; the error of reading or parsing.
func (x *ImportIndex) Record(pos uint64) (eventstore.Record, error) {
	if pos == 0 || pos > x.n {
		return eventstore.Record{}, fmt.Errorf("position %d of %d records", pos, x.n)
	}
	i := (pos - 1) / importIndexStride
	br := x.br
	br.Reset(io.NewSectionReader(x.r, x.marks[i], 1<<62))
	for skip := (pos - 1) % importIndexStride; ; skip-- {
		b, err := x.frame(br)
		if err != nil {
			return eventstore.Record{}, fmt.Errorf("position %d: %w", pos, err)
		}
		if skip == 0 {
			return x.parse(b)
		}
	}
}

// ImportNewLineReader returns a reader of JSON Lines from r for
// ImportReadLine: its buffer holds the longest line.
func ImportNewLineReader(r io.Reader) *bufio.Reader { return bufio.NewReaderSize(r, ImportLineMax+1) }

// ImportReadLine returns the next line of JSON Lines from br (made by
// ImportNewLineReader), without its line feed, and the bytes it took from br.
// The line is valid until the next read. The last line may lack its line
// feed.
//
// Errors: io.EOF at the end; an error for a line over ImportLineMax bytes;
// the read error.
func ImportReadLine(br *bufio.Reader) (line []byte, n int, err error) {
	line, err = br.ReadSlice('\n')
	switch {
	case errors.Is(err, bufio.ErrBufferFull):
		return nil, 0, fmt.Errorf("line longer than %d bytes", br.Size()-1)
	case errors.Is(err, io.EOF) && len(line) > 0:
		return line, len(line), nil
	case err != nil:
		return nil, 0, err
	}
	return line[:len(line)-1], len(line), nil
}

// ImportBlankLine reports whether a line of JSON Lines holds nothing but
// white space: such lines carry no record and are skipped.
func ImportBlankLine(line []byte) bool { return len(bytes.TrimSpace(line)) == 0 }

// ImportFrameLine is ImportReadLine for an ImportIndex of JSON Lines: it
// skips blank lines.
func ImportFrameLine(br *bufio.Reader) ([]byte, error) {
	for {
		line, _, err := ImportReadLine(br)
		if err != nil || !ImportBlankLine(line) {
			return line, err
		}
	}
}
