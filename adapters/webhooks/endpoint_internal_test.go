package webhooks

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ledgerd/ledger/eventstore"
)

// TestBreaker: the circuit opens at the threshold-th consecutive failure,
// lets one probe through after the cool-down, reopens when it fails and
// closes when it succeeds.
func TestBreaker(t *testing.T) {
	t.Parallel()
	const cooldown = time.Minute
	ep := &endpoint{}
	now := time.Unix(1_700_000_000, 0)
	for i := range 3 {
		if probe, wait := ep.admit(now, cooldown); probe || wait != 0 {
			t.Fatalf("failure %d: admit %v %s, want a plain attempt", i, probe, wait)
		}
		ep.done(false, false, now, 3)
	}
	if s := ep.state(now, cooldown); s != CircuitOpen {
		t.Fatalf("after 3 failures: %s, want open", s)
	}
	if _, wait := ep.admit(now.Add(time.Second), cooldown); wait != cooldown-time.Second {
		t.Fatalf("open: wait %s, want %s", wait, cooldown-time.Second)
	}
	later := now.Add(cooldown)
	probe, wait := ep.admit(later, cooldown)
	if !probe || wait != 0 {
		t.Fatalf("after the cool-down: probe %v wait %s, want the probe", probe, wait)
	}
	if p, w := ep.admit(later, cooldown); p || w == 0 {
		t.Fatalf("a second request while probing: probe %v wait %s, want to wait", p, w)
	}
	ep.done(false, true, later, 3)
	if s := ep.state(later, cooldown); s != CircuitOpen {
		t.Fatalf("after a failed probe: %s, want open", s)
	}
	again := later.Add(cooldown)
	if probe, _ := ep.admit(again, cooldown); !probe {
		t.Fatal("no probe after the second cool-down")
	}
	ep.done(true, true, again, 3)
	if s := ep.state(again, cooldown); s != CircuitClosed {
		t.Fatalf("after a good probe: %s, want closed", s)
	}
}

// TestHostDownAndKey: what counts against a host's circuit (no answer, 5xx,
// 408, 429; not a 404 or 401, which one subscription's path or secret may
// earn while the host serves the others), and one endpoint per host however
// its URLs spell it.
func TestHostDownAndKey(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		a    attempt
		down bool
	}{
		{attempt{err: context.DeadlineExceeded}, true}, {attempt{code: 503}, true}, {attempt{code: 500}, true},
		{attempt{code: 408}, true}, {attempt{code: 429}, true},
		{attempt{code: 404}, false}, {attempt{code: 401}, false}, {attempt{code: 410}, false}, {attempt{code: 302}, false},
		{attempt{code: 204}, false},
	} {
		if got := c.a.hostDown(); got != c.down {
			t.Errorf("%+v: host down %v, want %v", c.a, got, c.down)
		}
	}
	for _, c := range [][2]string{
		{"https://Example.com/a", "example.com:443"}, {"https://example.com:443/b", "example.com:443"},
		{"http://example.com/c", "example.com:80"}, {"http://example.com:8080/d", "example.com:8080"},
		{"https://[::1]:9000/e", "[::1]:9000"},
	} {
		if got := hostOf(c[0]); got != c[1] {
			t.Errorf("hostOf(%s) = %s, want %s", c[0], got, c[1])
		}
	}
}

// TestBackoff: full jitter between the minimum and the capped exponential.
func TestBackoff(t *testing.T) {
	t.Parallel()
	lo, hi := time.Second, 5*time.Minute
	for _, c := range []struct {
		n      int
		ceilng time.Duration
	}{{1, lo}, {2, 2 * lo}, {5, 16 * lo}, {9, 256 * lo}, {10, hi}, {100, hi}} {
		for range 100 {
			if d := backoff(c.n, lo, hi); d < lo || d > c.ceilng {
				t.Fatalf("attempt %d: %s, want %s..%s", c.n, d, lo, c.ceilng)
			}
		}
	}
	// A minimum over 4 s: lo<<31 overflowed, and the 32nd attempt on
	// waited the minimum, not up to the maximum.
	lo, hi = 5*time.Second, time.Hour
	var longest time.Duration
	for range 100 {
		longest = max(longest, backoff(32, lo, hi))
	}
	if longest < hi/2 {
		t.Fatalf("attempt 32 with a minimum of %s: at most %s in 100 draws, want up to %s", lo, longest, hi)
	}
}

