package consumer

import (
	"errors"
	"fmt"
	"time"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
)

// ErrChainBroken means an event does not continue the hash chain from the
// last one applied: its hash does not match its content, its prev_hash is
// not the hash before it, or it is not the next position. The event is never
// handed to the handler. A *ChainError carries the position.
var ErrChainBroken = errors.New("the hash chain is broken")

// ChainError is an event refused because it does not continue the chain.
type ChainError struct {
	Ledger   string
	Position uint64
	// Reason says what does not hold.
	Reason string
}

func (e *ChainError) Error() string {
	return fmt.Sprintf("ledger %s at position %d: %s: %v", e.Ledger, e.Position, e.Reason, ErrChainBroken)
}

// Unwrap makes errors.Is(err, ErrChainBroken) hold.
func (e *ChainError) Unwrap() error { return ErrChainBroken }

// Checkpoint is the last event a consumer applied: its position and hash.
// The zero Checkpoint is the start of a ledger (the first event's prev_hash
// is all zeros).
type Checkpoint struct {
	Position uint64
	Hash     eventstore.Hash
}

// Event is one verified event of a ledger, decoded.
type Event struct {
	Ledger     string
	Position   uint64
	Type       string
	RecordedAt time.Time
	// CommandID is the id of the command that produced the event (the
	// transfer id, the account id, the asset code).
	CommandID string
	// Data is the decoded event, a domain type (domain.TransferCommitted,
	// domain.AccountOpened, ...). It is nil for a type or schema version this
	// build does not know: the event is verified and handed over all the same
	// (Record.Payload holds its JSON), so that a consumer built before a new
	// event type does not stop on it; a handler that must understand every
	// event refuses a nil Data.
	Data domain.Event
	// Record is the event as the log holds it, with its hashes.
	Record eventstore.Record
}

// Checkpoint is the checkpoint after e.
func (e *Event) Checkpoint() Checkpoint {
	return Checkpoint{Position: e.Position, Hash: e.Record.Hash}
}

// Next verifies that rec continues the chain from c, the next position
// with prev_hash c.Hash and a hash that matches its content, decodes it, and
// returns it with the checkpoint after it.
//
// Errors: *ChainError (ErrChainBroken); a payload that does not decode as
// its (known) type.
func (c Checkpoint) Next(rec eventstore.Record) (Event, Checkpoint, error) {
	fail := func(reason string, args ...any) (Event, Checkpoint, error) {
		return Event{}, c, &ChainError{Ledger: rec.Ledger, Position: rec.Position, Reason: fmt.Sprintf(reason, args...)}
	}
	switch {
	case rec.Position != c.Position+1:
		return fail("got position %d after %d: a gap or a repeat", rec.Position, c.Position)
	case rec.PrevHash != c.Hash:
		return fail("prev_hash %x does not continue %x", rec.PrevHash[:8], c.Hash[:8])
	case !rec.VerifyHash():
		return fail("the hash does not match the event")
	}
	data, err := domain.UnmarshalEvent(rec.Type, rec.SchemaVersion, rec.Payload)
	if err != nil && !errors.Is(err, domain.ErrUnknownEvent) {
		return Event{}, c, fmt.Errorf("ledger %s at position %d: %w", rec.Ledger, rec.Position, err)
	}
	ev := Event{Ledger: rec.Ledger, Position: rec.Position, Type: rec.Type, RecordedAt: rec.RecordedAt,
		CommandID: rec.CommandID, Data: data, Record: rec}
	return ev, ev.Checkpoint(), nil
}
