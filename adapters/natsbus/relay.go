package natsbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/internal/tracing"
	"github.com/ledgerd/ledger/supervise"
)

// Log is what the relay and the source read: the ledger's records from a
// position on, and its head.
type Log interface {
	Read(ctx context.Context, ledger string, from uint64, limit int) ([]eventstore.Record, error)
	Head(ctx context.Context, ledger string) (uint64, eventstore.Hash, error)
}

// Limits of the relay.
const (
	// relayReadMax is how many records one read of the log fetches, and so how
	// many publishes are in flight at most.
	relayReadMax = 4096
	// relayPollInterval bounds how late the relay notices an append it was not
	// woken for (one made by another process whose notification was missed)
	// or not offered (another process's, while this one's offers were recent).
	relayPollInterval = time.Second
	// relayAckTimeout bounds the wait for a batch's acknowledgements.
	relayAckTimeout = 10 * time.Second
	// relayRetryMin and relayRetryMax bound the back-off after a failed run
	// (supervise.Policy).
	relayRetryMin = 50 * time.Millisecond
	relayRetryMax = 5 * time.Second
	// healthyRun is how long a run must last for the back-off to start over.
	healthyRun = 10 * time.Second
	// relayOfferedMax bounds the committed records held in memory for the
	// relay; past it, offers are dropped and the relay reads the log instead.
	relayOfferedMax = 65536
)

// ErrStreamDiverged means the stream's last frame is not the log's: the
// stream is ahead of the log (PostgreSQL restored from an earlier copy, a
// lagging replica promoted), holds another event at that position (a
// forged message), or ends in a message that is no frame. The relay
// publishes nothing on top until the stream is recreated from the log
// (workflows.StreamRepair).
var ErrStreamDiverged = errors.New("the stream is not the log's")

// ErrMaxPayload means a frame is larger than the NATS server's max_payload
// allows, and the server would refuse it: the relay cannot go past it (a
// record is never skipped) until max_payload is at least MaxPayloadMin.
var ErrMaxPayload = errors.New("frame over the NATS server's max_payload")

// divergedError is ErrStreamDiverged as the relay found it with the
// stream's last sequence at seq (cause, when not nil, is what it found
// there).
type divergedError struct {
	seq   uint64
	msg   string
	cause error
}

func (e *divergedError) Error() string {
	if e.cause != nil {
		return e.msg + ": " + e.cause.Error() + ": " + ErrStreamDiverged.Error()
	}
	return e.msg + ": " + ErrStreamDiverged.Error()
}

func (e *divergedError) Unwrap() []error {
	if e.cause != nil {
		return []error{e.cause, ErrStreamDiverged}
	}
	return []error{ErrStreamDiverged}
}

// maxPayloadError is ErrMaxPayload for the frame that begins at first.
type maxPayloadError struct {
	first uint64
	msg   string
}

func (e *maxPayloadError) Error() string { return e.msg + ": " + ErrMaxPayload.Error() }
func (e *maxPayloadError) Unwrap() error { return ErrMaxPayload }

// Faults is told what the relay finds of the stream each time it starts: in
// step with the log, or diverged from it (ErrStreamDiverged).
type Faults interface {
	StreamDiverged(ctx context.Context, ledger string, err error)
	StreamInStep(ctx context.Context, ledger string)
}

// Relay publishes one ledger's log on its stream, in position order, in
// frames of consecutive records (frame.go): every position once, in order.
// Each frame carries Nats-Expected-Last-Sequence = the stream sequence of the
// frame before it: the server refuses anything out of order, whatever the
// duplicate window, and the relay resynchronises from the stream's last frame.
type Relay struct {
	ledger  string
	subject string
	js      jetstream.JetStream
	log     Log
	opts    StreamOptions
	logger  *slog.Logger
	wake    chan struct{}
	faults  Faults
	tracer  trace.Tracer // nil: no spans
	// diverged is the stream's last sequence where the last divergence
	// told was found, 0 when none: logged at ERROR when new (supervise.Run
	// calls serve and OnRestart in turn). A diverged relay publishes
	// nothing: the stream's tail moves only by another's hand.
	diverged uint64
	// oversized is the first position of the frame last refused for
	// max_payload (ErrMaxPayload), 0 when none; maxPayloadWarned the
	// server's max_payload last warned of at start, 0 when none.
	oversized        uint64
	maxPayloadWarned int64

	// offered holds records the writer committed in this process, so that the
	// relay need not read them back from Postgres. The log stays the truth: any
	// gap is read from it.
	mu      sync.Mutex
	offered []eventstore.Record
	// dropped says an offer did not fit since the relay last looked: the
	// offers no longer hold every record the writer committed here. Only
	// a call of takeOffered that returns nothing clears it: that call
	// decides whether the log is read.
	dropped bool
	// poll is relayPollInterval (tests set it).
	poll time.Duration
}