// TestWants: event types compare as strings (an "Alert" this build does
// not decode is delivered like any other), and the pattern matches the
// accounts an event touches, or an unknown event's "accounts".
func TestWants(t *testing.T) {
	t.Parallel()
	transfer := &eventstore.Record{Type: "TransferCommitted", SchemaVersion: 1,
		Payload: []byte(`{"id":"t1","postings":[{"debit":"users:1:wallet","credit":"fees","asset":"USD","amount":"1.00"}],"effective_at":"2026-01-01T00:00:00Z"}`)}
	opened := &eventstore.Record{Type: "AccountOpened", SchemaVersion: 1, Payload: []byte(`{"id":"users:2:wallet","asset":"USD","normal_balance":"credit"}`)}
	alert := &eventstore.Record{Type: "Alert", SchemaVersion: 1, Payload: []byte(`{"rule":"r1","accounts":["users:3:wallet"]}`)}
	for _, c := range []struct {
		name string
		sub  Subscription
		rec  *eventstore.Record
		want bool
	}{
		{"all", Subscription{}, transfer, true},
		{"type", Subscription{EventTypes: []string{"TransferCommitted"}}, transfer, true},
		{"other type", Subscription{EventTypes: []string{"AccountOpened"}}, transfer, false},
		{"alert by type", Subscription{EventTypes: []string{"Alert"}}, alert, true},
		{"pattern, debit side", Subscription{AccountPattern: "users:*:wallet"}, transfer, true},
		{"pattern, credit side", Subscription{AccountPattern: "fees"}, transfer, true},
		{"pattern, no account", Subscription{AccountPattern: "users:*:savings"}, transfer, false},
		{"pattern, account event", Subscription{AccountPattern: "users:2:*"}, opened, true},
		{"pattern, alert's accounts", Subscription{AccountPattern: "users:3:*"}, alert, true},
		{"pattern, alert elsewhere", Subscription{AccountPattern: "users:4:*"}, alert, false},
	} {
		if got := wants(&c.sub, c.rec); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// TestPostBoundsResponseHeaders: a response whose headers pass
// responseHeaderMax is a failed attempt, read no further (Go's default
// read up to 10 MB of them); one under it is answered as usual.
func TestPostBoundsResponseHeaders(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name   string
		header int
		ok     bool
	}{
		{"well under the bound", 8 << 10, true},
		{"just over the bound", responseHeaderMax, false},
		{"9 MB", 9 << 20, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			value := strings.Repeat("x", c.header)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-Big", value)
				w.WriteHeader(http.StatusNoContent)
			}))
			defer srv.Close()
			a := post(context.Background(), newHTTPClient(AttemptTimeoutDefault), srv.URL, "l:1:wh", "t=1,v1=00", []byte("{}"))
			if c.ok && (!a.ok() || a.code != http.StatusNoContent) {
				t.Fatalf("%d bytes of headers: code %d, err %v; want 204", c.header, a.code, a.err)
			}
			if !c.ok && (a.ok() || a.err == nil || a.code != 0) {
				t.Fatalf("%d bytes of headers: code %d, err %v; want a failed attempt, no response", c.header, a.code, a.err)
			}
		})
	}
}

