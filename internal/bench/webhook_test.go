package bench

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ledgerd/ledger/adapters/webhooks"
	"github.com/ledgerd/ledger/client"
)

func delivered(ledger, sub string, at time.Time, positions ...uint64) []Delivery {
	ds := make([]Delivery, len(positions))
	for i, p := range positions {
		id := fmt.Sprintf("%s:%d:%s", ledger, p, sub)
		ds[i] = Delivery{HeaderID: id, BodyID: id, Position: p, At: at.Add(time.Duration(i) * time.Second)}
	}
	return ds
}

func TestCheckDeliveries(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	expected := []uint64{3, 5, 8}
	badID := delivered("l", "wh_1", t0, 3, 5, 8)
	badID[1].HeaderID = "l:5:wh_2"
	badBody := delivered("l", "wh_1", t0, 3, 5, 8)
	badBody[2].BodyID = "l:9:wh_1"
	tests := []struct {
		name     string
		expected []uint64
		accepted []Delivery
		want     DeliveryCheck
	}{
		{"every position once in order", expected, delivered("l", "wh_1", t0, 3, 5, 8),
			DeliveryCheck{Expected: 3, Accepted: 3, Delivered: 3}},
		{"a retry right after a 2xx the sender missed", expected, delivered("l", "wh_1", t0, 3, 5, 5, 8),
			DeliveryCheck{Expected: 3, Accepted: 4, Delivered: 3, Redelivered: 1}},
		{"a duplicate of an earlier one later", expected, delivered("l", "wh_1", t0, 3, 5, 8, 3),
			DeliveryCheck{Expected: 3, Accepted: 4, Delivered: 3, Duplicates: 1}},
		{"out of order", expected, delivered("l", "wh_1", t0, 5, 3, 8),
			DeliveryCheck{Expected: 3, Accepted: 3, Delivered: 3, OutOfOrder: 1}},
		{"one missing", expected, delivered("l", "wh_1", t0, 3, 8),
			DeliveryCheck{Expected: 3, Accepted: 2, Delivered: 2, Missing: 1}},
		{"one not covered", expected, delivered("l", "wh_1", t0, 3, 4, 5, 8),
			DeliveryCheck{Expected: 3, Accepted: 4, Delivered: 4, Unexpected: 1}},
		{"a header id of another subscription", expected, badID,
			DeliveryCheck{Expected: 3, Accepted: 3, Delivered: 3, BadIDs: 1}},
		{"a body id of another position", expected, badBody,
			DeliveryCheck{Expected: 3, Accepted: 3, Delivered: 3, BadIDs: 1}},
		{"nothing covered", nil, nil, DeliveryCheck{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := checkDeliveries("l", "wh_1", tt.expected, tt.accepted)
			samples := got.Samples
			got.Samples, got.firstAt = nil, nil
			if got.Expected != tt.want.Expected || got.Accepted != tt.want.Accepted || got.Delivered != tt.want.Delivered ||
				got.Missing != tt.want.Missing || got.Unexpected != tt.want.Unexpected || got.Duplicates != tt.want.Duplicates ||
				got.OutOfOrder != tt.want.OutOfOrder || got.BadIDs != tt.want.BadIDs || got.Redelivered != tt.want.Redelivered {
				t.Errorf("checkDeliveries = %+v, want %+v", got, tt.want)
			}
			wrong := tt.want.Missing + tt.want.Unexpected + tt.want.Duplicates + tt.want.OutOfOrder + tt.want.BadIDs
			if len(samples) != wrong {
				t.Errorf("%d samples %q, want %d", len(samples), samples, wrong)
			}
			if ok, want := got.OK(), wrong == 0 && tt.want.Expected > 0; ok != want {
				t.Errorf("OK() = %t, want %t", ok, want)
			}
		})
	}
}

func TestCheckDeliveriesSamplesBounded(t *testing.T) {
	var expected []uint64
	for p := range uint64(3 * webhookSampleMax) {
		expected = append(expected, p+1)
	}
	got := checkDeliveries("l", "wh_1", expected, nil)
	if got.Missing != len(expected) || len(got.Samples) != webhookSampleMax {
		t.Errorf("missing %d, %d samples; want %d, %d", got.Missing, len(got.Samples), len(expected), webhookSampleMax)
	}
}

func TestDrain(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	stallEnd := t0.Add(60 * time.Second)
	covered := []coveredTransfer{{3, t0.Add(time.Second)}, {5, t0.Add(59 * time.Second)}, {8, t0.Add(61 * time.Second)}}
	// Delivered at stallEnd+10 s, +11 s, +12 s.
	c := checkDeliveries("l", "wh_1", []uint64{3, 5, 8}, delivered("l", "wh_1", stallEnd.Add(10*time.Second), 3, 5, 8))
	took, backlog, ok := c.drain(covered, stallEnd)
	if !ok || backlog != 2 || took != 11*time.Second {
		t.Errorf("drain = %s, %d, %t; want 11s, 2, true", took, backlog, ok)
	}
	missing := checkDeliveries("l", "wh_1", []uint64{3, 5, 8}, delivered("l", "wh_1", stallEnd, 3, 8))
	if _, backlog, ok := missing.drain(covered, stallEnd); ok || backlog != 2 {
		t.Errorf("drain with 5 missing = %d, %t; want 2, false", backlog, ok)
	}
	if took, backlog, ok := c.drain(covered[2:], stallEnd); !ok || backlog != 0 || took != 0 {
		t.Errorf("drain of nothing acknowledged in the stall = %s, %d, %t; want 0, 0, true", took, backlog, ok)
	}
}

