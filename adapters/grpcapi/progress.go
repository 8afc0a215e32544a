package grpcapi

import (
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// progressSender sends a progress stream's messages (RebuildProjection,
// RepairStream) from a goroutine of its own, so that the work reporting
// never waits for its client: grpc-go's Send blocks while the client's
// flow-control window is full, and a client that stopped reading (a
// terminal paused, a hung ledgerctl) held a rebuild, and what it holds,
// for as long as it liked. A message not yet sent is replaced by the next
// one, unless kept (one saying a projection is done): what waits is at
// most one message plus the kept ones.
type progressSender[T any] struct {
	send func(T) error
	keep func(T) bool
	// failed is called once when send fails (the work is cancelled).
	failed func()

	mu     sync.Mutex
	queue  []T
	closed bool
	err    error
	wake   chan struct{} // one pending wake-up at most
	done   chan error    // the goroutine's end: nil once closed and drained
}

func newProgressSender[T any](send func(T) error, keep func(T) bool, failed func()) *progressSender[T] {
	p := &progressSender[T]{send: send, keep: keep, failed: failed, wake: make(chan struct{}, 1), done: make(chan error, 1)}
	go p.run()
	return p
}

// offer queues m for sending, never waiting.
func (p *progressSender[T]) offer(m T) {
	p.mu.Lock()
	if p.err != nil || p.closed {
		p.mu.Unlock()
		return
	}
	if n := len(p.queue); n > 0 && !p.keep(p.queue[n-1]) {
		p.queue[n-1] = m
	} else {
		p.queue = append(p.queue, m)
	}
	p.mu.Unlock()
	p.poke()
}

func (p *progressSender[T]) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *progressSender[T]) run() {
	for range p.wake {
		for {
			p.mu.Lock()
			if len(p.queue) == 0 {
				closed := p.closed
				p.mu.Unlock()
				if closed {
					p.done <- nil
					return
				}
				break
			}
			m := p.queue[0]
			var zero T
			p.queue[0] = zero
			p.queue = p.queue[1:]
			p.mu.Unlock()
			if err := p.send(m); err != nil {
				p.mu.Lock()
				p.err = err
				p.mu.Unlock()
				p.failed()
				p.done <- err
				return
			}
		}
	}
}

// finish waits, at most stall, for what is queued to be sent. The handler
// returns then, which ends the stream, and a Send blocked on a client that
// reads nothing returns with it.
//
// Errors: Aborted when the client took nothing for stall; Send's error.
func (p *progressSender[T]) finish(stall time.Duration, what string) error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.poke()
	t := time.NewTimer(stall)
	defer t.Stop()
	select {
	case err := <-p.done:
		return err
	case <-t.C:
		return status.Errorf(codes.Aborted, "%s: the client read nothing for %s: the stream was ended", what, stall)
	}
}
