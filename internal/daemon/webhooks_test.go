package daemon_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/ledgerd/ledger/adapters/webhooks"
	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/client"
	"github.com/ledgerd/ledger/internal/daemon"
	"github.com/ledgerd/ledger/internal/testenv"
)

// receiverMode is how the test's webhook receiver answers.
type receiverMode int

const (
	receiverOK    receiverMode = iota // 204
	receiverFail                      // 500
	receiverStall                     // no answer until the sender gives up
)

// receiver is a real HTTP endpoint that records what it accepted, and
// verifies each signature with the Go client's helper.
type receiver struct {
	srv    *httptest.Server
	secret string // set once the subscription is made

	mu       sync.Mutex
	mode     receiverMode
	attempts map[receiverMode]int
	// accepted holds the delivery ids answered 2xx, in arrival order, and
	// positions their bodies' positions.
	accepted  []string
	positions []uint64
	badSig    []error
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{attempts: map[receiverMode]int{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	mode, secret := r.mode, r.secret
	r.attempts[mode]++
	r.mu.Unlock()
	switch mode {
	case receiverFail:
		http.Error(w, "down", http.StatusInternalServerError)
		return
	case receiverStall:
		<-req.Context().Done() // the sender's timeout
		return
	}
	err := client.VerifyWebhook(secret, req.Header.Get(client.WebhookSignatureHeader), body, time.Minute)
	var b webhooks.Body
	if jerr := json.Unmarshal(body, &b); err == nil && jerr != nil {
		err = jerr
	}
	id := req.Header.Get(client.WebhookDeliveryIDHeader)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil || b.DeliveryID != id {
		r.badSig = append(r.badSig, fmt.Errorf("delivery %s (body %s): %v", id, b.DeliveryID, err))
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	if req.Context().Err() != nil {
		// The sender gave up first: it retries this delivery, rightly, and
		// it never saw this answer.
		w.WriteHeader(http.StatusNoContent)
		return
	}
	r.accepted, r.positions = append(r.accepted, id), append(r.positions, b.Position)
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) set(m receiverMode) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mode = m
}

func (r *receiver) tried(m receiverMode) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.attempts[m]
}

// got returns the accepted delivery ids and positions so far.
func (r *receiver) got() ([]string, []uint64, []error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.accepted), slices.Clone(r.positions), slices.Clone(r.badSig)
}