// NewRelay returns a relay for ledger; call Run.
func NewRelay(ledger string, js jetstream.JetStream, log Log, opts StreamOptions, logger *slog.Logger) *Relay {
	if logger == nil {
		logger = slog.Default()
	}
	return &Relay{ledger: ledger, subject: Subject(ledger), js: js, log: log, opts: opts,
		logger: logger.With("ledger", ledger, "component", "relay"), wake: make(chan struct{}, 1),
		poll: relayPollInterval}
}

// WithFaults makes r tell f what it finds of the stream; it returns r.
func (r *Relay) WithFaults(f Faults) *Relay {
	r.faults = f
	return r
}

// WithTracer makes r trace each publishing of a run of events (span
// ledger.relay.publish, with the ledger and the positions, which tie it to
// the writer's and the projectors' spans); it returns r.
func (r *Relay) WithTracer(t trace.Tracer) *Relay {
	r.tracer = t
	return r
}

// Wake tells the relay the log has grown. It never blocks.
func (r *Relay) Wake() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Offer hands the relay records just committed, in position order, and wakes
// it. It never blocks; records that do not fit are dropped (and read from the
// log later).
func (r *Relay) Offer(recs []eventstore.Record) {
	r.mu.Lock()
	if len(r.offered)+len(recs) <= relayOfferedMax {
		r.offered = append(r.offered, recs...)
	} else {
		r.dropped = true
	}
	r.mu.Unlock()
	r.Wake()
}

// takeOffered returns up to max offered records starting exactly at from, and
// forgets those before from. It returns none when the next offered record is
// not from (a gap to read from the log). complete says no offer was dropped
// since the relay last read the log and there is no gap: then none offered
// means none committed here yet. reached says the records it forgot end
// exactly before from: the offers caught up with what the relay read from the
// log.
func (r *Relay) takeOffered(from uint64, max int) (recs []eventstore.Record, complete, reached bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := 0
	for i < len(r.offered) && r.offered[i].Position < from {
		i++
	}
	reached = i > 0 && r.offered[i-1].Position == from-1
	r.offered = r.offered[i:]
	if len(r.offered) == 0 || r.offered[0].Position != from {
		// Offers past a gap are not complete either. Not complete, the
		// caller reads the log, which covers what was dropped before: the
		// flag is cleared here only.
		complete = !r.dropped && len(r.offered) == 0
		r.dropped = false
		return nil, complete, reached && complete
	}
	n := min(max, len(r.offered))
	out := r.offered[:n:n]
	r.offered = r.offered[n:]
	if len(r.offered) == 0 {
		r.offered = nil // let the drained backing array go
	}
	return out, !r.dropped, false
}

// Run publishes until ctx ends. NATS being down is not fatal: the relay retries
// with back-off and catches up when it returns, while commands go on.
func (r *Relay) Run(ctx context.Context) error {
	supervise.Run(ctx, supervise.Policy{Initial: relayRetryMin, Max: relayRetryMax, Healthy: healthyRun,
		OnRestart: func(err error, delay time.Duration) {
			if errors.Is(err, ErrStreamDiverged) {
				r.divergedFrom(ctx, err, delay)
				return
			}
			if errors.Is(err, ErrMaxPayload) {
				r.refusedForSize(err, delay)
				return
			}
			r.logger.Warn("relay interrupted; resuming from the stream's last sequence", "err", err, "retry_in", delay)
		}}, r.serve)
	return nil
}

// divergedFrom reports that the stream is not the log's: at ERROR when the
// reason is new, and to the faults.
func (r *Relay) divergedFrom(ctx context.Context, err error, delay time.Duration) {
	var seq uint64
	if e, ok := errors.AsType[*divergedError](err); ok {
		seq = e.seq
	}
	log := r.logger.Error
	if seq != 0 && seq == r.diverged {
		log = r.logger.Debug
	}
	log("relay stopped: the stream is not the log's; nothing is published on top until it is repaired (ledgerctl admin repair-stream)",
		"err", err, "retry_in", delay)
	r.diverged = seq
	if r.faults != nil {
		r.faults.StreamDiverged(ctx, r.ledger, err)
	}
}

