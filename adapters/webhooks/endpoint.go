package webhooks

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Headers of a delivery.
const (
	// HeaderDeliveryID carries DeliveryID: what a receiver dedupes on.
	HeaderDeliveryID = "Ledger-Delivery-Id"
	// HeaderSignature carries "t=<unix seconds>,v1=<hex HMAC-SHA256(secret,
	// t + "." + body)>".
	HeaderSignature = "Ledger-Signature"
)

// Sign returns the signature header's value for body, signed at t.
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(ts))
	mac.Write([]byte("."))
	mac.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

// Circuit states.
const (
	CircuitClosed   = "closed"
	CircuitOpen     = "open"
	CircuitHalfOpen = "half-open"
)

// endpoint is one host's shared state: its circuit breaker, and the
// concurrency and rate limits of the requests sent to it, whatever
// subscription sends them.
type endpoint struct {
	// slots bounds the requests in flight to the host.
	slots chan struct{}
	// interval is the least time between two requests' starts (the rate).
	interval time.Duration
	// users counts the workers holding the endpoint (endpoints.mu).
	users int

	mu sync.Mutex
	// nextStart is when the next request may start.
	nextStart time.Time
	// failures counts consecutive failures; openedAt is when the circuit
	// opened (zero: closed); probing is set while the half-open probe runs.
	failures int
	openedAt time.Time
	probing  bool
}

// endpoints holds the endpoints of the hosts running subscriptions use, by
// host: at most one a worker (Options.SubscriptionsMax bounds them). A
// host's state lives as long as a worker holds it: a host in use dropped
// and made again would have a second set of slots (more than the
// concurrency in flight) and its open circuit closed. The state of a host
// no worker holds is dropped (a later one starts closed, as after a
// restart).
type endpoints struct {
	opts Options
	mu   sync.Mutex
	m    map[string]*endpoint
}

// acquire returns host's endpoint, held until a release of host.
func (e *endpoints) acquire(host string) *endpoint {
	e.mu.Lock()
	defer e.mu.Unlock()
	ep, ok := e.m[host]
	if !ok {
		ep = &endpoint{slots: make(chan struct{}, e.opts.EndpointConcurrency),
			interval: time.Second / time.Duration(e.opts.EndpointRate)}
		e.m[host] = ep
	}
	ep.users++
	return ep
}

// release lets go of host's endpoint, acquired before; the last release
// drops it.
func (e *endpoints) release(host string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	ep, ok := e.m[host]
	if !ok || ep.users <= 0 {
		panic("webhooks: release of an endpoint not acquired: " + host)
	}
	ep.users--
	if ep.users == 0 {
		delete(e.m, host)
	}
}

// hostOf is the circuit's key of a URL: its host, in lower case, and its
// port, the scheme's when the URL gives none, so that one host is one
// endpoint however its subscriptions spell it (Example.com,
// example.com:443).
func hostOf(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return u
	}
	port := p.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[strings.ToLower(p.Scheme)]
	}
	return net.JoinHostPort(strings.ToLower(p.Hostname()), port)
}

// state says the circuit's state at now.
func (ep *endpoint) state(now time.Time, cooldown time.Duration) string {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	switch {
	case ep.openedAt.IsZero():
		return CircuitClosed
	case ep.probing || now.Sub(ep.openedAt) >= cooldown:
		return CircuitHalfOpen
	}
	return CircuitOpen
}

// admit says whether a request may go now: the circuit is closed, or its
// cool-down is over and no other probe runs (this request is the probe).
// When it may not, it returns how long to wait before asking again.
func (ep *endpoint) admit(now time.Time, cooldown time.Duration) (probe bool, wait time.Duration) {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if ep.openedAt.IsZero() {
		return false, 0
	}
	if left := cooldown - now.Sub(ep.openedAt); left > 0 {
		return false, left
	}
	if ep.probing {
		return false, cooldown / 4
	}
	ep.probing = true
	return true, 0
}

// done records a request's outcome for the host: one that answered (up)
// closes the circuit, the threshold-th consecutive one that did not (or a
// failed probe) opens it.
func (ep *endpoint) done(up, probe bool, now time.Time, threshold int) {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if probe {
		ep.probing = false
	}
	if up {
		ep.failures, ep.openedAt = 0, time.Time{}
		return
	}
	ep.failures++
	if probe || ep.failures >= threshold {
		ep.openedAt = now
	}
}