// An endpoint's rate holds whatever its slots did before: at 10 requests
// a second, no more than about 10 start in any second. pace used to book a
// start before it waited for a slot, and not again once it had one: the
// requests queued behind a slow one (every subscription to the host: up
// to 100 a ledger) all started at once when it ended, a burst right when
// the host came back.
func TestEndpointRateHoldsAfterSlotsWereBusy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := &endpoints{opts: Options{EndpointConcurrency: 1, EndpointRate: 10}, m: map[string]*endpoint{}}
	ep := e.acquire("example.com:443")
	slow, err := ep.pace(ctx) // a request that takes its time
	if err != nil {
		t.Fatal(err)
	}
	const waiting = 20
	var mu sync.Mutex
	var starts []time.Time
	var wg sync.WaitGroup
	for range waiting {
		wg.Add(1)
		go func() {
			defer wg.Done()
			release, err := ep.pace(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			starts = append(starts, time.Now())
			mu.Unlock()
			release() // a quick answer
		}()
	}
	time.Sleep(2500 * time.Millisecond) // the slow request, longer than the waiters' reservations
	ended := time.Now()
	slow()
	wg.Wait()
	n := 0
	for _, s := range starts {
		if s.Sub(ended) < 500*time.Millisecond {
			n++
		}
	}
	// At 10 a second: about 5 in half a second (6 with rounding).
	if n > 6 {
		t.Fatalf("%d of %d requests started within 500 ms of the slot's release, at a rate of 10 a second: want at most 6",
			n, waiting)
	}
}

// A request whose context ends while it waits for the endpoint's rate
// gives its slot back: none is lost to a cancelled wait.
func TestPaceCancelledGivesItsSlotBack(t *testing.T) {
	t.Parallel()
	e := &endpoints{opts: Options{EndpointConcurrency: 1, EndpointRate: 1}, m: map[string]*endpoint{}}
	ep := e.acquire("example.com:443")
	first, err := ep.pace(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	first() // the next start is a second on
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if release, err := ep.pace(ctx); err == nil {
		release()
		t.Fatal("a request started within 50 ms of the last, at a rate of 1 a second")
	}
	if n := len(ep.slots); n != 0 {
		t.Fatalf("after the cancelled wait: %d slots held, want 0", n)
	}
}

// An endpoint's limits and circuit are the host's for as long as a
// subscription to it runs: the endpoint a running subscription's worker
// holds stays the one later requests to the host are counted against,
// whatever other hosts came and went; a host no worker holds any more is
// dropped, so the table holds no more hosts than there are workers. The
// table used to be cleared whole once 10,000 hosts had been seen, the
// hosts in use included: a second set of slots let more than the
// concurrency limit in flight, and an open circuit closed, its host
// hammered again.
func TestEndpointsKeepAHostInUse(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	const busy = "busy.example.com:443"
	e := &endpoints{opts: Options{EndpointConcurrency: 1, EndpointRate: 1000}, m: map[string]*endpoint{}}
	ep := e.acquire(busy)
	held, err := ep.pace(ctx) // one request in flight: the limit
	if err != nil {
		t.Fatal(err)
	}
	defer held()
	for range 10 {
		ep.done(false, false, time.Now(), 5)
	}
	for i := range 20_000 { // subscriptions to other hosts, created and deleted over the process's life
		host := fmt.Sprintf("h%d.example.com:443", i)
		e.acquire(host)
		e.release(host)
	}
	if n := len(e.m); n != 1 {
		t.Errorf("hosts kept, one held: %d, want 1", n)
	}
	again := e.acquire(busy) // another subscription to the host
	if s := again.state(time.Now(), time.Minute); s != CircuitOpen {
		t.Errorf("the host's circuit, open before: %s", s)
	}
	short, cancelShort := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancelShort()
	if release, err := again.pace(short); err == nil {
		release()
		t.Fatal("a second request to the host went in flight beside the one holding its only slot")
	}
	e.release(busy)
	e.release(busy)
	if n := len(e.m); n != 0 {
		t.Errorf("hosts kept, none held: %d, want 0", n)
	}
}