// refusedForSize reports a frame over the server's max_payload: at ERROR
// when the refusal is new. The relay retries it with back-off: the
// connection learns a raised max_payload when it reconnects to the
// restarted server, and the relay goes on from there.
func (r *Relay) refusedForSize(err error, delay time.Duration) {
	var first uint64
	if e, ok := errors.AsType[*maxPayloadError](err); ok {
		first = e.first
	}
	log := r.logger.Error
	if first != 0 && first == r.oversized {
		log = r.logger.Debug
	}
	log("relay stopped: a frame is over the NATS server's max_payload; raise max_payload in the NATS server's configuration",
		"err", err, "max_payload_min", MaxPayloadMin, "retry_in", delay)
	r.oversized = first
}

// checkMaxPayload warns, once for each value, when the server's max_payload
// is below MaxPayloadMin: the relay publishes until it meets a frame over
// it (a period's close over some thousand assets), and stops there.
func (r *Relay) checkMaxPayload() {
	nc := r.js.Conn()
	if nc == nil {
		return
	}
	got := nc.MaxPayload()
	if got == 0 || got >= int64(MaxPayloadMin) || got == r.maxPayloadWarned {
		return
	}
	r.maxPayloadWarned = got
	r.logger.Warn("the NATS server's max_payload is below what the largest event's frame takes: raise max_payload in the "+
		"NATS server's configuration, or the relay stops at such an event (a period's close over some thousand assets)",
		"max_payload", got, "max_payload_min", MaxPayloadMin)
}

// serve syncs with the stream, then publishes what the log holds beyond it.
func (r *Relay) serve(ctx context.Context) error {
	stream, err := EnsureStream(ctx, r.js, r.ledger, r.opts)
	if err != nil {
		return err
	}
	r.checkMaxPayload()
	last, seq, hash, err := r.tail(ctx, stream)
	if err != nil {
		return err
	}
	if r.faults != nil {
		r.faults.StreamInStep(ctx, r.ledger)
	}
	if r.diverged != 0 {
		r.logger.Info("relay resumed: the stream's tail is the log's", "position", last)
		r.diverged = 0
	}
	// inStep says the offers have reached where the relay stands: the last
	// records it published were offered, or the offers then caught up with
	// what it read from the log (an append's announcement often wakes the
	// relay before the writer's offer, and its read of the log gets ahead
	// of the offers). In step, with no offer dropped, offers holding nothing
	// mean the writer has committed nothing here since: reading the log
	// would find nothing, at a query and a read buffer per wake. The relay
	// waits instead, until the offers have been silent for the poll
	// interval: then a wake, or the poll, reads the log as before, as does
	// an offer that does not continue from where the relay stands. That
	// covers appends this process was not offered (another process's,
	// after this one lost the ledger) within about the poll interval.
	inStep, steppedAt := false, time.Time{}
	for {
		recs, complete, reached := r.takeOffered(last+1, relayReadMax)
		wait := r.poll
		switch {
		case recs != nil, reached:
			inStep, steppedAt = true, time.Now()
		case inStep && complete && time.Since(steppedAt) < r.poll:
			// Nothing committed here since: no read, and a read when the
			// offers' poll interval is up, not a whole interval later.
			wait = r.poll - time.Since(steppedAt)
		default:
			if recs, err = r.log.Read(ctx, r.ledger, last+1, relayReadMax); err != nil {
				return err
			}
			inStep = false
		}
		if len(recs) == 0 {
			select {
			case <-r.wake:
			case <-time.After(wait):
			case <-ctx.Done():
				return ctx.Err()
			}
			continue
		}
		if last, seq, hash, err = r.publish(ctx, last, seq, hash, recs); err != nil {
			return err
		}
	}
}

