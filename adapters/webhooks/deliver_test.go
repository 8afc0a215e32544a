package webhooks_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ledgerd/ledger/adapters/natsbus"
	"github.com/ledgerd/ledger/adapters/webhooks"
	"github.com/ledgerd/ledger/internal/testenv"
)

// receiver answers 500 to the delivery of one position until healed, 204
// to every other, and records the positions it accepted.
type receiver struct {
	srv    *httptest.Server
	failAt uint64

	mu       sync.Mutex
	healed   bool
	failures int
	accepted []uint64
}

func newReceiver(t *testing.T, failAt uint64) *receiver {
	r := &receiver{failAt: failAt}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	var b webhooks.Body
	raw, _ := io.ReadAll(req.Body)
	if err := json.Unmarshal(raw, &b); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if b.Position == r.failAt && !r.healed {
		r.failures++
		http.Error(w, "down", http.StatusInternalServerError)
		return
	}
	r.accepted = append(r.accepted, b.Position)
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) heal() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.healed = true
}

func (r *receiver) state() (failures int, accepted []uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failures, slices.Clone(r.accepted)
}

// retryingOptions retries a failed delivery a minute later: a replay that
// waited for the delivery's next attempt would come too late for the tests.
func retryingOptions() webhooks.Options {
	return webhooks.Options{Owner: "a", Poll: 100 * time.Millisecond, BackoffMin: time.Minute, BackoffMax: time.Minute}
}

// waitForFailure waits until r has refused a delivery once: the
// subscription's worker is between two attempts.
func waitForFailure(t *testing.T, r *receiver) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, func() error {
		if n, _ := r.state(); n == 0 {
			return fmt.Errorf("no failed attempt yet")
		}
		return nil
	})
}

// A replay from a position, asked while a delivery waits for its next
// attempt, takes over within a poll: the events from that position are
// delivered again at once. The replay used to wait for the retried
// delivery to succeed or die (up to its maximum age, 24 h by default).
func TestReplayFromTakesOverARetriedDelivery(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	e := newEnv(t, ctx)
	ledger := testenv.Name(t)
	appendEvents(t, ctx, e.log, ledger, `{"n":1}`, `{"n":2}`)
	r := newReceiver(t, 2)
	sub, _, err := e.store.Create(ctx, webhooks.NewSubscription{Ledger: ledger, URL: r.srv.URL, FromPosition: 1})
	testenv.NoError(t, err)
	run(t, ctx, e.dispatcher(retryingOptions()))
	waitForFailure(t, r)

	r.heal() // first: without the replay, the next attempt is a minute away
	n, err := e.store.ReplayFrom(ctx, ledger, sub.ID, 1)
	testenv.NoError(t, err)
	if n != 1 {
		t.Fatalf("replay from 1: %d positions, want 1 (the cursor at 1)", n)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if _, got := r.state(); !slices.Equal(got, []uint64{1, 1, 2}) {
			return fmt.Errorf("accepted %v, want [1 1 2]", got)
		}
		return nil
	})
}

// A replay of the dead letters, asked while a delivery waits for its next
// attempt, takes over within a poll: the dead letter is tried again (here
// a dead letter again at once, its payload over the limit), and the
// delivery then goes on with its attempts (its maximum age counts from
// its first).
func TestReplayDeadTakesOverARetriedDelivery(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	e := newEnv(t, ctx)
	ledger := testenv.Name(t)
	const payloadMax = 1 << 10
	appendEvents(t, ctx, e.log, ledger, `{"big":"`+strings.Repeat("x", payloadMax)+`"}`, `{"n":2}`)
	r := newReceiver(t, 2)
	sub, _, err := e.store.Create(ctx, webhooks.NewSubscription{Ledger: ledger, URL: r.srv.URL, FromPosition: 1})
	testenv.NoError(t, err)
	opts := retryingOptions()
	opts.PayloadMax = payloadMax
	run(t, ctx, e.dispatcher(opts))
	waitForFailure(t, r)

	r.heal()
	n, err := e.store.ReplayDead(ctx, ledger, sub.ID)
	testenv.NoError(t, err)
	if n != 1 {
		t.Fatalf("replay of the dead letters: %d, want 1", n)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		var status string
		var replay bool
		if err := e.pool.QueryRow(ctx, `SELECT status, replay FROM webhook_deliveries WHERE subscription_id = $1 AND position = 1`,
			sub.ID).Scan(&status, &replay); err != nil {
			return err
		}
		if status != "dead" || replay {
			return fmt.Errorf("the dead letter: status %s, queued for a replay %v: want dead, tried again", status, replay)
		}
		ds, _, err := e.store.Deliveries(ctx, ledger, sub.ID, webhooks.StatusDelivered, 0, 10)
		if err != nil {
			return err
		}
		if len(ds) != 1 || ds[0].Position != 2 || ds[0].Attempts != 2 {
			return fmt.Errorf("delivered: %+v; want position 2 in 2 attempts (one before the replay, one after)", ds)
		}
		return nil
	})
	if _, got := r.state(); !slices.Equal(got, []uint64{2}) {
		t.Fatalf("accepted %v, want [2]", got)
	}
}