// fastWebhooks starts ledgerd with webhook timings a test can wait out.
func fastWebhooks(t *testing.T, maxAge time.Duration, payloadMax ...int) (*harness, ledgerv1.WebhookServiceClient) {
	h := startWith(t, func(m *daemon.Main) {
		m.Config.Webhooks = webhooks.Options{MaxAge: maxAge, BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
			// 2 s: an answer slower than the attempt's timeout is retried
			// (at least once), and the receiver would see it twice; the
			// race detector on a loaded box can make a 204 take 300 ms.
			AttemptTimeout: 2 * time.Second, BreakerFailures: 3, BreakerCooldown: 300 * time.Millisecond,
			Poll: 100 * time.Millisecond}
		if len(payloadMax) > 0 {
			m.Config.Webhooks.PayloadMax = payloadMax[0]
		}
	})
	conn, err := grpc.NewClient(h.m.GRPCAddr(), h.auth(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	testenv.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return h, ledgerv1.NewWebhookServiceClient(conn)
}

func subscribe(t *testing.T, hooks ledgerv1.WebhookServiceClient, r *receiver, req *ledgerv1.CreateSubscriptionRequest) *ledgerv1.Subscription {
	t.Helper()
	req.Url = r.srv.URL + "/hook"
	resp, err := hooks.CreateSubscription(ctx(t), req)
	testenv.NoError(t, err)
	r.mu.Lock()
	r.secret = resp.GetSecret()
	r.mu.Unlock()
	return resp.GetSubscription()
}

func subscription(t *testing.T, hooks ledgerv1.WebhookServiceClient, ledger, id string) *ledgerv1.Subscription {
	t.Helper()
	resp, err := hooks.ListSubscriptions(ctx(t), &ledgerv1.ListSubscriptionsRequest{Ledger: ledger})
	testenv.NoError(t, err)
	for _, s := range resp.GetSubscriptions() {
		if s.GetId() == id {
			return s
		}
	}
	t.Fatalf("subscription %s not listed", id)
	return nil
}

// checkInOrderOnce checks that ids are the deliveries of want's positions,
// once each, in order.
func checkInOrderOnce(ledger, sub string, ids []string, positions, want []uint64) error {
	// Delivery is at least once: an answer the sender's timeout beat (a
	// loaded machine) makes it send the same delivery again, right after.
	// Receivers dedupe by delivery id; so does this check, for repeats in a
	// row only: a delivery seen again later would be out of order.
	for i := 1; i < len(ids); {
		if ids[i] == ids[i-1] {
			ids, positions = slices.Delete(ids, i, i+1), slices.Delete(positions, i, i+1)
			continue
		}
		i++
	}
	if !slices.Equal(positions, want) {
		return fmt.Errorf("positions %v, want %v", positions, want)
	}
	for i, id := range ids {
		if w := webhooks.DeliveryID(ledger, want[i], sub); id != w {
			return fmt.Errorf("delivery %d: id %s, want %s", i, id, w)
		}
	}
	return nil
}

// TestWebhookFailStallRecover: an endpoint that fails (500), then stalls
// past the timeout, then recovers receives every TransferCommitted once per
// delivery id, in position order, each signature verifying with
// client.VerifyWebhook; its circuit opens while it fails and closes after;
// transfers keep being acknowledged meanwhile. An account pattern filters.
func TestWebhookFailStallRecover(t *testing.T) {
	t.Parallel()
	h, hooks := fastWebhooks(t, time.Hour)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	r := newReceiver(t)
	r.set(receiverFail)
	sub := subscribe(t, hooks, r, &ledgerv1.CreateSubscriptionRequest{Ledger: ledger, EventTypes: []string{"TransferCommitted"}})
	other := newReceiver(t)
	eur := subscribe(t, hooks, other, &ledgerv1.CreateSubscriptionRequest{Ledger: ledger, AccountPattern: "eve:*", FromPosition: 1})

	var want []uint64
	for i := range 5 {
		want = append(want, h.transferOK(t, ledger, transfer(fmt.Sprintf("f%d", i), "alice", "bob", "1.00", "USD")))
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		if c := subscription(t, hooks, ledger, sub.GetId()).GetCircuit(); r.tried(receiverFail) < 3 || c == webhooks.CircuitClosed {
			return fmt.Errorf("%d failed attempts, circuit %s: want 3 and open", r.tried(receiverFail), c)
		}
		return nil
	})
	r.set(receiverStall)
	for i := range 5 {
		want = append(want, h.transferOK(t, ledger, transfer(fmt.Sprintf("s%d", i), "alice", "bob", "1.00", "USD")))
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		if n := r.tried(receiverStall); n < 2 {
			return fmt.Errorf("%d stalled attempts", n)
		}
		return nil
	})
	// The endpoint is down: the ledger still acknowledges transfers.
	for i := range 5 {
		want = append(want, h.transferOK(t, ledger, transfer(fmt.Sprintf("d%d", i), "alice", "bob", "1.00", "USD")))
	}
	if ids, _, _ := r.got(); len(ids) != 0 {
		t.Fatalf("accepted %v while failing", ids)
	}
	r.set(receiverOK)
	testenv.Eventually(t, 60*time.Second, func() error {
		ids, positions, bad := r.got()
		if len(bad) > 0 {
			t.Fatalf("signatures that do not verify: %v", bad)
		}
		if len(positions) < len(want) {
			return fmt.Errorf("%d of %d delivered", len(positions), len(want))
		}
		return checkInOrderOnce(ledger, sub.GetId(), ids, positions, want)
	})
	testenv.Eventually(t, 30*time.Second, func() error {
		s := subscription(t, hooks, ledger, sub.GetId())
		if s.GetCircuit() != webhooks.CircuitClosed || s.GetDeliveredPosition() != want[len(want)-1] {
			return fmt.Errorf("circuit %s at %d, want closed at %d", s.GetCircuit(), s.GetDeliveredPosition(), want[len(want)-1])
		}
		return nil
	})
	ds, err := hooks.ListDeliveries(ctx(t), &ledgerv1.ListDeliveriesRequest{Ledger: ledger, SubscriptionId: sub.GetId(),
		Status: ledgerv1.DeliveryStatus_DELIVERY_STATUS_DELIVERED, Limit: 100})
	testenv.NoError(t, err)
	if n := len(ds.GetDeliveries()); n != len(want) {
		t.Fatalf("%d delivered in the log, want %d", n, len(want))
	}
	first := ds.GetDeliveries()[len(want)-1] // newest first
	if first.GetPosition() != want[0] || first.GetAttempts() < 2 || first.GetResponseCode() != http.StatusNoContent {
		t.Errorf("first delivery: position %d, %d attempts, code %d: want %d, retried, 204",
			first.GetPosition(), first.GetAttempts(), first.GetResponseCode(), want[0])
	}
	// The pattern: only eve:eur's account opening (position 6 of setup).
	testenv.Eventually(t, 30*time.Second, func() error {
		_, positions, _ := other.got()
		if !slices.Equal(positions, []uint64{6}) {
			return fmt.Errorf("eve:* got positions %v, want [6]", positions)
		}
		if s := subscription(t, hooks, ledger, eur.GetId()); s.GetDeliveredPosition() != want[len(want)-1] {
			return fmt.Errorf("eve:* cursor %d, want %d", s.GetDeliveredPosition(), want[len(want)-1])
		}
		return nil
	})
}

