package natsbus

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ledgerd/ledger/eventstore"
)

// sourceBufferMax bounds the records held between the stream and the reader.
const sourceBufferMax = 8192

// Source reads one ledger's records from its stream, from any position on, for
// a projector. Positions the stream no longer holds (expired, or a new stream
// on an old ledger) are read from the Postgres log instead.
type Source struct {
	ledger string
	js     jetstream.JetStream
	log    Log
	opts   StreamOptions
	logger *slog.Logger

	// next is the position the running consumer delivers next; cancel stops it.
	next   uint64
	cancel context.CancelFunc
	msgs   chan jetstream.Msg
}

// NewSource returns a source for ledger. Close it when done.
func NewSource(ledger string, js jetstream.JetStream, log Log, opts StreamOptions, logger *slog.Logger) *Source {
	if logger == nil {
		logger = slog.Default()
	}
	return &Source{ledger: ledger, js: js, log: log, opts: opts, logger: logger.With("ledger", ledger, "component", "source")}
}

// Next returns between 1 and max records starting exactly at from, in order,
// waiting until at least one exists or ctx ends.
//
// Errors: ctx's error; JetStream or database errors; a gap or a malformed
// message (the source restarts from `from` on the next call).
func (s *Source) Next(ctx context.Context, from uint64, max int) ([]eventstore.Record, error) {
	if max < 1 {
		max = 1
	}
	max = min(max, sourceBufferMax)
	if s.msgs == nil || s.next != from {
		recs, err := s.restart(ctx, from, max)
		if err != nil || len(recs) > 0 {
			return recs, err
		}
	}
	var first jetstream.Msg
	select {
	case first = <-s.msgs:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	recs := make([]eventstore.Record, 0, min(max, 1+len(s.msgs)))
	for msg := first; ; {
		rec, err := s.decode(msg)
		if err != nil {
			s.stop()
			return nil, err
		}
		recs = append(recs, rec)
		s.next++
		if len(recs) == max {
			return recs, nil
		}
		select {
		case msg = <-s.msgs:
		default:
			return recs, nil
		}
	}
}

func (s *Source) decode(msg jetstream.Msg) (eventstore.Record, error) {
	meta, err := msg.Metadata()
	if err != nil {
		return eventstore.Record{}, fmt.Errorf("source %s: message metadata: %w", s.ledger, err)
	}
	if meta.Sequence.Stream != s.next {
		return eventstore.Record{}, fmt.Errorf("source %s: got sequence %d, want %d", s.ledger, meta.Sequence.Stream, s.next)
	}
	rec, err := eventstore.ParseRecordBinary(msg.Data())
	if err != nil {
		return eventstore.Record{}, fmt.Errorf("source %s at %d: %w", s.ledger, s.next, err)
	}
	if rec.Position != s.next || rec.Ledger != s.ledger {
		return eventstore.Record{}, fmt.Errorf("source %s: sequence %d carries %s@%d", s.ledger, s.next, rec.Ledger, rec.Position)
	}
	return rec, nil
}

// sourceInactiveThreshold is how long the server keeps a consumer nobody
// pulls from: a source closed (its ledger idle) leaves its consumer behind
// that long, instead of nats.go's 5 minutes. A consumer in use pulls far more
// often.
const sourceInactiveThreshold = 30 * time.Second

// restart positions the source at from: if the stream no longer holds from, it
// returns records read from the log; otherwise it starts an ordered consumer
// there and returns none.
func (s *Source) restart(ctx context.Context, from uint64, max int) ([]eventstore.Record, error) {
	s.stop()
	stream, err := EnsureStream(ctx, s.js, s.ledger, s.opts)
	if err != nil {
		return nil, err
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("source %s: stream info: %w", s.ledger, err)
	}
	if first := info.State.FirstSeq; info.State.Msgs > 0 && from < first || info.State.Msgs == 0 && from <= info.State.LastSeq {
		limit := max
		if info.State.Msgs > 0 {
			limit = int(min(uint64(max), first-from))
		}
		recs, err := s.log.Read(ctx, s.ledger, from, limit)
		if err != nil {
			return nil, fmt.Errorf("source %s: fall back to the log: %w", s.ledger, err)
		}
		if len(recs) == 0 || recs[0].Position != from {
			return nil, fmt.Errorf("source %s: the stream has passed %d but the log has no record there", s.ledger, from)
		}
		return recs, nil
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       from,
		InactiveThreshold: sourceInactiveThreshold,
	})
	if err != nil {
		return nil, fmt.Errorf("source %s: consumer at %d: %w", s.ledger, from, err)
	}
	msgs := make(chan jetstream.Msg, sourceBufferMax)
	cctx, cancel := context.WithCancel(context.Background())
	cc, err := cons.Consume(func(m jetstream.Msg) {
		select {
		case msgs <- m:
		case <-cctx.Done():
		}
	}, jetstream.PullMaxMessages(sourceBufferMax/2))
	if err != nil {
		cancel()
		return nil, fmt.Errorf("source %s: consume at %d: %w", s.ledger, from, err)
	}
	go func() { <-cctx.Done(); cc.Stop() }()
	s.msgs, s.cancel, s.next = msgs, cancel, from
	return nil, nil
}

func (s *Source) stop() {
	if s.cancel != nil {
		s.cancel()
	}
	s.msgs, s.cancel = nil, nil
}

// Close stops the consumer.
func (s *Source) Close() { s.stop() }
