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

	"github.com/ledgerd/ledger/eventstore"
	"github.com/ledgerd/ledger/supervise"
)

// Log is what the relay reads: the ledger's records from a position on.
type Log interface {
	Read(ctx context.Context, ledger string, from uint64, limit int) ([]eventstore.Record, error)
}

// Limits of the relay.
const (
	// relayReadMax is how many records one read of the log fetches, and so how
	// many publishes are in flight at most.
	relayReadMax = 4096
	// relayPollInterval bounds how late the relay notices an append it was not
	// woken for (one made by another process whose notification was missed).
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

// Relay publishes one ledger's log on its stream, in position order, so that
// stream sequence == ledger position. Each message carries
// Nats-Expected-Last-Sequence = position-1: the server refuses anything out of
// order, whatever the duplicate window, and the relay resynchronises from the
// stream's last sequence.
type Relay struct {
	ledger  string
	subject string
	js      jetstream.JetStream
	log     Log
	opts    StreamOptions
	logger  *slog.Logger
	wake    chan struct{}

	// offered holds records the writer committed in this process, so that the
	// relay need not read them back from Postgres. The log stays the truth: any
	// gap is read from it.
	mu      sync.Mutex
	offered []eventstore.Record
}

// NewRelay returns a relay for ledger; call Run.
func NewRelay(ledger string, js jetstream.JetStream, log Log, opts StreamOptions, logger *slog.Logger) *Relay {
	if logger == nil {
		logger = slog.Default()
	}
	return &Relay{ledger: ledger, subject: Subject(ledger), js: js, log: log, opts: opts,
		logger: logger.With("ledger", ledger, "component", "relay"), wake: make(chan struct{}, 1)}
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
	}
	r.mu.Unlock()
	r.Wake()
}

// takeOffered returns up to max offered records starting exactly at from, and
// forgets those before from. It returns none when the next offered record is
// not from (a gap to read from the log).
func (r *Relay) takeOffered(from uint64, max int) []eventstore.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := 0
	for i < len(r.offered) && r.offered[i].Position < from {
		i++
	}
	r.offered = r.offered[i:]
	if len(r.offered) == 0 || r.offered[0].Position != from {
		return nil
	}
	n := min(max, len(r.offered))
	out := r.offered[:n:n]
	r.offered = r.offered[n:]
	if len(r.offered) == 0 {
		r.offered = nil // let the drained backing array go
	}
	return out
}

// Run publishes until ctx ends. NATS being down is not fatal: the relay retries
// with back-off and catches up when it returns, while commands go on.
func (r *Relay) Run(ctx context.Context) error {
	supervise.Run(ctx, supervise.Policy{Initial: relayRetryMin, Max: relayRetryMax, Healthy: healthyRun,
		OnRestart: func(err error, delay time.Duration) {
			r.logger.Warn("relay interrupted; resuming from the stream's last sequence", "err", err, "retry_in", delay)
		}}, r.serve)
	return nil
}

// serve syncs with the stream, then publishes what the log holds beyond it.
func (r *Relay) serve(ctx context.Context) error {
	stream, err := EnsureStream(ctx, r.js, r.ledger, r.opts)
	if err != nil {
		return err
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("stream info: %w", err)
	}
	last := info.State.LastSeq
	for {
		recs := r.takeOffered(last+1, relayReadMax)
		if recs == nil {
			if recs, err = r.log.Read(ctx, r.ledger, last+1, relayReadMax); err != nil {
				return err
			}
		}
		if len(recs) == 0 {
			select {
			case <-r.wake:
			case <-time.After(relayPollInterval):
			case <-ctx.Done():
				return ctx.Err()
			}
			continue
		}
		if last, err = r.publish(ctx, last, recs); err != nil {
			return err
		}
	}
}

// publish sends recs (which follow last) asynchronously and waits for every
// acknowledgement; it returns the last sequence acknowledged in order.
func (r *Relay) publish(ctx context.Context, last uint64, recs []eventstore.Record) (uint64, error) {
	futures := make([]jetstream.PubAckFuture, 0, len(recs))
	var refused error
	for i := range recs {
		rec := &recs[i]
		if rec.Position != last+uint64(i)+1 {
			return last, fmt.Errorf("log read returned %d after %d", rec.Position, last+uint64(i))
		}
		msg := &nats.Msg{Subject: r.subject, Data: rec.AppendBinary(make([]byte, 0, 128+len(rec.Payload)))}
		f, err := r.js.PublishMsgAsync(msg,
			jetstream.WithMsgID(msgID(r.ledger, rec.Position)),
			jetstream.WithExpectLastSequence(rec.Position-1))
		if err != nil {
			refused = err // wait for what was sent, then resume from the stream
			break
		}
		futures = append(futures, f)
	}
	timeout := time.NewTimer(relayAckTimeout)
	defer timeout.Stop()
	for _, f := range futures {
		select {
		case ack := <-f.Ok():
			if ack.Sequence != last+1 {
				return last, fmt.Errorf("published %s, stream sequence %d: out of step", msgIDOf(f), ack.Sequence)
			}
			last = ack.Sequence
		case err := <-f.Err():
			return last, fmt.Errorf("publish %s: %w", msgIDOf(f), err)
		case <-timeout.C:
			return last, errors.New("publish: acknowledgements timed out")
		case <-ctx.Done():
			return last, ctx.Err()
		}
	}
	if refused != nil {
		return last, fmt.Errorf("publish after %d: %w", last, refused)
	}
	return last, nil
}

func msgIDOf(f jetstream.PubAckFuture) string { return f.Msg().Header.Get(jetstream.MsgIDHeader) }
