package audit

import (
	"context"
	"fmt"

	"google.golang.org/grpc/status"

	"github.com/ledgerd/ledger/eventstore"
)

// Log is a ledger's event log as an auditor reads it: as many times as
// needed (Verify reads it again when a statement or a transfer diverges, to
// find the line or the transfer), from one goroutine at a time.
// Its implementations live beside what they read: servicelog (a running
// ledgerd), storelog (the event store), filelog (an export); every one
// passes the contract suite logtest.Run.
type Log interface {
	// Ledger names the ledger.
	Ledger() string
	// Head returns the position of the ledger's last event; 0 when the log
	// cannot say (a file: its end is its head).
	Head(ctx context.Context) (uint64, error)
	// Read calls fn with the records from..to (inclusive; to 0: the end) in
	// position order, a page at a time, exactly as the log holds them: a
	// missing position is simply absent. It stops at fn's first error and
	// returns it. Each page is fn's to keep: Read never reuses one. from 0
	// means 1; a from past the end reads nothing;
	// from after a non-zero to is refused with ErrRange before anything is
	// read.
	Read(ctx context.Context, from, to uint64, fn func([]eventstore.Record) error) error
}

// HeadUnknown is a Log whose Head cannot say where the ledger's log ends
// (a file: an export ends where it was cut). For any other Log, Head 0 is
// a log with no event, and an anchor past it is a log that lost events.
type HeadUnknown interface {
	Log
	HeadUnknown()
}

// MalformedError is a record a Log could not even decode (a hash that is
// not hex, a line that is not JSON): Verify reports a hash divergence there.
type MalformedError struct {
	// Position is the record's, or the position expected next when the
	// record does not say.
	Position uint64
	Err      error
}

func (e *MalformedError) Error() string {
	return fmt.Sprintf("malformed event at %d: %v", e.Position, e.Err)
}
func (e *MalformedError) Unwrap() error { return e.Err }

// CallError puts what was asked before a call's error, keeping its gRPC
// status (and code) so that ledgerctl prints it as any other call's.
func CallError(what string, err error) error {
	if st, ok := status.FromError(err); ok {
		return status.Error(st.Code(), what+": "+st.Message())
	}
	return fmt.Errorf("%s: %w", what, err)
}
