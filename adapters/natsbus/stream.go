// Package natsbus carries the log on NATS JetStream: one stream per ledger
// holding every position once, in order, in frames of consecutive records;
// the relay that fills it from the Postgres log, the source projectors read
// it through, and an embedded server.
package natsbus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// StreamOptions configure each ledger's stream. The stream is a delivery
// buffer, not the record: Postgres holds every event forever, and readers fall
// back to it for what the stream no longer holds.
type StreamOptions struct {
	// MaxAge drops messages older than this; 0 keeps them.
	MaxAge time.Duration
	// MaxBytes bounds the stream's size; 0 or less is unbounded.
	MaxBytes int64
	// Replicas is 1 on one server, 3 on a cluster.
	Replicas int
	// LookupOnly makes a Source read the stream only if it exists, never
	// create it (jetstream.ErrStreamNotFound otherwise): a consumer outside
	// ledgerd, whose limits are not the stream's to set.
	LookupOnly bool
	// PlainFrames makes a relay publish its frames uncompressed (frameMagic),
	// as builds before compressed frames did and read: for a rolling upgrade,
	// until every reader is of a build that reads both.
	PlainFrames bool
}

// DuplicateWindow is how long the stream remembers message ids.
const DuplicateWindow = 5 * time.Second

// StreamName is the JetStream stream of a ledger.
func StreamName(ledger string) string { return "LEDGER_" + ledger }

// Subject is the subject a ledger's events are published on.
func Subject(ledger string) string { return "ledger." + ledger + ".events" }

// frameID is the de-duplication id of the frame of a ledger's positions
// first..last.
func frameID(ledger string, first, last uint64) string {
	return ledger + ":" + strconv.FormatUint(first, 10) + "-" + strconv.FormatUint(last, 10)
}

// EnsureStream creates the ledger's stream if it does not exist, and returns it.
//
// Errors: the JetStream error.
func EnsureStream(ctx context.Context, js jetstream.JetStream, ledger string, opts StreamOptions) (jetstream.Stream, error) {
	s, err := js.Stream(ctx, StreamName(ledger))
	if err == nil {
		return s, nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("stream of %s: %w", ledger, err)
	}
	cfg := jetstream.StreamConfig{
		Name:      StreamName(ledger),
		Subjects:  []string{Subject(ledger)},
		Storage:   jetstream.FileStorage,
		Retention: jetstream.LimitsPolicy,
		Discard:   jetstream.DiscardOld,
		MaxAge:    opts.MaxAge,
		MaxBytes:  max(opts.MaxBytes, -1),
		MaxMsgs:   -1,
		Replicas:  max(opts.Replicas, 1),
		// Order and uniqueness come from Nats-Expected-Last-Sequence; the
		// message-id window only catches a republish within seconds, and a
		// long one would hold every id of a busy ledger in memory.
		Duplicates: DuplicateWindow,
	}
	if opts.MaxBytes == 0 {
		cfg.MaxBytes = -1
	}
	s, err = js.CreateOrUpdateStream(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("create stream of %s: %w", ledger, err)
	}
	return s, nil
}

// Streams recreates ledgers' streams (workflows.StreamRepair).
type Streams struct {
	js   jetstream.JetStream
	opts StreamOptions
}

// NewStreams returns Streams on js, each created with opts.
func NewStreams(js jetstream.JetStream, opts StreamOptions) *Streams {
	return &Streams{js: js, opts: opts}
}

// Recreate deletes ledger's stream, whatever it holds, and creates it empty:
// the relay publishes the log into it again from the first position, and a
// source reads from the log what it does not hold yet. A source whose
// consumer the deletion ended starts over (Source.Next).
//
// Errors: the JetStream error.
func (s *Streams) Recreate(ctx context.Context, ledger string) error {
	if err := s.js.DeleteStream(ctx, StreamName(ledger)); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("delete the stream of %s: %w", ledger, err)
	}
	_, err := EnsureStream(ctx, s.js, ledger, s.opts)
	return err
}
