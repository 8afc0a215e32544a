// Package supervise runs a long-lived task again each time it fails, with a
// capped exponential back-off: the one restart loop of the writer, the
// projection runners and the relay.
package supervise

import (
	"context"
	"math/rand/v2"
	"time"
)

// Defaults of a Policy's zero fields.
const (
	// InitialDefault is the first delay after a failure.
	InitialDefault = 10 * time.Millisecond
	// MaxDefault caps the delay: a task whose dependency is away (NATS,
	// PostgreSQL) tries again at least this often, so it resumes within MaxDefault
	// of its return.
	MaxDefault = 5 * time.Second
	// HealthyDefault is how long a run must last for the back-off to start
	// over: a task that fails once a day waits InitialDefault, not MaxDefault.
	HealthyDefault = 10 * time.Second
	// JitterDefault is the fraction of each delay taken off at random.
	JitterDefault = 0.2
)

// Policy says how a task is restarted. The zero value takes the defaults.
type Policy struct {
	// Initial is the delay after the first failure; it doubles with each
	// failure that follows, up to Max.
	Initial, Max time.Duration
	// Healthy is how long a run must last for the next failure to wait
	// Initial again: it had recovered.
	Healthy time.Duration
	// Jitter, in [0, 1], is the most of each delay taken off at random, so
	// that the tasks of many ledgers failing together (NATS stopped) do not
	// all try again in step. 0 takes JitterDefault; negative means none.
	Jitter float64
	// OnRestart, if set, is told each failure and the delay before the next
	// run: where the task logs and counts its failures.
	OnRestart func(err error, delay time.Duration)
	// Now and Rand (a float in [0, 1)) are injected by tests; nil means
	// time.Now and math/rand/v2.Float64.
	Now  func() time.Time
	Rand func() float64
}

// withDefaults fills in p's zero fields.
func (p Policy) withDefaults() Policy {
	if p.Initial <= 0 {
		p.Initial = InitialDefault
	}
	if p.Max <= 0 {
		p.Max = MaxDefault
	}
	p.Max = max(p.Max, p.Initial)
	if p.Healthy <= 0 {
		p.Healthy = HealthyDefault
	}
	switch {
	case p.Jitter == 0:
		p.Jitter = JitterDefault
	case p.Jitter < 0:
		p.Jitter = 0
	case p.Jitter > 1:
		p.Jitter = 1
	}
	if p.Now == nil {
		p.Now = time.Now
	}
	if p.Rand == nil {
		p.Rand = rand.Float64
	}
	return p
}

// Run calls run until ctx ends or run returns nil (the task is done: a writer
// stopping idle). After each error it waits the back-off, told to
// p.OnRestart first, then calls run again. An error that comes with ctx ended
// is the task stopping, not failing: it is not told.
func Run(ctx context.Context, p Policy, run func(ctx context.Context) error) {
	p = p.withDefaults()
	b := backoff{p: p}
	for ctx.Err() == nil {
		began := p.Now()
		err := run(ctx)
		if err == nil || ctx.Err() != nil {
			return
		}
		delay := b.next(p.Now().Sub(began))
		if p.OnRestart != nil {
			p.OnRestart(err, delay)
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
	}
}

// backoff is the delay before each restart.
type backoff struct {
	p Policy
	// base is the delay before jitter of the next failure; 0 before the first.
	base time.Duration
}

// next returns the delay after a run that lasted ran and failed.
func (b *backoff) next(ran time.Duration) time.Duration {
	switch {
	case b.base == 0 || ran >= b.p.Healthy:
		b.base = b.p.Initial
	default:
		b.base = min(2*b.base, b.p.Max)
	}
	// Jitter only shortens the delay, so Max stays the cap.
	return b.base - time.Duration(b.p.Jitter*b.p.Rand()*float64(b.base))
}
