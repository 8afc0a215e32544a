package natsbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/semaphore"

	"github.com/ledgerd/ledger/eventstore"
)

// sourceBufferMax bounds the records one Next returns; sourceFramesMax the
// frames held between the stream and the reader (each up to frameRecordsMax
// records); sourceBytesMax the bytes of the frames whose records a source
// holds pending (a record keeps its frame's buffer alive), beyond which it
// takes no more frames until it has handed those records out. Frames of the
// relay's put 8,192 transfers in about 2 MB; the bound is for frames that
// are not the relay's: a compressed frame of a hundred bytes may decode to
// frameDecodedMax (about 2 MiB, the largest record alone).
//
// What a source holds, at most: decoded, sourceBytesMax plus the last frame
// taken (frameDecodedMax), 18 MiB, and about as much again in records
// already handed out whose frames the spare front of pending's array keeps
// alive; undecoded, sourceFramesMax frames in its channel but no more than
// sourceFramesBytesMax bytes of them, one waiting to enter it and the
// pull's sourceFramesMax/2 in nats.go, each a message of at most the
// server's max_payload (MaxPayloadMin, about 2.1 MB, for ledgerd's
// embedded server): about 78 MB were every frame the largest record,
// plain, and about 25 MB for plain frames of transfers (512 KiB each; 200 and
// 48 MB before the channel's bytes were bounded). A period's close over
// 10,000 assets compresses to 50 KB (sums zero) to 1 MB (sums of 46 random
// digits); frames of transfers are a quarter of their 512 KiB, so that
// compressed ones fill the channel by number before its bytes.
const (
	sourceBufferMax      = 8192
	sourceFramesMax      = 64
	sourceFramesBytesMax = 8 << 20
	sourceBytesMax       = 16 << 20
)