// tail returns the last position the stream holds, its stream sequence and
// the event's hash there, having checked that the stream's last event is the
// log's at its position (the same hash). A stream whose every frame expired (MaxAge) no longer
// says which position it reached: the relay then goes on from the log's
// head, and a consumer reads what lies before the stream's first frame from
// the log (Source).
//
// Errors: ErrStreamDiverged; the JetStream or database error.
func (r *Relay) tail(ctx context.Context, stream jetstream.Stream) (last, seq uint64, hash eventstore.Hash, err error) {
	info, err := stream.Info(ctx)
	if err != nil {
		return 0, 0, hash, fmt.Errorf("stream info: %w", err)
	}
	st := info.State
	switch {
	case st.LastSeq == 0:
		return 0, 0, hash, nil
	case st.Msgs == 0:
		head, hash, err := r.log.Head(ctx, r.ledger)
		if err != nil {
			return 0, 0, hash, fmt.Errorf("head of an expired stream: %w", err)
		}
		r.logger.Info("stream expired: publishing from the log's head on", "head", head, "stream_sequence", st.LastSeq)
		return head, st.LastSeq, hash, nil
	}
	first, last, hash, err := r.checkTail(ctx, stream, st.LastSeq)
	if err != nil {
		return 0, 0, hash, err
	}
	// A frame of the log's replayed on the stream passes checkTail; it
	// does not follow the frame before it.
	if st.LastSeq > st.FirstSeq {
		_, before, err := frameAt(ctx, stream, st.LastSeq-1)
		if err != nil && !errors.Is(err, ErrBadFrame) {
			return 0, 0, hash, err
		}
		if err != nil || before != first-1 {
			return 0, 0, hash, &divergedError{seq: st.LastSeq, msg: fmt.Sprintf(
				"the stream's last frame (sequence %d) holds %d..%d, the one before does not end at %d", st.LastSeq, first, last, first-1)}
		}
	}
	return last, st.LastSeq, hash, nil
}

// checkTail returns the positions of the frame at seq, the stream's last,
// and its last event's hash, once that event is found to be the log's.
//
// Errors: ErrStreamDiverged; the JetStream or database error.
func (r *Relay) checkTail(ctx context.Context, stream jetstream.Stream, seq uint64) (first, last uint64, hash eventstore.Hash, err error) {
	msg, err := stream.GetMsg(ctx, seq)
	if err != nil {
		return 0, 0, hash, fmt.Errorf("frame at sequence %d: %w", seq, err)
	}
	first, last, err = frameSpan(msg.Header)
	if err != nil {
		return 0, 0, hash, &divergedError{seq: seq, msg: fmt.Sprintf("the stream's last message (sequence %d)", seq), cause: err}
	}
	recs, err := ParseFrame(r.ledger, first, last, msg.Data)
	if err != nil {
		return 0, 0, hash, &divergedError{seq: seq, msg: fmt.Sprintf("the stream's last frame (sequence %d)", seq), cause: err}
	}
	logged, err := r.log.Read(ctx, r.ledger, last, 1)
	if err != nil {
		return 0, 0, hash, fmt.Errorf("the log at the stream's last position %d: %w", last, err)
	}
	tip := &recs[len(recs)-1]
	switch {
	case len(logged) == 0 || logged[0].Position != last:
		head, _, err := r.log.Head(ctx, r.ledger)
		if err != nil {
			return 0, 0, hash, fmt.Errorf("head: %w", err)
		}
		return 0, 0, hash, &divergedError{seq: seq, msg: fmt.Sprintf(
			"the stream reaches position %d, the log only %d (restored from an earlier copy?)", last, head)}
	case logged[0].Hash != tip.Hash:
		return 0, 0, hash, &divergedError{seq: seq, msg: fmt.Sprintf("the stream's event at %d has hash %x, the log's %x",
			last, tip.Hash[:8], logged[0].Hash[:8])}
	}
	return first, last, tip.Hash, nil
}

// FirstPosition returns the first position stream holds; ok is false when
// it holds nothing (nothing relayed yet, or every frame expired).
//
// Errors: the JetStream error; ErrBadFrame.
func FirstPosition(ctx context.Context, stream jetstream.Stream) (first uint64, ok bool, err error) {
	info, err := stream.Info(ctx)
	if err != nil {
		return 0, false, fmt.Errorf("stream info: %w", err)
	}
	if info.State.Msgs == 0 {
		return 0, false, nil
	}
	first, _, err = frameAt(ctx, stream, info.State.FirstSeq)
	if err != nil {
		return 0, false, err
	}
	return first, true, nil
}

// frameAt reads the positions of the frame at stream sequence seq.
//
// Errors: the JetStream error; ErrBadFrame.
func frameAt(ctx context.Context, stream jetstream.Stream, seq uint64) (first, last uint64, err error) {
	msg, err := stream.GetMsg(ctx, seq)
	if err != nil {
		return 0, 0, fmt.Errorf("frame at sequence %d: %w", seq, err)
	}
	first, last, err = frameSpan(msg.Header)
	if err != nil {
		return 0, 0, fmt.Errorf("frame at sequence %d: %w", seq, err)
	}
	return first, last, nil
}

