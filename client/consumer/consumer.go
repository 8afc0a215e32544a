// Package consumer reads a ledger's events from NATS JetStream for a
// downstream service: in position order, each verified against the hash
// chain, decoded into the domain's event types and handed to a handler.
// The stream's framing (several events per message) is hidden.
//
// RunPostgres is the inbox: it applies each batch of events and moves the
// consumer's checkpoint in one transaction of the service's own PostgreSQL,
// so that every event is applied exactly once in effect, whatever crashes.
//
// Positions the stream no longer holds (it keeps 7 days by default) are read
// from ledgerd's AuditService.ReadEvents when Config.Audit is set; without it
// the consumer stops with ErrNotInStream. With Config.Audit, each batch is
// also confirmed against the log (ErrNotInLog); without it, only the chain
// is checked, which whoever can publish on the stream can extend.
package consumer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"

	"github.com/ledgerd/ledger/adapters/natsbus"
	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/audit/servicelog"
	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
)

// Limits of a consumer.
const (
	// BatchMaxDefault is how many events one fetch returns, and one
	// RunPostgres transaction applies, at most, unless Config.BatchMax says.
	BatchMaxDefault = 256
	// BatchMaxLimit bounds Config.BatchMax.
	BatchMaxLimit = 8192
	// streamWaitInterval is how often a consumer looks for a ledger's stream
	// that does not exist yet (no event relayed yet).
	streamWaitInterval = time.Second
)

// ErrNotInStream means the consumer needs a position the stream no longer
// holds (expired, or the stream was recreated) and has no Config.Audit to
// read it from ledgerd.
var ErrNotInStream = errors.New("the position is no longer in the stream")

// ErrNotInLog means a batch read from the stream is not the log's: with
// Config.Audit, the log holds another hash at the batch's last position,
// or nothing there (past its head). Whoever can publish on the stream can
// seal a forged event on the head's hash (it is on the stream too); the
// chain alone does not show it, the log does. None of the batch is handed
// to the handler, and the run stops.
var ErrNotInLog = errors.New("the event is not the log's")

// AuditClient is the part of ledgerv1.AuditServiceClient the consumer reads
// the log through when the stream no longer holds a position.
type AuditClient interface {
	ReadEvents(ctx context.Context, in *ledgerv1.ReadEventsRequest, opts ...grpc.CallOption) (grpc.ServerStreamingClient[ledgerv1.ReadEventsResponse], error)
}

// Config is what a Consumer reads and how.
type Config struct {
	// Ledger is the ledger whose events are read.
	Ledger string
	// NATS is a connection to the NATS ledgerd publishes on (NATSOptions.Connect).
	NATS *nats.Conn
	// Audit reads what the stream no longer holds from ledgerd; it needs an
	// API key with the auditor role on the ledger. Nil: such a position
	// stops the consumer with ErrNotInStream. With it, each batch is also
	// checked against the log before it is handed over (one read of one
	// event a batch: ErrNotInLog); without it, the events are checked
	// against the chain alone, which whoever can publish on the stream can
	// extend with a forged event.
	Audit AuditClient
	// BatchMax bounds the events of one fetch and one RunPostgres
	// transaction: 0 is BatchMaxDefault; at most BatchMaxLimit.
	BatchMax int
	// Logger; nil discards.
	Logger *slog.Logger
}

// Consumer reads one ledger's events. Run and RunPostgres may be called
// again after they return, and from several goroutines (each run reads the
// stream on its own).
type Consumer struct {
	cfg Config
	js  jetstream.JetStream
}

