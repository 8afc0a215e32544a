package httpapi

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"golang.org/x/sync/semaphore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A body of a declared length takes its room before it is read, waiting
// for it holding none. A body of no declared length (chunked, or a log
// import of any length) takes bodyFirst at first, as the first waits, then
// more as its bytes arrive, as much as it holds (bodyStepMin at least,
// bodyStepMax at most) at a time, and fails if none is free then (429): a
// body never waits for room while it holds some, so bodies cannot each wait
// for room another holds. A body sent slowly holds about what it sent, not
// the bound of its route, so a few slow uploads cannot hold the room of
// every other call.
const (
	bodyFirst   = 1 << 20
	bodyStepMin = 64 << 10
	bodyStepMax = 1 << 20
)

// ImportIdleDefault bounds how long a log import may send nothing: its body
// has no overall read deadline (a log may take hours to send), so without
// one a client that stops sending would hold its connection and room for
// good.
const ImportIdleDefault = time.Minute

// errNoRoom is a body that found no room among the bodies in flight, or in
// its key's share, as it grew; errorHandler answers it ResourceExhausted
// (429), saying which (meteredBody.starved).
var errNoRoom = errors.New("no room among the request bodies in flight")

// meteredBody is a request body holding room among the gateway's bodies in
// flight (Gateway.bodies), and as much of its key's share when it has one:
// held, taken before it is read, and more as it is read past it, up to max
// (see bodyFirst); release gives it all back when the call ends. A body
// past max reads on without more room: max is its declared length, its
// route's bound (which http.MaxBytesReader enforces below it), or for a log
// import the bound of the one message its decoder holds at a time.
type meteredBody struct {
	r        io.ReadCloser
	rooms    *semaphore.Weighted
	roomsMax int64 // rooms' size, for the refusal's text
	// share is the key's share, nil without a key: held is taken from it
	// first, and given back to it with rooms'.
	share *keyShare
	max   int64
	read  int64
	held  int64
	// starved is the refusal to answer once a read found no room, in
	// rooms or in share; nil until then.
	starved error
	// idle, when set, bounds each read: the connection's read deadline is
	// moved idle past the start of every read (through rc).
	idle time.Duration
	rc   *http.ResponseController
}

func (b *meteredBody) Read(p []byte) (int, error) {
	if b.held < b.max {
		if b.read >= b.held {
			if err := b.grow(); err != nil {
				return 0, err
			}
		}
		p = p[:min(int64(len(p)), b.held-b.read)]
	}
	if b.idle > 0 {
		_ = b.rc.SetReadDeadline(time.Now().Add(b.idle))
	}
	n, err := b.r.Read(p)
	b.read += int64(n)
	if b.idle > 0 && err != nil {
		// The server reads the connection on its own once the body is
		// done (to see the client leave): a deadline left behind would
		// end the call while its import commits.
		_ = b.rc.SetReadDeadline(time.Time{})
		if errors.Is(err, os.ErrDeadlineExceeded) {
			err = fmt.Errorf("the body sent nothing for %s: %w", b.idle, err)
		}
	}
	return n, err
}

// grow takes more room, as much as the body holds within the steps' bounds
// (less at max), if it is free: never waiting while holding some.
func (b *meteredBody) grow() error {
	n := min(max(b.held, bodyStepMin), bodyStepMax, b.max-b.held)
	if b.share != nil && !b.share.room.TryAcquire(n) {
		b.starved = b.share.refusal(0)
		return errNoRoom
	}
	if !b.rooms.TryAcquire(n) {
		if b.share != nil {
			b.share.room.Release(n)
		}
		b.starved = status.Errorf(codes.ResourceExhausted, "the gateway is reading other request bodies "+
			"(%d bytes at most at once): retry", b.roomsMax)
		return errNoRoom
	}
	b.held += n
	return nil
}

func (b *meteredBody) Close() error { return b.r.Close() }

// release gives back the room the body took, and its key's share.
func (b *meteredBody) release() {
	if b.held > 0 {
		b.rooms.Release(b.held)
		if b.share != nil {
			b.share.room.Release(b.held)
		}
		b.held = 0
	}
	if b.share != nil {
		b.share.put()
		b.share = nil
	}
}

// meteredOf returns the meteredBody of a request body admit set, nil if none.
func meteredOf(body io.ReadCloser) *meteredBody {
	if s, ok := body.(singleMessageBody); ok {
		body = s.ReadCloser
	}
	b, _ := body.(*meteredBody)
	return b
}
