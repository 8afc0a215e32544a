package audit

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/eventstore"
)

// Log is a ledger's event log as an auditor reads it: as many times as
// needed (Verify reads it twice when a statement diverges, to find the line).
type Log interface {
	// Ledger names the ledger.
	Ledger() string
	// Head returns the position of the ledger's last event; 0 when the log
	// cannot say (a file: its end is its head).
	Head(ctx context.Context) (uint64, error)
	// Read calls fn with the records from..to (inclusive; to 0: the end) in
	// position order, a page at a time, exactly as the log holds them: a
	// missing position is simply absent. It stops at fn's first error and
	// returns it. Each page is fn's to keep: Read never reuses one.
	Read(ctx context.Context, from, to uint64, fn func([]eventstore.Record) error) error
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

// RecordOf rebuilds the record a LogEvent carries, to verify its hash.
//
// Errors: *MalformedError for a hash that is not 64 hex digits.
func RecordOf(e *ledgerv1.LogEvent) (eventstore.Record, error) {
	r := eventstore.Record{Ledger: e.GetLedger(), Position: e.GetPosition(), Type: e.GetType(),
		SchemaVersion: int(e.GetSchemaVersion()), RecordedAt: e.GetRecordedAt().AsTime().UTC(),
		CommandID: e.GetCommandId(), Payload: []byte(e.GetPayload())}
	for _, h := range []struct {
		dst  *eventstore.Hash
		text string
		name string
	}{{&r.PrevHash, e.GetPrevHash(), "prev_hash"}, {&r.Hash, e.GetHash(), "hash"}} {
		if len(h.text) != 2*eventstore.HashSize {
			return eventstore.Record{}, &MalformedError{Position: r.Position,
				Err: fmt.Errorf("%s: %d hex digits, want %d", h.name, len(h.text), 2*eventstore.HashSize)}
		}
		if _, err := hex.Decode(h.dst[:], []byte(h.text)); err != nil {
			return eventstore.Record{}, &MalformedError{Position: r.Position, Err: fmt.Errorf("%s: %w", h.name, err)}
		}
	}
	return r, nil
}

// ServiceLog reads a ledger's log from a running ledgerd: AuditService.ReadEvents
// for the events, QueryService.GetProjectionStatus for the head.
type ServiceLog struct {
	Name  string
	Audit interface {
		ReadEvents(ctx context.Context, in *ledgerv1.ReadEventsRequest, opts ...grpc.CallOption) (grpc.ServerStreamingClient[ledgerv1.ReadEventsResponse], error)
	}
	Query interface {
		GetProjectionStatus(ctx context.Context, in *ledgerv1.GetProjectionStatusRequest, opts ...grpc.CallOption) (*ledgerv1.GetProjectionStatusResponse, error)
	}
}

func (l *ServiceLog) Ledger() string { return l.Name }

// Head is the head the projections' status reports (the log's own head
// row); 0 when no projection of the ledger has started yet.
//
// Errors: the call's (InvalidArgument for an unknown ledger).
func (l *ServiceLog) Head(ctx context.Context) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	resp, err := l.Query.GetProjectionStatus(ctx, &ledgerv1.GetProjectionStatusRequest{Ledger: l.Name})
	if err != nil {
		return 0, callError("head of "+l.Name, err)
	}
	var head uint64
	for _, p := range resp.GetProjections() {
		head = max(head, p.GetHead())
	}
	return head, nil
}

// Read streams ReadEvents; the stream lives as long as ctx.
//
// Errors: the stream's; *MalformedError for an event whose hashes are not hex.
func (l *ServiceLog) Read(ctx context.Context, from, to uint64, fn func([]eventstore.Record) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the stream when fn stops early
	stream, err := l.Audit.ReadEvents(ctx, &ledgerv1.ReadEventsRequest{Ledger: l.Name, FromPosition: from, ToPosition: to})
	if err != nil {
		return callError(fmt.Sprintf("read events of %s from %d", l.Name, from), err)
	}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return callError("read events of "+l.Name, err)
		}
		recs := make([]eventstore.Record, 0, len(resp.GetEvents()))
		for _, e := range resp.GetEvents() {
			r, err := RecordOf(e)
			if err != nil {
				// What came before it is checked first: the divergence
				// found may be earlier.
				if ferr := fn(recs); ferr != nil {
					return ferr
				}
				return err
			}
			recs = append(recs, r)
		}
		if err := fn(recs); err != nil {
			return err
		}
	}
}