// New returns a consumer of cfg.Ledger.
//
// Errors: an invalid ledger name, no NATS connection, BatchMax out of range.
func New(cfg Config) (*Consumer, error) {
	switch {
	case !domain.ValidLedgerName(cfg.Ledger):
		return nil, fmt.Errorf("consumer: ledger %q: not a ledger name", cfg.Ledger)
	case cfg.NATS == nil:
		return nil, errors.New("consumer: NATS: no connection")
	case cfg.BatchMax < 0 || cfg.BatchMax > BatchMaxLimit:
		return nil, fmt.Errorf("consumer: BatchMax %d: want 0..%d", cfg.BatchMax, BatchMaxLimit)
	}
	if cfg.BatchMax == 0 {
		cfg.BatchMax = BatchMaxDefault
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	cfg.Logger = cfg.Logger.With("ledger", cfg.Ledger, "component", "consumer")
	js, err := jetstream.New(cfg.NATS)
	if err != nil {
		return nil, fmt.Errorf("consumer: JetStream: %w", err)
	}
	return &Consumer{cfg: cfg, js: js}, nil
}

// Handler handles one event. An error stops the run.
type Handler func(ctx context.Context, ev Event) error

// Run hands h every event after from, in order, until ctx ends or h fails.
// Where the events' effects and the checkpoint are kept is the caller's
// business (ev.Checkpoint() is the one to keep); RunPostgres keeps both in
// one transaction.
//
// Errors: ctx's; h's, wrapped with the position; *ChainError; ErrNotInLog;
// ErrNotInStream; NATS's and the log's.
func (c *Consumer) Run(ctx context.Context, from Checkpoint, h Handler) error {
	r, err := c.reader(ctx)
	if err != nil {
		return err
	}
	defer r.close()
	at := from
	for {
		evs, err := r.fetch(ctx, at, c.cfg.BatchMax)
		for i := range evs {
			if herr := h(ctx, evs[i]); herr != nil {
				return fmt.Errorf("consumer %s: handler at %d: %w", c.cfg.Ledger, evs[i].Position, herr)
			}
			at = evs[i].Checkpoint()
		}
		if err != nil {
			return err
		}
	}
}

// reader reads the stream through a natsbus.Source: the frames, and the
// positions the stream no longer holds from the log.
type reader struct {
	ledger string
	src    *natsbus.Source
	// log confirms each batch's last event (nil without Config.Audit).
	log *auditLog
}

// reader waits for the ledger's stream to exist (ledgerd creates it when it
// first relays), then returns a reader on it. It does not create the stream:
// the stream's limits are ledgerd's to set.
func (c *Consumer) reader(ctx context.Context) (*reader, error) {
	logged := false
	for {
		_, err := c.js.Stream(ctx, natsbus.StreamName(c.cfg.Ledger))
		if err == nil {
			break
		}
		if !errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, fmt.Errorf("consumer %s: stream: %w", c.cfg.Ledger, err)
		}
		if !logged {
			c.cfg.Logger.Info("waiting for the ledger's stream", "stream", natsbus.StreamName(c.cfg.Ledger))
			logged = true
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(streamWaitInterval):
		}
	}
	var (
		log     natsbus.Log = &streamOnly{js: c.js}
		confirm *auditLog
	)
	if c.cfg.Audit != nil {
		confirm = &auditLog{audit: c.cfg.Audit}
		log = confirm
	}
	// Should the stream go between the check above and the source's start
	// (a stream repair), the source fails rather than create it, and the
	// run ends with jetstream.ErrStreamNotFound: the stream's limits are
	// ledgerd's.
	src := natsbus.NewSource(c.cfg.Ledger, c.js, log, natsbus.StreamOptions{LookupOnly: true}, c.cfg.Logger)
	return &reader{ledger: c.cfg.Ledger, src: src, log: confirm}, nil
}

// fetch returns 1..max events after at, verified and decoded, waiting for
// one. Before an error, it returns the events that came before the fault.
// With a log (Config.Audit), the events are confirmed against it (confirm)
// before they are returned.
//
// Errors: ctx's; *ChainError; ErrNotInLog; a payload that does not decode;
// the source's and the log's.
func (r *reader) fetch(ctx context.Context, at Checkpoint, max int) ([]Event, error) {
	recs, err := r.src.Next(ctx, at.Position+1, max)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("consumer %s at %d: %w", r.ledger, at.Position+1, err)
	}
	evs, err := r.chain(at, recs)
	if cerr := r.confirm(ctx, evs); cerr != nil {
		return nil, cerr
	}
	return evs, err
}

