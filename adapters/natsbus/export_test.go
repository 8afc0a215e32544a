package natsbus

import (
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ledgerd/ledger/eventstore"
)

// SetPollInterval sets how long r waits, without a wake, before it reads the
// log: a test that must not depend on the poll sets it long.
func SetPollInterval(r *Relay, d time.Duration) { r.poll = d }

// RelayOfferedMax is relayOfferedMax.
const RelayOfferedMax = relayOfferedMax

// WakeTaken says r has taken every wake given it.
func WakeTaken(r *Relay) bool { return len(r.wake) == 0 }

// PendingRoom is how many records s holds pending and the room its array
// has past them.
func PendingRoom(s *Source) (pending, room int) {
	return len(s.pending), cap(s.pending) - len(s.pending)
}

// Buffered is how many frames s's consumer has delivered that s has not
// taken yet.
func Buffered(s *Source) int { return len(s.msgs) }

// NewPlainFrame is NewFrame uncompressed, as the relay frames with
// StreamOptions.PlainFrames.
func NewPlainFrame(subject string, recs []eventstore.Record) *nats.Msg {
	return newFrame(subject, recs, true)
}

// SourceFramesBytesMax is sourceFramesBytesMax.
const SourceFramesBytesMax = sourceFramesBytesMax