// closingSource counts the closes of a source.
type closingSource struct {
	webhooks.Source
	closes *atomic.Int64
}

func (s closingSource) Close() {
	s.closes.Add(1)
	s.Source.Close()
}

// A delivery waiting for its next attempt lets go of its source (the
// frames read ahead, megabytes a subscription, held for as long as the
// endpoint fails), and the worker reads on from the cursor once it is
// delivered: every event once, in order.
func TestRetriedDeliveryReleasesItsSource(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	e := newEnv(t, ctx)
	ledger := testenv.Name(t)
	appendEvents(t, ctx, e.log, ledger, `{"n":1}`, `{"n":2}`, `{"n":3}`)
	r := newReceiver(t, 2)
	_, _, err := e.store.Create(ctx, webhooks.NewSubscription{Ledger: ledger, URL: r.srv.URL, FromPosition: 1})
	testenv.NoError(t, err)
	var closes atomic.Int64
	d := webhooks.NewDispatcher(e.store, e.log, func(ledger string) webhooks.Source {
		return closingSource{Source: natsbus.NewSource(ledger, e.js, e.log, natsbus.StreamOptions{}, nil), closes: &closes}
	}, webhooks.Options{Owner: "a", Poll: 100 * time.Millisecond, BackoffMin: time.Second, BackoffMax: time.Second})
	run(t, ctx, d)
	waitForFailure(t, r)
	testenv.Eventually(t, 5*time.Second, func() error {
		if closes.Load() == 0 {
			return fmt.Errorf("the source is still open while the delivery waits")
		}
		return nil
	})
	r.heal()
	testenv.Eventually(t, 10*time.Second, func() error {
		if _, got := r.state(); !slices.Equal(got, []uint64{1, 2, 3}) {
			return fmt.Errorf("accepted %v, want [1 2 3]", got)
		}
		return nil
	})
}

// A delivery resumed past its maximum age (ledgerd was down longer than
// it) is tried once more before it is a dead letter: here the endpoint is
// up again, and it is delivered. It used to die at once, untried.
func TestResumedDeliveryPastItsAgeIsTriedOnce(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	e := newEnv(t, ctx)
	ledger := testenv.Name(t)
	appendEvents(t, ctx, e.log, ledger, `{"n":1}`)
	r := newReceiver(t, 0)
	sub, _, err := e.store.Create(ctx, webhooks.NewSubscription{Ledger: ledger, URL: r.srv.URL, FromPosition: 1})
	testenv.NoError(t, err)
	// What a ledgerd that tried it three times, two days ago, left.
	_, err = e.pool.Exec(ctx, `INSERT INTO webhook_deliveries (subscription_id, position, ledger, event_type, status,
			attempts, first_attempt_at, last_attempt_at, updated_at)
		VALUES ($1, 1, $2, 'Unknown', 'pending', 3, now() - interval '2 days', now() - interval '2 days', now())`, sub.ID, ledger)
	testenv.NoError(t, err)
	run(t, ctx, e.dispatcher(webhooks.Options{Owner: "a", Poll: 100 * time.Millisecond}))
	testenv.Eventually(t, 10*time.Second, func() error {
		if _, got := r.state(); !slices.Equal(got, []uint64{1}) {
			return fmt.Errorf("accepted %v, want [1]", got)
		}
		return nil
	})
	// Recorded once the receiver has answered.
	testenv.Eventually(t, 10*time.Second, func() error {
		var status string
		var attempts int
		testenv.NoError(t, e.pool.QueryRow(ctx, `SELECT status, attempts FROM webhook_deliveries
			WHERE subscription_id = $1 AND position = 1`, sub.ID).Scan(&status, &attempts))
		if status != "delivered" || attempts != 4 {
			return fmt.Errorf("the delivery: %s after %d attempts, want delivered after 4", status, attempts)
		}
		return nil
	})
}