// chain verifies and decodes recs, which continue at; before an error it
// returns the events that came before the fault.
//
// Errors: *ChainError; a payload that does not decode.
func (r *reader) chain(at Checkpoint, recs []eventstore.Record) ([]Event, error) {
	evs := make([]Event, 0, len(recs))
	for _, rec := range recs {
		if rec.Ledger != r.ledger {
			return evs, &ChainError{Ledger: r.ledger, Position: rec.Position, Reason: fmt.Sprintf("the event is ledger %q's", rec.Ledger)}
		}
		ev, next, err := at.Next(rec)
		if err != nil {
			return evs, err
		}
		at = next
		evs = append(evs, ev)
	}
	return evs, nil
}

// confirm checks that the log holds, at the position of the last of evs
// (which continue the chain), the event with its hash: the chain then
// vouches for the events before it. One read of one event a batch, not
// one an event. Nothing to do without a log or events.
//
// Errors: ErrNotInLog (another hash there, or nothing: past the log's
// head); ctx's; the log's.
func (r *reader) confirm(ctx context.Context, evs []Event) error {
	if r.log == nil || len(evs) == 0 {
		return nil
	}
	last := evs[len(evs)-1].Record
	recs, err := r.log.Read(ctx, r.ledger, last.Position, 1)
	switch {
	case err != nil && ctx.Err() != nil:
		return ctx.Err()
	case err != nil:
		return fmt.Errorf("consumer %s: confirm %d against the log: %w", r.ledger, last.Position, err)
	case len(recs) == 0 || recs[0].Position != last.Position:
		return fmt.Errorf("consumer %s at %d: the log holds nothing there (past its head): %w", r.ledger, last.Position, ErrNotInLog)
	case recs[0].Hash != last.Hash:
		return fmt.Errorf("consumer %s at %d: the stream's hash %x, the log's %x: %w", r.ledger, last.Position,
			last.Hash[:8], recs[0].Hash[:8], ErrNotInLog)
	}
	return nil
}

func (r *reader) close() { r.src.Close() }

// auditLog reads the log through AuditService.ReadEvents: what a Source
// falls back to for positions the stream no longer holds.
type auditLog struct{ audit AuditClient }

// Read returns up to limit records from `from`.
//
// Errors: the call's (PermissionDenied without the auditor role).
func (l *auditLog) Read(ctx context.Context, ledger string, from uint64, limit int) ([]eventstore.Record, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the stream
	stream, err := l.audit.ReadEvents(ctx, &ledgerv1.ReadEventsRequest{Ledger: ledger, FromPosition: from,
		ToPosition: from + uint64(max(limit, 1)) - 1})
	if err != nil {
		return nil, fmt.Errorf("read events of %s from %d: %w", ledger, from, err)
	}
	var out []eventstore.Record
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read events of %s from %d: %w", ledger, from, err)
		}
		for _, e := range resp.GetEvents() {
			rec, err := servicelog.RecordOf(e)
			if err != nil {
				return nil, err
			}
			out = append(out, rec)
		}
	}
}

// Head is not read: a Source reads only records.
func (l *auditLog) Head(context.Context, string) (uint64, eventstore.Hash, error) {
	return 0, eventstore.Hash{}, errors.New("consumer: the log's head is not read")
}

// streamOnly is the log of a consumer without Config.Audit: nothing to
// read. A position the stream holds, or will, is waited on there; one
// before the stream's first is ErrNotInStream.
type streamOnly struct{ js jetstream.JetStream }

// Read is asked for from when the stream was empty or began after from.
// The stream is looked at again: the relay may have published since, and
// a stream that now begins at or before from is waited on (the source
// starts at the sequence it located), not refused.
func (l *streamOnly) Read(ctx context.Context, ledger string, from uint64, _ int) ([]eventstore.Record, error) {
	s, err := l.js.Stream(ctx, natsbus.StreamName(ledger))
	if err != nil {
		return nil, fmt.Errorf("stream of %s: %w", ledger, err)
	}
	first, ok, err := natsbus.FirstPosition(ctx, s)
	if err != nil {
		return nil, fmt.Errorf("stream of %s: %w", ledger, err)
	}
	if !ok || first <= from {
		return nil, nil
	}
	return nil, fmt.Errorf("position %d: %w (set Config.Audit to read it from ledgerd)", from, ErrNotInStream)
}

func (l *streamOnly) Head(context.Context, string) (uint64, eventstore.Hash, error) {
	return 0, eventstore.Hash{}, errors.New("consumer: the log's head is not read")
}