// TestWebhookDeadLetterReplay: deliveries to a failing endpoint are dead
// letters after the maximum age and the subscription moves on; once it
// recovers, a replay of the dead letters delivers them in order, and a
// replay from a position delivers again from there, with the same ids.
func TestWebhookDeadLetterReplay(t *testing.T) {
	t.Parallel()
	h, hooks := fastWebhooks(t, 300*time.Millisecond)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	r := newReceiver(t)
	r.set(receiverFail)
	sub := subscribe(t, hooks, r, &ledgerv1.CreateSubscriptionRequest{Ledger: ledger, EventTypes: []string{"TransferCommitted", "AlertRaised"}})
	want := []uint64{
		h.transferOK(t, ledger, transfer("t1", "alice", "bob", "1.00", "USD")),
		h.transferOK(t, ledger, transfer("t2", "alice", "bob", "2.00", "USD")),
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		s := subscription(t, hooks, ledger, sub.GetId())
		if s.GetDeadLetters() != 2 || s.GetDeliveredPosition() != want[1] {
			return fmt.Errorf("%d dead letters, cursor %d: want 2 at %d", s.GetDeadLetters(), s.GetDeliveredPosition(), want[1])
		}
		return nil
	})
	dead, err := hooks.ListDeliveries(ctx(t), &ledgerv1.ListDeliveriesRequest{Ledger: ledger, SubscriptionId: sub.GetId(),
		Status: ledgerv1.DeliveryStatus_DELIVERY_STATUS_DEAD})
	testenv.NoError(t, err)
	if n := len(dead.GetDeliveries()); n != 2 || dead.GetDeliveries()[0].GetResponseCode() != 500 || dead.GetDeliveries()[0].GetError() == "" {
		t.Fatalf("dead letters %v, want 2 with code 500 and an error", dead.GetDeliveries())
	}

	if out := h.runCtlOK(t, ledger, "webhooks", "deliveries", sub.GetId(), "--status", "dead"); !strings.Contains(out, "HTTP 500") {
		t.Fatalf("ledgerctl webhooks deliveries --status dead:\n%s", out)
	}
	r.set(receiverOK)
	if out := h.runCtlOK(t, ledger, "webhooks", "replay", sub.GetId(), "--dead"); !strings.Contains(out, "queued 2") {
		t.Fatalf("ledgerctl webhooks replay --dead: %s, want queued 2", out)
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		ids, positions, _ := r.got()
		return checkInOrderOnce(ledger, sub.GetId(), ids, positions, want)
	})
	testenv.Eventually(t, 30*time.Second, func() error {
		if n := subscription(t, hooks, ledger, sub.GetId()).GetDeadLetters(); n != 0 {
			return fmt.Errorf("%d dead letters after the replay", n)
		}
		return nil
	})

	rep, err := hooks.ReplayDeliveries(ctx(t), &ledgerv1.ReplayDeliveriesRequest{Ledger: ledger, SubscriptionId: sub.GetId(), FromPosition: want[0]})
	testenv.NoError(t, err)
	if rep.GetQueued() != want[1]-want[0]+1 {
		t.Fatalf("replay from %d queued %d, want %d", want[0], rep.GetQueued(), want[1]-want[0]+1)
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		ids, positions, _ := r.got()
		return checkInOrderOnce(ledger, sub.GetId(), ids, positions, append(slices.Clone(want), want...))
	})

	// Bad requests name their field; an unknown subscription is NotFound.
	for _, c := range []struct {
		call  func() error
		code  codes.Code
		field string
	}{
		{func() error {
			_, err := hooks.CreateSubscription(ctx(t), &ledgerv1.CreateSubscriptionRequest{Ledger: ledger, Url: "ftp://x"})
			return err
		}, codes.InvalidArgument, "url"},
		{func() error {
			_, err := hooks.CreateSubscription(ctx(t), &ledgerv1.CreateSubscriptionRequest{Ledger: ledger, Url: "http://x", AccountPattern: "a::b"})
			return err
		}, codes.InvalidArgument, "account_pattern"},
		{func() error {
			_, err := hooks.ReplayDeliveries(ctx(t), &ledgerv1.ReplayDeliveriesRequest{Ledger: ledger, SubscriptionId: sub.GetId()})
			return err
		}, codes.InvalidArgument, "dead_letters"},
		{func() error {
			_, err := hooks.ReplayDeliveries(ctx(t), &ledgerv1.ReplayDeliveriesRequest{Ledger: ledger, SubscriptionId: sub.GetId(), FromPosition: 999})
			return err
		}, codes.InvalidArgument, "from_position"},
		{func() error {
			_, err := hooks.ListDeliveries(ctx(t), &ledgerv1.ListDeliveriesRequest{Ledger: ledger, SubscriptionId: sub.GetId(), Limit: 1001})
			return err
		}, codes.InvalidArgument, "limit"},
		{func() error {
			_, err := hooks.DeleteSubscription(ctx(t), &ledgerv1.DeleteSubscriptionRequest{Ledger: ledger, Id: "wh_0000000000000000"})
			return err
		}, codes.NotFound, ""},
	} {
		err := c.call()
		st, _ := status.FromError(err)
		if st.Code() != c.code || fieldOf(st) != c.field {
			t.Errorf("%v: want %s naming %q", err, c.code, c.field)
		}
	}
	_, err = hooks.DeleteSubscription(ctx(t), &ledgerv1.DeleteSubscriptionRequest{Ledger: ledger, Id: sub.GetId()})
	testenv.NoError(t, err)
	if resp, err := hooks.ListSubscriptions(ctx(t), &ledgerv1.ListSubscriptionsRequest{Ledger: ledger}); err != nil || len(resp.GetSubscriptions()) != 0 {
		t.Fatalf("after delete: %v, %v", resp.GetSubscriptions(), err)
	}
}

