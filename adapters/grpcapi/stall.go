package grpcapi

import (
	"cmp"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// StreamStallMax bounds how long ReadEvents and ReadStatementLines wait for
// their client to take the next message: a client that reads nothing for
// that long loses the stream (Aborted), and with it its slot of
// ReadEventsStreamsMax or StatementLinesStreamsMax and the messages held
// for it. A client that reads steadily takes a message (at most 3 MiB) well
// within it.
const StreamStallMax = time.Minute

// stallSender sends a server stream's messages from a goroutine of its own,
// so that the handler can end a stream whose client stopped reading.
// grpc-go's SendMsg blocks while the client's flow-control window is full,
// and nothing the handler can call makes it return: only the handler's
// return does, which ends the stream (grpc-go cancels the stream then, and
// a SendMsg blocked in another goroutine returns).
type stallSender struct {
	stream grpc.ServerStream
	what   string // the stream, for the error: "events of default"
	stall  time.Duration
	// msgs hands a message to the goroutine, which takes one only once
	// its SendMsg of the one before returned.
	msgs chan *encodedMessage
	// done carries the goroutine's end: nil once msgs is closed and every
	// message sent, or SendMsg's error.
	done  chan error
	timer *time.Timer
	// err is the sender's outcome once known: the goroutine's error, or
	// Aborted (a stall); closed says msgs is.
	err    error
	closed bool
}

// newStallSender starts the goroutine that sends stream's messages; stall
// is StreamStallMax when 0. Its caller must call stop (or finish) before it
// returns.
func newStallSender(stream grpc.ServerStream, what string, stall time.Duration) *stallSender {
	s := &stallSender{stream: stream, what: what, stall: cmp.Or(stall, StreamStallMax),
		msgs: make(chan *encodedMessage), done: make(chan error, 1)}
	s.timer = time.NewTimer(s.stall)
	s.timer.Stop()
	go s.run()
	return s
}

func (s *stallSender) run() {
	for m := range s.msgs {
		// The server's codec sends encoded messages as they are; gRPC puts
		// the buffer back once written.
		if err := s.stream.SendMsg(m); err != nil {
			s.done <- err
			return
		}
	}
	s.done <- nil
}

// send hands m to the goroutine, waiting at most the stall bound for it to
// be free. m is the sender's from then on, sent or let go.
//
// Errors: Aborted when the client took nothing for the stall bound;
// SendMsg's (the stream ended); the sender's earlier error.
func (s *stallSender) send(m *encodedMessage) error {
	if s.err != nil || s.closed {
		m.release()
		return cmp.Or(s.err, fmt.Errorf("grpcapi: a message sent on a closed stream"))
	}
	s.timer.Reset(s.stall)
	defer s.timer.Stop()
	select {
	case s.msgs <- m:
		return nil
	case err := <-s.done:
		m.release()
		s.err = err
	case <-s.timer.C:
		m.release()
		s.err = s.stalled()
	}
	return s.err
}

// finish waits, within the stall bound, for the messages handed over to
// be sent, and stops the goroutine.
//
// Errors: as send's.
func (s *stallSender) finish() error {
	s.stop()
	return s.err
}

// stop stops the goroutine once the message it is sending is sent, waiting
// for that within the stall bound: a handler that returns while SendMsg
// runs would end the stream under it. When the stream stalled already, it
// does not wait: SendMsg is blocked, and only the handler's return, which
// ends the stream, makes it return. Handlers defer it.
func (s *stallSender) stop() {
	if s.closed {
		return
	}
	s.closed = true
	close(s.msgs)
	if s.err != nil {
		return // the goroutine ended with it, or is blocked (stalled)
	}
	s.timer.Reset(s.stall)
	defer s.timer.Stop()
	select {
	case s.err = <-s.done:
	case <-s.timer.C:
		s.err = s.stalled()
	}
}

func (s *stallSender) stalled() error {
	return status.Errorf(codes.Aborted, "%s: the client read nothing for %s: the stream was ended", s.what, s.stall)
}