// Source reads one ledger's records from its stream, from any position on, for
// a projector. Positions the stream no longer holds (expired, or a new stream
// on an old ledger) are read from the Postgres log instead.
type Source struct {
	ledger string
	js     jetstream.JetStream
	log    Log
	opts   StreamOptions
	logger *slog.Logger

	// next is the position Next returns next; seq the stream sequence of the
	// frame the running consumer delivers next; cancel stops it. pending
	// holds the records of a frame not returned yet; fresh is set until the
	// consumer's first frame, which may begin before next. startedEmpty
	// says the stream held nothing when the consumer started.
	fresh, startedEmpty bool
	next                uint64
	seq                 uint64
	cancel              context.CancelFunc
	msgs                chan jetstream.Msg
	// queued is the channel's frames' bytes (sourceFramesBytesMax): the
	// consumer acquires a frame's before it enters, gather releases them.
	queued  *semaphore.Weighted
	pending []eventstore.Record
	// held are the frames pending records are of, in order, and heldBytes
	// their sizes' sum (sourceBytesMax).
	held      []heldFrame
	heldBytes int
	// arrived is gather's list of the frames it takes, kept for the next.
	arrived []jetstream.Msg
	// gone receives the consumer's loss of its stream (deleted: a repair
	// recreates it), after which the ordered consumer would wait at a
	// sequence of the old stream.
	gone chan error
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
	gathered, restarted := false, false
	for len(s.pending) == 0 { // a frame may hold only positions before from
		select {
		case msg := <-s.msgs:
			if err := s.gather(msg, max); errors.Is(err, errBeganAfter) && s.startedEmpty && !restarted {
				// The stream held nothing when the source started, and
				// its first frame begins after from: the positions before
				// it are the log's, as when the stream begins after from
				// at a restart (or, without a log, gone). Once: a stream
				// with a hole inside would find the same frame again.
				restarted = true
				recs, err := s.restart(ctx, from, max)
				if err != nil || len(recs) > 0 {
					return recs, err
				}
				continue
			} else if err != nil {
				s.stop()
				return nil, err
			}
			gathered = true
		case err := <-s.gone:
			s.stop()
			return nil, fmt.Errorf("source %s: %w", s.ledger, err)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if !gathered {
		// Records were left pending: add what else has arrived.
		if err := s.gather(nil, max); err != nil {
			s.stop()
			return nil, err
		}
	}
	n := min(max, len(s.pending))
	recs := s.pending[:n:n]
	s.pending = s.pending[n:]
	if len(s.pending) == 0 {
		s.pending = nil
	}
	s.next += uint64(n)
	for len(s.held) > 0 && s.held[0].last < s.next {
		s.heldBytes -= s.held[0].bytes
		s.held = s.held[1:]
	}
	return recs, nil
}

// gather adds to pending the records of first (nil: none) and of the frames
// that arrived after it, without waiting for more, while pending holds fewer
// than max records and its frames fewer than sourceBytesMax bytes. It takes
// the frames off the channel first and counts their records from their
// headers, so that pending grows once for them all. Grown frame by frame,
// it copied its records at each growth: 1.2 KB allocated an event for the
// sources' records in batches of 1,000, 0.3 KB now, and 4 % of ledgerd's
// CPU in that copying (docs/perf.md, "Session 29").
//
// Errors: receive's, for a frame that is not the stream's next or does not
// parse (the frames taken after it are dropped: Next then stops the
// consumer, and the next call starts another at its position).
func (s *Source) gather(first jetstream.Msg, max int) error {
	msgs := s.arrived[:0]
	// count is what pending will hold, for the limit; room what the frames
	// take in its array: a fresh source's first frame is parsed whole, its
	// records before want cut afterwards.
	want := s.next + uint64(len(s.pending))
	count, room, bytes := len(s.pending), 0, s.heldBytes
	take := func(m jetstream.Msg) {
		s.queued.Release(queuedWeight(m))
		msgs = append(msgs, m)
		if f, l, err := frameSpan(m.Headers()); err == nil { // receive reports one that is not
			room += int(l - f + 1)
			if l >= want {
				count += int(l - want + 1) // from want on: a fresh source's first frame may begin before it
				want = l + 1
			}
		}
		bytes += frameSize(m.Data())
	}
	if first != nil {
		take(first)
	}
more:
	for count < max && bytes < sourceBytesMax {
		select {
		case m := <-s.msgs:
			take(m)
		default:
			break more
		}
	}
	defer func() {
		clear(msgs) // the frames' buffers are not kept alive from here
		s.arrived = msgs[:0]
	}()
	s.pending = slices.Grow(s.pending, room)
	for _, m := range msgs {
		if err := s.receive(m); err != nil {
			return err
		}
	}
	return nil
}

// errBeganAfter: a fresh source's first frame begins after the position it
// wants. The stream held nothing when the source started (every frame
// expired, or purged) and the log had nothing at that position then; the
// positions before the frame are gone from the stream.
var errBeganAfter = errors.New("the stream's next frame begins after the position wanted")

// heldFrame is a frame some pending records are of: its last position and
// its size decoded.
type heldFrame struct {
	last  uint64
	bytes int
}

// receive adds a frame's records to pending. The frame must be the stream's
// next and continue the records exactly; only the first frame after a
// restart may begin before s.next (the source started inside it, or, on a
// stream that expired, the relay went on from the log's head before it).
func (s *Source) receive(msg jetstream.Msg) error {
	meta, err := msg.Metadata()
	if err != nil {
		return fmt.Errorf("source %s: message metadata: %w", s.ledger, err)
	}
	if meta.Sequence.Stream != s.seq {
		return fmt.Errorf("source %s: got sequence %d, want %d", s.ledger, meta.Sequence.Stream, s.seq)
	}
	first, last, err := frameSpan(msg.Headers())
	if err != nil {
		return fmt.Errorf("source %s at sequence %d: %w", s.ledger, s.seq, err)
	}
	want := s.next + uint64(len(s.pending))
	if s.fresh && last < want {
		// Wholly before from: the relay, on an expired stream, went on
		// from a head older than the log this source read.
		s.seq++
		return nil
	}
	if s.fresh && first > want {
		return fmt.Errorf("source %s: sequence %d holds positions %d..%d, want %d next: %w", s.ledger, s.seq, first, last, want,
			errBeganAfter)
	}
	if first > want || last < want || first < want && !s.fresh {
		return fmt.Errorf("source %s: sequence %d holds positions %d..%d, want %d next", s.ledger, s.seq, first, last, want)
	}
	// Parsed onto the records pending (whose first ones Next may have
	// handed out: a slice capped at their end, so appending here never
	// reaches them). Only a fresh source's first frame, with nothing
	// pending, may begin before want: its records before want are cut.
	if first < want && len(s.pending) != 0 {
		return fmt.Errorf("source %s: a frame from %d with %d records pending from %d", s.ledger, first, len(s.pending), s.next)
	}
	recs, err := appendFrame(s.pending, s.ledger, first, last, msg.Data())
	if err != nil {
		return fmt.Errorf("source %s at sequence %d: %w", s.ledger, s.seq, err)
	}
	s.pending = recs[want-first:]
	s.held = append(s.held, heldFrame{last: last, bytes: frameSize(msg.Data())})
	s.heldBytes += s.held[len(s.held)-1].bytes
	s.seq, s.fresh = s.seq+1, false
	return nil
}

// sourceInactiveThreshold is how long the server keeps a consumer nobody
// pulls from: a source closed (its ledger idle) leaves its consumer behind
// that long, instead of nats.go's 5 minutes. A consumer in use pulls far more
// often.
const sourceInactiveThreshold = 30 * time.Second

// restart positions the source at from: if the stream does not hold from
// (it begins later: expired, or the ledger is older than its stream), it
// returns records read from the log; otherwise it starts an ordered consumer
// at the frame holding from, or at the next frame when the stream has not
// reached from yet, and returns none.
func (s *Source) restart(ctx context.Context, from uint64, max int) ([]eventstore.Record, error) {
	s.stop()
	var stream jetstream.Stream
	var err error
	if s.opts.LookupOnly {
		stream, err = s.js.Stream(ctx, StreamName(s.ledger))
	} else {
		stream, err = EnsureStream(ctx, s.js, s.ledger, s.opts)
	}
	if err != nil {
		return nil, fmt.Errorf("source %s: stream: %w", s.ledger, err)
	}
	seq, before, err := s.locate(ctx, stream, from)
	if err != nil {
		return nil, err
	}
	if before > 0 {
		recs, err := s.log.Read(ctx, s.ledger, from, int(min(uint64(max), before)))
		if err != nil {
			return nil, fmt.Errorf("source %s: fall back to the log: %w", s.ledger, err)
		}
		switch {
		case len(recs) > 0 && recs[0].Position != from:
			return nil, fmt.Errorf("source %s: the log returned %d for %d", s.ledger, recs[0].Position, from)
		case len(recs) > 0:
			return recs, nil
		case before != ^uint64(0):
			return nil, fmt.Errorf("source %s: the stream has passed %d but the log has no record there", s.ledger, from)
		}
		// The stream is empty and the log has nothing at from yet: wait on
		// the stream for the relay's next frame.
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       seq,
		InactiveThreshold: sourceInactiveThreshold,
	})
	if err != nil {
		return nil, fmt.Errorf("source %s: consumer at %d: %w", s.ledger, from, err)
	}
	msgs, gone := make(chan jetstream.Msg, sourceFramesMax), make(chan error, 1)
	queued := semaphore.NewWeighted(sourceFramesBytesMax)
	cctx, cancel := context.WithCancel(context.Background())
	cc, err := cons.Consume(func(m jetstream.Msg) {
		if queued.Acquire(cctx, queuedWeight(m)) != nil {
			return // stopped
		}
		select {
		case msgs <- m:
		case <-cctx.Done():
		}
	}, jetstream.PullMaxMessages(sourceFramesMax/2), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrStreamNotFound) {
			select {
			case gone <- err:
			default:
			}
		}
	}))
	if err != nil {
		cancel()
		return nil, fmt.Errorf("source %s: consume at %d: %w", s.ledger, from, err)
	}
	go func() { <-cctx.Done(); cc.Stop() }()
	s.msgs, s.gone, s.cancel, s.next, s.seq, s.pending, s.fresh = msgs, gone, cancel, from, seq, nil, true
	s.queued = queued
	s.startedEmpty = before == ^uint64(0)
	s.held, s.heldBytes = nil, 0
	return nil, nil
}