// StoreLog reads a ledger's log from the event store directly, in pages of
// eventstore.ReadMax.
type StoreLog struct {
	Store *eventstore.Store
	Name  string
}

func (l *StoreLog) Ledger() string { return l.Name }

// Head is the store's head row.
//
// Errors: the database's.
func (l *StoreLog) Head(ctx context.Context) (uint64, error) {
	head, _, err := l.Store.Head(ctx, l.Name)
	return head, err
}

// Read reads pages of eventstore.ReadMax.
//
// Errors: the database's, or fn's.
func (l *StoreLog) Read(ctx context.Context, from, to uint64, fn func([]eventstore.Record) error) error {
	from = max(from, 1)
	for to == 0 || from <= to {
		limit := eventstore.ReadMax
		if to != 0 {
			limit = int(min(to-from+1, eventstore.ReadMax))
		}
		recs, err := l.Store.Read(ctx, l.Name, from, limit)
		if err != nil {
			return err
		}
		if len(recs) == 0 {
			return nil
		}
		for i, r := range recs {
			if to != 0 && r.Position > to {
				recs = recs[:i]
				break
			}
		}
		if len(recs) == 0 {
			return nil
		}
		if err := fn(recs); err != nil {
			return err
		}
		from = recs[len(recs)-1].Position + 1
	}
	return nil
}

// Limits of FileLog.
const (
	// fileLineMax bounds one line of an export: an event of 64 postings with
	// its metadata is far below it.
	fileLineMax = 4 << 20
	// filePageMax is the records FileLog hands over at once.
	filePageMax = 1000
)

// FileLog reads an export (JSON Lines, one eventstore.Record.AppendJSON per
// line) from a file, which may be read again.
type FileLog struct {
	Path string
	// Name is the ledger's name; empty: the first event's.
	Name string
}

func (l *FileLog) Ledger() string { return l.Name }

// Head is 0: a file's head is its last line.
func (l *FileLog) Head(context.Context) (uint64, error) { return 0, nil }

// Read reads the file from the start, skipping positions before from.
//
// Errors: the file's; *MalformedError for a line that does not parse.
func (l *FileLog) Read(ctx context.Context, from, to uint64, fn func([]eventstore.Record) error) error {
	f, err := os.Open(l.Path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), fileLineMax)
	page := make([]eventstore.Record, 0, filePageMax)
	var last uint64
	for sc.Scan() {
		if len(sc.Bytes()) == 0 {
			continue
		}
		r, err := eventstore.ParseRecordJSON(sc.Bytes())
		if err != nil {
			if ferr := fn(page); ferr != nil {
				return ferr
			}
			return &MalformedError{Position: last + 1, Err: err}
		}
		last = r.Position
		if l.Name == "" {
			l.Name = r.Ledger
		}
		if r.Position < from {
			continue
		}
		if to != 0 && r.Position > to {
			break
		}
		page = append(page, r)
		if len(page) == filePageMax {
			if err := fn(page); err != nil {
				return err
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			page = make([]eventstore.Record, 0, filePageMax)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", l.Path, err)
	}
	if len(page) > 0 {
		return fn(page)
	}
	return nil
}

// callError puts what was asked before a call's error, keeping its gRPC
// status (and code) so that ledgerctl prints it as any other call's.
func callError(what string, err error) error {
	if st, ok := status.FromError(err); ok {
		return status.Error(st.Code(), what+": "+st.Message())
	}
	return fmt.Errorf("%s: %w", what, err)
}
