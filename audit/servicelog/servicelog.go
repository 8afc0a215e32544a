// Package servicelog reads a ledger's log from a running ledgerd, through
// its AuditService: the audit.Log ledgerctl uses by default.
package servicelog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/audit"
	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/protoread"
)

// callTimeout bounds the unary call behind Head.
const callTimeout = 30 * time.Second

// RecordOf rebuilds the record a LogEvent carries, to verify its hash.
//
// Errors: *audit.MalformedError for a hash that is not 64 hex digits.
func RecordOf(e *ledgerv1.LogEvent) (eventstore.Record, error) {
	r := eventstore.Record{Ledger: e.GetLedger(), Position: e.GetPosition(), Type: e.GetType(),
		SchemaVersion: int(e.GetSchemaVersion()), RecordedAt: e.GetRecordedAt().AsTime().UTC(),
		CommandID: e.GetCommandId(), Payload: []byte(e.GetPayload())}
	if err := hashOf(&r.PrevHash, []byte(e.GetPrevHash()), "prev_hash", r.Position); err != nil {
		return eventstore.Record{}, err
	}
	if err := hashOf(&r.Hash, []byte(e.GetHash()), "hash", r.Position); err != nil {
		return eventstore.Record{}, err
	}
	return r, nil
}

// Log reads a ledger's log from a running ledgerd: AuditService.ReadEvents
// for the events, QueryService.GetProjectionStatus for the head.
type Log struct {
	Name  string
	Audit interface {
		ReadEvents(ctx context.Context, in *ledgerv1.ReadEventsRequest, opts ...grpc.CallOption) (grpc.ServerStreamingClient[ledgerv1.ReadEventsResponse], error)
	}
	Query interface {
		GetProjectionStatus(ctx context.Context, in *ledgerv1.GetProjectionStatusRequest, opts ...grpc.CallOption) (*ledgerv1.GetProjectionStatusResponse, error)
	}
}

func (l *Log) Ledger() string { return l.Name }

// Head is the head the projections' status reports (the log's own head
// row); 0 when no projection of the ledger has started yet.
//
// Errors: the call's (InvalidArgument for an unknown ledger).
func (l *Log) Head(ctx context.Context) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	resp, err := l.Query.GetProjectionStatus(ctx, &ledgerv1.GetProjectionStatusRequest{Ledger: l.Name})
	if err != nil {
		return 0, audit.CallError("head of "+l.Name, err)
	}
	var head uint64
	for _, p := range resp.GetProjections() {
		head = max(head, p.GetHead())
	}
	return head, nil
}

// Read streams ReadEvents; the stream lives as long as ctx.
//
// Errors: the stream's; *audit.MalformedError for an event whose hashes are not hex.
func (l *Log) Read(ctx context.Context, from, to uint64, fn func([]eventstore.Record) error) error {
	if to != 0 && max(from, 1) > to {
		return fmt.Errorf("read %s from %d to %d: %w", l.Name, from, to, audit.ErrRange)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the stream when fn stops early
	stream, err := l.Audit.ReadEvents(ctx, &ledgerv1.ReadEventsRequest{Ledger: l.Name, FromPosition: from, ToPosition: to},
		grpc.ForceCodecV2(protoread.Codec{}))
	if err != nil {
		return audit.CallError(fmt.Sprintf("read events of %s from %d", l.Name, from), err)
	}
	var page eventPage
	for {
		// Each message's records are a slice of their own: fn may keep them.
		page.recs = make([]eventstore.Record, 0, max(len(page.recs), 1))
		err := stream.RecvMsg(&page)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return audit.CallError("read events of "+l.Name, err)
		}
		if err := fn(page.recs); err != nil {
			return err
		}
		if page.malformed != nil {
			// What came before it was checked first: the divergence
			// found may be earlier.
			return page.malformed
		}
	}
}

// Checkpoints is every projection's checkpoint of the ledger, each with the
// head read in the same statement (GetProjectionStatus).
//
// Errors: the call's.
func (l *Log) Checkpoints(ctx context.Context) ([]audit.Checkpoint, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	resp, err := l.Query.GetProjectionStatus(ctx, &ledgerv1.GetProjectionStatusRequest{Ledger: l.Name})
	if err != nil {
		return nil, audit.CallError("projection status of "+l.Name, err)
	}
	out := make([]audit.Checkpoint, 0, len(resp.GetProjections()))
	for _, p := range resp.GetProjections() {
		out = append(out, audit.Checkpoint{Projection: p.GetName(), Position: p.GetPosition(), Head: p.GetHead()})
	}
	return out, nil
}