func TestWriteWindows(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	// 100/s for the first 10 s, then 200/s until 30 s.
	samples := []ackSample{{at(0), 0}, {at(4), 400}, {at(10), 1000}, {at(20), 3000}, {at(30), 5000}}
	if got := ackedAt(samples, at(2)); got != 200 {
		t.Errorf("ackedAt(2 s) = %v, want 200", got)
	}
	if got := ackedAt(samples, at(-1)); got != 0 {
		t.Errorf("ackedAt before the first sample = %v, want 0", got)
	}
	if got := ackedAt(samples, at(31)); got != 5000 {
		t.Errorf("ackedAt after the last sample = %v, want 5000", got)
	}
	ws, ratio := writeWindows(samples, t0, at(10), at(30), 5)
	want := []WriteWindow{
		{Name: "during the stall", FromS: 0, Seconds: 10, Transfers: 1000, PerSecond: 100},
		{Name: "after the stall", FromS: 10, Seconds: 20, Transfers: 4000, PerSecond: 200},
		{Name: "after the backlog was delivered", FromS: 15, Seconds: 15, Transfers: 3000, PerSecond: 200},
	}
	if len(ws) != len(want) || ratio != 0.5 {
		t.Fatalf("writeWindows = %+v, %v; want %+v, 0.5", ws, ratio, want)
	}
	for i := range want {
		if ws[i] != want[i] {
			t.Errorf("window %d = %+v, want %+v", i, ws[i], want[i])
		}
	}
	// A load that ended within the stall: no after, no ratio.
	ws, ratio = writeWindows(samples, t0, at(40), at(30), -1)
	if len(ws) != 1 || ws[0].Seconds != 30 || ratio != 0 {
		t.Errorf("writeWindows of a load within the stall = %+v, %v", ws, ratio)
	}
}

// clock is a settable clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.now = t }

// TestReceiver: a real HTTP receiver answers 503 in the stall's first half,
// holds the request in its second half until the sender gives up, then
// takes signed deliveries (signed by ledgerd's own signer), refuses a bad
// signature, and waitFor sees the last position.
func TestReceiver(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	clk := &clock{now: t0}
	r, err := newReceiver(10*time.Second, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	secret := strings.Repeat("ab", 32)
	r.setSecret(secret)
	key, _ := hex.DecodeString(secret)
	post := func(timeout time.Duration, position uint64, sign func(body []byte) string) (int, error) {
		id := fmt.Sprintf("l:%d:wh_1", position)
		body := fmt.Sprintf(`{"delivery_id":%q,"ledger":"l","position":%d}`, id, position)
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url, strings.NewReader(body))
		if err != nil {
			return 0, err
		}
		req.Header.Set(client.WebhookDeliveryIDHeader, id)
		req.Header.Set(client.WebhookSignatureHeader, sign([]byte(body)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	good := func(body []byte) string { return webhooks.Sign(key, time.Now(), body) }
	bad := func(body []byte) string { return webhooks.Sign([]byte("another secret"), time.Now(), body) }

	if code, err := post(5*time.Second, 1, good); err != nil || code != http.StatusNoContent {
		t.Fatalf("before the stall: %d, %v; want 204", code, err)
	}
	r.stallFrom(t0)
	clk.set(t0.Add(time.Second))
	if code, err := post(5*time.Second, 2, good); err != nil || code != http.StatusServiceUnavailable {
		t.Fatalf("in the stall's first half: %d, %v; want 503", code, err)
	}
	clk.set(t0.Add(6 * time.Second))
	if code, err := post(200*time.Millisecond, 2, good); err == nil {
		t.Fatalf("in the stall's second half: %d, want the request held past the sender's timeout", code)
	}
	clk.set(t0.Add(10 * time.Second))
	if code, err := post(5*time.Second, 2, bad); err != nil || code != http.StatusUnauthorized {
		t.Fatalf("a bad signature: %d, %v; want 401", code, err)
	}
	for _, p := range []uint64{2, 3} {
		if code, err := post(5*time.Second, p, good); err != nil || code != http.StatusNoContent {
			t.Fatalf("position %d after the stall: %d, %v; want 204", p, code, err)
		}
	}
	r.waitFor(context.Background(), 3, 5*time.Second, io.Discard)
	got := r.snapshot()
	if got.attempts != 6 || got.refused != 1 || got.hung != 1 || got.badSignatures != 1 || len(got.accepted) != 3 {
		t.Errorf("received %+v; want 6 attempts, 1 refused, 1 hung, 1 bad signature, 3 accepted", got)
	}
	if c := checkDeliveries("l", "wh_1", []uint64{1, 2, 3}, got.accepted); !c.OK() {
		t.Errorf("checkDeliveries = %+v", c)
	}
}
