package grpcapi

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestProgressNeverWaitsForItsClient: while the client takes nothing (its
// Send blocked), offers return at once and what waits is the last message
// and the kept ones; once it reads, it gets them in order. A client that
// never reads again ends the stream after the stall bound (Aborted), and
// the work was cancelled only if a Send failed.
func TestProgressNeverWaitsForItsClient(t *testing.T) {
	gate := make(chan struct{})
	var sent []int
	cancelled := false
	p := newProgressSender(func(m int) error {
		<-gate
		sent = append(sent, m)
		return nil
	}, func(m int) bool { return m%100 == 0 }, func() { cancelled = true })
	began := time.Now()
	for i := 1; i <= 1000; i++ {
		p.offer(i) // 1 is taken by the blocked Send at once, or waits
	}
	if d := time.Since(began); d > time.Second {
		t.Fatalf("1,000 offers to a client that reads nothing took %s", d)
	}
	close(gate)
	if err := p.finish(time.Minute, "test"); err != nil {
		t.Fatal(err)
	}
	// What was queued: the kept hundreds, in order, and the last. The
	// blocked Send took one first: whichever was queued when its goroutine
	// came to it (1, or a later one the offers replaced 1 with).
	want := []int{100, 200, 300, 400, 500, 600, 700, 800, 900, 1000}
	if len(sent) > 0 && sent[0]%100 != 0 {
		want = append([]int{sent[0]}, want...)
	}
	if !slices.Equal(sent, want) {
		t.Fatalf("sent %v, want %v", sent, want)
	}
	if cancelled {
		t.Fatal("cancelled without a failed Send")
	}

	stuck := newProgressSender(func(int) error { select {} }, func(int) bool { return false }, func() {})
	stuck.offer(1)
	stuck.offer(2)
	if err := stuck.finish(50*time.Millisecond, "test"); status.Code(err) != codes.Aborted {
		t.Fatalf("a client that reads nothing: %v, want Aborted", err)
	}
}
