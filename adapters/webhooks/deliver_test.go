package webhooks_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
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

// A dead letter at the cursor's next position, left by a ledgerd that
// gave the delivery up and stopped before moving the cursor past it
// (advance is a statement of its own, after record; a ReplayDead bumping
// the generation in between has the same effect: the advance fails and
// the worker reloads), stays a dead letter when the subscription resumes:
// it goes on with the next event. resumed used to look at a pending row
// only, so the dead letter was tried again from scratch, its age
// restarted, and blocked the subscription for another maximum age (24 h by
// default), while ListSubscriptions no longer counted it dead.
func TestDeadLetterAtTheCursorDoesNotBlockAfterARestart(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	e := newEnv(t, ctx)
	ledger := testenv.Name(t)
	appendEvents(t, ctx, e.log, ledger, `{"n":1}`, `{"n":2}`)
	r := newReceiver(t, 1) // position 1's endpoint is still down
	sub, _, err := e.store.Create(ctx, webhooks.NewSubscription{Ledger: ledger, URL: r.srv.URL, FromPosition: 1})
	testenv.NoError(t, err)
	// What a ledgerd left that gave position 1 up after a day and died
	// before its advance.
	_, err = e.pool.Exec(ctx, `INSERT INTO webhook_deliveries (subscription_id, position, ledger, event_type, status,
			attempts, response_code, error, first_attempt_at, last_attempt_at, updated_at)
		VALUES ($1, 1, $2, 'Alert', 'dead', 20, 500, 'HTTP 500', now() - interval '25 hours', now() - interval '1 minute', now())`,
		sub.ID, ledger)
	testenv.NoError(t, err)
	run(t, ctx, e.dispatcher(webhooks.Options{Owner: "a", Poll: 100 * time.Millisecond,
		BackoffMin: time.Minute, BackoffMax: time.Minute}))
	testenv.Eventually(t, 10*time.Second, func() error {
		if failures, got := r.state(); !slices.Equal(got, []uint64{2}) {
			return fmt.Errorf("accepted %v after %d more attempts of the dead letter at 1, want [2]", got, failures)
		}
		return nil
	})
	var status string
	testenv.NoError(t, e.pool.QueryRow(ctx, `SELECT status FROM webhook_deliveries WHERE subscription_id = $1 AND position = 1`,
		sub.ID).Scan(&status))
	if status != "dead" {
		t.Fatalf("the dead letter at 1 is %s now, want still dead", status)
	}
}

// rawStatusReceiver answers every request on a raw TCP listener with a
// malformed status line: pad ASCII bytes, then many two-byte runes ("é").
// Go's client quotes that status in its error, which the delivery log
// keeps (truncated to 1,024 bytes).
type rawStatusReceiver struct {
	ln       net.Listener
	pad      atomic.Int64
	requests atomic.Int64
}

func newRawStatusReceiver(t *testing.T) *rawStatusReceiver {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	testenv.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	r := &rawStatusReceiver{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				br := bufio.NewReader(c)
				n := 0
				for {
					l, err := br.ReadString('\n')
					if err != nil {
						return
					}
					if strings.HasPrefix(strings.ToLower(l), "content-length:") {
						fmt.Sscan(strings.TrimSpace(l[len("content-length:"):]), &n)
					}
					if l == "\r\n" {
						break
					}
				}
				_, _ = br.Discard(n)
				r.requests.Add(1)
				fmt.Fprintf(c, "HTTP/1.1 %s%s OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
					strings.Repeat("a", int(r.pad.Load())), strings.Repeat("é", 600))
			}()
		}
	}()
	return r
}

// An endpoint whose answer puts multi-byte UTF-8 in the client's error
// (here a malformed status line) gets its failed attempt recorded in the
// delivery log like any other, and the delivery waits for its back-off.
// The error used to be cut at 1,024 bytes inside a rune: PostgreSQL
// refused the invalid UTF-8, and the worker restarted and tried again at
// once, for ever: nothing recorded, no back-off, never a dead letter.
func TestErrorWithMultibyteTextIsRecorded(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	e := newEnv(t, ctx)
	ledger := testenv.Name(t)
	appendEvents(t, ctx, e.log, ledger, `{"n":1}`)
	r := newRawStatusReceiver(t)
	url := "http://" + r.ln.Addr().String() + "/hook"

	// Calibrate: where the runes start in the client's error, so that the
	// cut at 1,024 bytes falls inside one.
	_, err := http.Post(url, "application/json", strings.NewReader("{}"))
	if err == nil {
		t.Fatal("the malformed status line was accepted")
	}
	at := strings.Index(err.Error(), "é")
	if at < 0 || at > 1000 {
		t.Fatalf("client error %.200q: no rune early enough", err.Error())
	}
	if (1024-at)%2 == 0 {
		r.pad.Store(1)
	}
	r.requests.Store(0)

	sub, _, err := e.store.Create(ctx, webhooks.NewSubscription{Ledger: ledger, URL: url, FromPosition: 1})
	testenv.NoError(t, err)
	run(t, ctx, e.dispatcher(webhooks.Options{Owner: "a", Poll: 100 * time.Millisecond,
		BackoffMin: time.Minute, BackoffMax: time.Minute}))

	testenv.Eventually(t, 10*time.Second, func() error {
		var attempts int
		var status, text string
		if err := e.pool.QueryRow(ctx, `SELECT status, attempts, error FROM webhook_deliveries
			WHERE subscription_id = $1 AND position = 1`, sub.ID).Scan(&status, &attempts, &text); err != nil {
			return fmt.Errorf("the failed attempt is not in the delivery log (%d requests so far): %w", r.requests.Load(), err)
		}
		if status != "pending" || attempts != 1 {
			return fmt.Errorf("the delivery: %s after %d attempts, want pending after 1", status, attempts)
		}
		return nil
	})
	time.Sleep(3 * time.Second)
	if n := r.requests.Load(); n != 1 {
		t.Fatalf("%d requests within seconds, want 1: the back-off is a minute", n)
	}
}