// abandon forgets an attempt cut short by its dispatcher's end.
func (ep *endpoint) abandon(probe bool) {
	if probe {
		ep.mu.Lock()
		ep.probing = false
		ep.mu.Unlock()
	}
}

// pace waits for a slot and then for the endpoint's rate; release gives
// the slot back. The start is booked once the slot is held: booked before,
// by every request queued behind busy slots, those starts would all have
// passed when a slot frees, and the queue would go at once, whatever the
// rate.
//
// Errors: ctx's (no slot held).
func (ep *endpoint) pace(ctx context.Context) (release func(), err error) {
	select {
	case ep.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	release = func() { <-ep.slots }
	if wait := ep.book(time.Now()); wait > 0 {
		if err := sleep(ctx, wait); err != nil {
			release()
			return nil, err
		}
	}
	return release, nil
}

// book takes the next start the rate allows from now, and says how long
// until it.
func (ep *endpoint) book(now time.Time) time.Duration {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	start := now
	if ep.nextStart.After(now) {
		start = ep.nextStart
	}
	ep.nextStart = start.Add(ep.interval)
	return start.Sub(now)
}

// attempt is one POST's outcome.
type attempt struct {
	code    int
	latency time.Duration
	err     error
}

func (a attempt) ok() bool { return a.err == nil && a.code >= 200 && a.code < 300 }

// hostDown says whether a failed attempt counts against its host's circuit:
// no answer (connection, TLS, timeout), a 5xx, 408 or 429. Another answer
// (a 404 for one subscription's path, a 401 for its secret) fails that
// delivery, which retries on its own back-off, but shows the host up: it
// must not open the circuit of every subscription to the host.
func (a attempt) hostDown() bool {
	return a.err != nil || a.code >= 500 || a.code == http.StatusRequestTimeout || a.code == http.StatusTooManyRequests
}

// errorText says what went wrong, for the delivery log.
func (a attempt) errorText() string {
	switch {
	case a.err != nil:
		return storableError(a.err.Error())
	case !a.ok():
		return "HTTP " + strconv.Itoa(a.code)
	}
	return ""
}

// newHTTPClient is the delivering client: bounded connect, TLS, header and
// total times, and headers' size; no redirects (a 3xx is a failure: a
// subscription names its endpoint); no cookies.
func newHTTPClient(total time.Duration) *http.Client {
	dialer := &net.Dialer{Timeout: min(total, connectTimeout), KeepAlive: 30 * time.Second}
	return &http.Client{
		Timeout: total,
		Transport: &http.Transport{
			DialContext:            dialer.DialContext,
			TLSHandshakeTimeout:    min(total, connectTimeout),
			ResponseHeaderTimeout:  total,
			MaxResponseHeaderBytes: responseHeaderMax,
			MaxIdleConnsPerHost:    8,
			IdleConnTimeout:        90 * time.Second,
			ForceAttemptHTTP2:      true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// connectTimeout bounds a connection's set-up (TCP, and TLS).
const connectTimeout = 5 * time.Second

// responseHeaderMax bounds a response's status line and headers. Only the
// status code is used; Go's default of 10 MB would let every endpoint hold
// that much of ledgerd's memory for each attempt in flight. 16 KiB is
// room for what proxies and frameworks add; a response with more is a
// failed attempt.
const responseHeaderMax = 16 << 10

// responseReadMax bounds what is read of a response body (to reuse the
// connection); the rest is dropped with the connection.
const responseReadMax = 64 << 10

// post sends body to url once.
func post(ctx context.Context, client *http.Client, url, deliveryID, signature string, body []byte) attempt {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(string(body)))
	if err != nil {
		return attempt{err: fmt.Errorf("request: %w", err)}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "ledgerd-webhooks/1")
	req.Header.Set(HeaderDeliveryID, deliveryID)
	req.Header.Set(HeaderSignature, signature)
	began := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return attempt{latency: time.Since(began), err: err}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, responseReadMax))
	_ = resp.Body.Close()
	return attempt{code: resp.StatusCode, latency: time.Since(began)}
}