// locate finds from in the stream: the sequence of the frame holding it,
// or of the frame to come when the stream ends before it; before is how many
// positions from on precede the stream's first frame and must be read from
// the log (^0 when the stream holds nothing: as many as the log has).
func (s *Source) locate(ctx context.Context, stream jetstream.Stream, from uint64) (seq, before uint64, err error) {
	info, err := stream.Info(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("source %s: stream info: %w", s.ledger, err)
	}
	st := info.State
	if st.Msgs == 0 {
		return st.LastSeq + 1, ^uint64(0), nil
	}
	first, _, err := frameAt(ctx, stream, st.FirstSeq)
	if err != nil {
		return 0, 0, fmt.Errorf("source %s: %w", s.ledger, err)
	}
	if from < first {
		return 0, first - from, nil
	}
	_, last, err := frameAt(ctx, stream, st.LastSeq)
	if err != nil {
		return 0, 0, fmt.Errorf("source %s: %w", s.ledger, err)
	}
	if from > last {
		return st.LastSeq + 1, 0, nil
	}
	// The last frame whose first position is at most from holds it: frames
	// are consecutive and gapless from the stream's first.
	lo, hi := st.FirstSeq, st.LastSeq
	for lo < hi {
		mid := lo + (hi-lo+1)/2
		f, _, err := frameAt(ctx, stream, mid)
		if err != nil {
			return 0, 0, fmt.Errorf("source %s: %w", s.ledger, err)
		}
		if f <= from {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo, 0, nil
}

// queuedWeight is what a frame counts against sourceFramesBytesMax: its
// bytes, at most all of it (a larger one enters alone).
func queuedWeight(m jetstream.Msg) int64 { return min(int64(len(m.Data())), sourceFramesBytesMax) }

func (s *Source) stop() {
	if s.cancel != nil {
		s.cancel()
	}
	// The records read ahead go too (a frame holds up to 8,192): a source
	// closed while its reader waits (a webhook's retried delivery) holds
	// nothing; the next Next restarts at its position anyway.
	s.msgs, s.cancel = nil, nil
	s.pending, s.held, s.heldBytes = nil, nil, 0
}

// Close stops the consumer.
func (s *Source) Close() { s.stop() }