// TestWebhookPayloadLimit: an event whose body is over the payload limit is
// a dead letter at once, its error naming the size; the next is delivered.
func TestWebhookPayloadLimit(t *testing.T) {
	t.Parallel()
	const limit = 400
	h, hooks := fastWebhooks(t, time.Hour, limit)
	ledger := testenv.Name(t)
	h.setup(t, ledger)
	r := newReceiver(t)
	sub := subscribe(t, hooks, r, &ledgerv1.CreateSubscriptionRequest{Ledger: ledger})
	big := transfer("big", "alice", "bob", "1.00", "USD")
	big.Reference = strings.Repeat("r", 200)
	bigAt := h.transferOK(t, ledger, big)
	small := h.transferOK(t, ledger, transfer("s", "alice", "bob", "1.00", "USD"))
	testenv.Eventually(t, 30*time.Second, func() error {
		ids, positions, _ := r.got()
		return checkInOrderOnce(ledger, sub.GetId(), ids, positions, []uint64{small})
	})
	ds, err := hooks.ListDeliveries(ctx(t), &ledgerv1.ListDeliveriesRequest{Ledger: ledger, SubscriptionId: sub.GetId(),
		Status: ledgerv1.DeliveryStatus_DELIVERY_STATUS_DEAD})
	testenv.NoError(t, err)
	if len(ds.GetDeliveries()) != 1 || ds.GetDeliveries()[0].GetPosition() != bigAt ||
		!strings.Contains(ds.GetDeliveries()[0].GetError(), fmt.Sprintf("over the limit of %d", limit)) ||
		ds.GetDeliveries()[0].GetAttempts() != 0 {
		t.Fatalf("dead letters %v, want the big transfer at %d, not attempted, its error naming the limit", ds.GetDeliveries(), bigAt)
	}

	// Over REST too, never with the secret.
	var listed struct {
		Subscriptions []map[string]any
	}
	h.rest(t, "GET", "/v1/ledgers/"+ledger+"/webhooks", "", http.StatusOK, &listed)
	if len(listed.Subscriptions) != 1 || listed.Subscriptions[0]["id"] != sub.GetId() || listed.Subscriptions[0]["secret"] != nil {
		t.Fatalf("REST list %v, want %s without a secret", listed.Subscriptions, sub.GetId())
	}
	var replayed struct{ Queued string }
	h.rest(t, "POST", "/v1/ledgers/"+ledger+"/webhooks/"+sub.GetId()+":replay", `{"dead_letters": true}`, http.StatusOK, &replayed)
	if replayed.Queued != "1" {
		t.Fatalf("REST replay queued %q, want 1", replayed.Queued)
	}
}