// publish sends recs (which follow last, the stream being at sequence seq)
// in frames, asynchronously, and waits for every acknowledgement; it
// returns the last position and sequence acknowledged in order.
func (r *Relay) publish(ctx context.Context, last, seq uint64, hash eventstore.Hash, recs []eventstore.Record) (lastAcked, seqAcked uint64,
	hashAcked eventstore.Hash, err error) {
	if r.tracer != nil && len(recs) > 0 {
		var span trace.Span
		ctx, span = r.tracer.Start(ctx, "ledger.relay.publish", trace.WithAttributes(attribute.String("ledger.name", r.ledger),
			attribute.Int64("ledger.position.first", int64(recs[0].Position)),
			attribute.Int64("ledger.position.last", int64(recs[len(recs)-1].Position)), attribute.Int("ledger.events", len(recs))))
		defer func() { tracing.End(span, err) }()
	}
	for i := range recs {
		if recs[i].Position != last+uint64(i)+1 {
			return last, seq, hash, fmt.Errorf("log read returned %d after %d", recs[i].Position, last+uint64(i))
		}
		// What is published continues the chain published so far: a log
		// restored from an earlier copy, or rewritten, while the relay runs
		// would otherwise go on the stream as a fork of it.
		prev := hash
		if i > 0 {
			prev = recs[i-1].Hash
		}
		if recs[i].PrevHash != prev {
			return last, seq, hash, &divergedError{seq: seq, msg: fmt.Sprintf(
				"the log's event at %d follows hash %x, the stream's event before it has %x", recs[i].Position, recs[i].PrevHash[:8], prev[:8])}
		}
	}
	type sent struct {
		future jetstream.PubAckFuture
		last   uint64
		hash   eventstore.Hash
	}
	var (
		futures []sent
		refused error
	)
	for i, expect := 0, seq; i < len(recs); expect++ {
		n := frameCut(recs[i:])
		frame := recs[i : i+n]
		msg := newFrame(r.subject, frame, r.opts.PlainFrames)
		f, err := r.js.PublishMsgAsync(msg,
			jetstream.WithMsgID(frameID(r.ledger, frame[0].Position, frame[n-1].Position)),
			jetstream.WithExpectLastSequence(expect))
		if errors.Is(err, nats.ErrMaxPayload) {
			err = &maxPayloadError{first: frame[0].Position, msg: fmt.Sprintf(
				"frame of positions %d..%d, %d bytes, the server allows %d (max_payload; at least %d needed)",
				frame[0].Position, frame[n-1].Position, len(msg.Data)+headersLen(msg.Header), r.js.Conn().MaxPayload(), MaxPayloadMin)}
		}
		if err != nil {
			refused = err // wait for what was sent, then resume from the stream
			break
		}
		futures = append(futures, sent{future: f, last: frame[n-1].Position, hash: frame[n-1].Hash})
		i += n
	}
	timeout := time.NewTimer(relayAckTimeout)
	defer timeout.Stop()
	for _, f := range futures {
		select {
		case ack := <-f.future.Ok():
			if ack.Sequence != seq+1 {
				return last, seq, hash, fmt.Errorf("published %s, stream sequence %d after %d: out of step", msgIDOf(f.future), ack.Sequence, seq)
			}
			last, seq, hash = f.last, ack.Sequence, f.hash
		case err := <-f.future.Err():
			return last, seq, hash, fmt.Errorf("publish %s: %w", msgIDOf(f.future), err)
		case <-timeout.C:
			return last, seq, hash, errors.New("publish: acknowledgements timed out")
		case <-ctx.Done():
			return last, seq, hash, ctx.Err()
		}
	}
	if refused != nil {
		return last, seq, hash, fmt.Errorf("publish after %d: %w", last, refused)
	}
	return last, seq, hash, nil
}

func msgIDOf(f jetstream.PubAckFuture) string { return f.Msg().Header.Get(jetstream.MsgIDHeader) }

// headersLen is about what h takes on the wire, as NATS counts it against
// max_payload: for an error's message.
func headersLen(h nats.Header) int {
	n := len("NATS/1.0\r\n\r\n")
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(": \r\n") + len(v)
		}
	}
	return n
}
