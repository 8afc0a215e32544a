package bench

import (
	"fmt"
	"slices"
	"strconv"
	"time"
)

// webhookSampleMax bounds the positions listed in a report as examples of
// what went wrong.
const webhookSampleMax = 10

// Delivery is one request the receiver answered 2xx: its delivery id (the
// header's and the body's), the body's position, and when it was answered.
type Delivery struct {
	HeaderID string
	BodyID   string
	Position uint64
	At       time.Time
}

// DeliveryCheck is what the receiver's 2xx answers say against the
// positions the subscription covers.
type DeliveryCheck struct {
	// Expected positions are covered by the subscription; Accepted counts
	// the 2xx answers, Delivered the distinct delivery ids among them.
	Expected  int `json:"expected"`
	Accepted  int `json:"accepted"`
	Delivered int `json:"delivered"`
	// Missing positions were expected and never delivered; Unexpected ones
	// were delivered and not expected.
	Missing    int `json:"missing"`
	Unexpected int `json:"unexpected"`
	// Redelivered are 2xx answers to the delivery id answered 2xx just
	// before: the sender did not see that answer in time and retried, as
	// at-least-once delivery does (receivers dedupe on the id). Duplicates
	// are 2xx answers to a delivery id answered 2xx before others.
	Redelivered int `json:"redelivered,omitempty"`
	Duplicates  int `json:"duplicates"`
	// OutOfOrder first deliveries came at or below the position of an
	// earlier one.
	OutOfOrder int `json:"out_of_order"`
	// BadIDs carry a header or body id other than
	// "<ledger>:<position>:<subscription>".
	BadIDs int `json:"bad_ids"`
	// Samples name a few of the positions behind the counts above.
	Samples []string `json:"samples,omitempty"`

	// firstAt is when each expected position was first delivered.
	firstAt map[uint64]time.Time
}

// OK says whether every expected position was delivered once, in order,
// under its id, and nothing else.
func (c DeliveryCheck) OK() bool {
	return c.Expected > 0 && c.Missing == 0 && c.Unexpected == 0 && c.Duplicates == 0 && c.OutOfOrder == 0 && c.BadIDs == 0
}

// checkDeliveries checks the 2xx answers, in the order they were given,
// against expected (the covered positions, ascending): every position
// delivered; the first deliveries in strictly increasing position order;
// each delivery id answered 2xx once, or again right after (a retry of a
// delivery whose answer the sender missed; a retry after a non-2xx answer
// is not in accepted); each id "<ledger>:<position>:<subscription>",
// the documented format, built here rather than taken from the server.
func checkDeliveries(ledger, subscription string, expected []uint64, accepted []Delivery) DeliveryCheck {
	c := DeliveryCheck{Expected: len(expected), Accepted: len(accepted), firstAt: map[uint64]time.Time{}}
	sample := func(format string, a ...any) {
		if len(c.Samples) < webhookSampleMax {
			c.Samples = append(c.Samples, fmt.Sprintf(format, a...))
		}
	}
	seen := map[string]bool{}
	var (
		last   uint64
		prevID string
	)
	for i, d := range accepted {
		want := ledger + ":" + strconv.FormatUint(d.Position, 10) + ":" + subscription
		if d.HeaderID != want || d.BodyID != want {
			c.BadIDs++
			sample("delivery %d: ids %q and %q, want %q", i, d.HeaderID, d.BodyID, want)
		}
		if seen[d.HeaderID] {
			if d.HeaderID == prevID {
				c.Redelivered++
				continue
			}
			c.Duplicates++
			sample("position %d delivered again after a 2xx and later deliveries", d.Position)
			continue
		}
		prevID = d.HeaderID
		seen[d.HeaderID] = true
		c.Delivered++
		if c.Delivered > 1 && d.Position <= last {
			c.OutOfOrder++
			sample("position %d delivered after %d", d.Position, last)
		}
		last = max(last, d.Position)
		if _, ok := slices.BinarySearch(expected, d.Position); !ok {
			c.Unexpected++
			sample("position %d delivered, not covered", d.Position)
			continue
		}
		if _, ok := c.firstAt[d.Position]; !ok {
			c.firstAt[d.Position] = d.At
		}
	}
	for _, p := range expected {
		if _, ok := c.firstAt[p]; !ok {
			c.Missing++
			sample("position %d never delivered", p)
		}
	}
	return c
}

// drain says how long after stallEnd the backlog was delivered: every
// covered transfer acknowledged by stallEnd. ok is false when one of them
// was never delivered; backlog counts them.
func (c DeliveryCheck) drain(covered []coveredTransfer, stallEnd time.Time) (took time.Duration, backlog int, ok bool) {
	var done time.Time
	for _, t := range covered {
		if t.AckedAt.After(stallEnd) {
			continue
		}
		backlog++
		at, delivered := c.firstAt[t.Position]
		if !delivered {
			return 0, backlog, false
		}
		if at.After(done) {
			done = at
		}
	}
	if backlog == 0 {
		return 0, 0, true
	}
	return max(done.Sub(stallEnd), 0), backlog, true
}

// ackSample is the count of CREATED transfers at a time of the load.
type ackSample struct {
	At    time.Time
	Acked int64
}

// ackedAt interpolates the count of acknowledged transfers at t between the
// samples (ascending in time); before the first it is the first's, after
// the last the last's.
func ackedAt(samples []ackSample, t time.Time) float64 {
	if len(samples) == 0 {
		return 0
	}
	i, _ := slices.BinarySearchFunc(samples, t, func(s ackSample, t time.Time) int { return s.At.Compare(t) })
	switch {
	case i == 0:
		return float64(samples[0].Acked)
	case i == len(samples):
		return float64(samples[len(samples)-1].Acked)
	}
	a, b := samples[i-1], samples[i]
	span := b.At.Sub(a.At)
	if span <= 0 {
		return float64(b.Acked)
	}
	f := float64(t.Sub(a.At)) / float64(span)
	return float64(a.Acked) + f*float64(b.Acked-a.Acked)
}

// WriteWindow is the acknowledged write rate over a part of the load.
type WriteWindow struct {
	Name      string  `json:"name"`
	FromS     float64 `json:"from_s"` // seconds from the start of the load
	Seconds   float64 `json:"seconds"`
	Transfers float64 `json:"transfers"`
	PerSecond float64 `json:"per_second"`
}

// window is the rate between from and to (from the start of the load at
// start); ok is false when the window is empty.
func window(name string, samples []ackSample, start, from, to time.Time) (WriteWindow, bool) {
	if !to.After(from) {
		return WriteWindow{}, false
	}
	n := ackedAt(samples, to) - ackedAt(samples, from)
	secs := to.Sub(from).Seconds()
	return WriteWindow{Name: name, FromS: from.Sub(start).Seconds(), Seconds: secs, Transfers: n, PerSecond: n / secs}, true
}
