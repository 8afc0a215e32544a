package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	ledgerv1 "github.com/ledgerd/ledger/api/ledger/v1"
	"github.com/ledgerd/ledger/client"
	"github.com/ledgerd/ledger/domain"
)

// Bounds of -webhook-stall's receiver and sampler.
const (
	// webhookBodyMax bounds a delivery's body read (ledgerd sends at most
	// 256 KiB).
	webhookBodyMax = 1 << 20
	// webhookDeliveriesMax bounds the 2xx answers kept; more fail the check.
	webhookDeliveriesMax = 10_000_000
	// webhookSignatureTolerance is how far a signature's time may be from
	// now, as docs/webhooks.md advises.
	webhookSignatureTolerance = 5 * time.Minute
	// ackSampleEvery is how often the acknowledged count is sampled while
	// the load runs; ackSamplesMax bounds the samples (three days of them).
	ackSampleEvery = 250 * time.Millisecond
	ackSamplesMax  = 1 << 20
	// webhookPollEvery is how often the wait for the deliveries looks.
	webhookPollEvery = 100 * time.Millisecond
	// webhookCallTimeout bounds creating and deleting the subscription.
	webhookCallTimeout = 30 * time.Second
)

// WebhookReport is -webhook-stall's outcome: what the receiver got, the
// check of its deliveries, and the write rate while it refused and after.
type WebhookReport struct {
	Subscription   string `json:"subscription"`
	AccountPattern string `json:"account_pattern,omitempty"`
	// FromPosition is the head when the subscription was made: it covers
	// what comes after.
	FromPosition uint64  `json:"from_position"`
	StallSeconds float64 `json:"stall_seconds"`
	// Attempts counts every request the receiver got; Refused those answered
	// 503 in the stall's first half, Hung those held in its second half
	// until the sender gave up (or the stall ended: then 503);
	// BadSignatures those whose signature or body did not verify (401);
	// Overflow the 2xx answers past webhookDeliveriesMax, not kept.
	Attempts      int64 `json:"attempts"`
	Refused       int64 `json:"refused"`
	Hung          int64 `json:"hung"`
	BadSignatures int64 `json:"bad_signatures"`
	Overflow      int64 `json:"overflow,omitempty"`
	// Late counts valid deliveries whose sender had given up (its attempt
	// timed out) before the receiver answered: retried, so not counted.
	Late int64 `json:"late,omitempty"`
	// AttemptedInStall says a request came before the stall's end: with a
	// delivery pipeline that lags more than the stall (a loaded box), none
	// does, and Refused and Hung are 0.
	AttemptedInStall bool `json:"attempted_in_stall"`

	Deliveries DeliveryCheck `json:"deliveries"`
	// Backlog counts the covered transfers acknowledged by the stall's end;
	// DrainSeconds is how long after the stall's end the last of them was
	// delivered (-1: never).
	Backlog      int     `json:"backlog"`
	DrainSeconds float64 `json:"drain_seconds"`
	// FirstDeliverySeconds is how long after the stall's end the first 2xx
	// came (-1: none): the dispatcher's back-off and circuit breaker wait
	// before it tries again.
	FirstDeliverySeconds float64 `json:"first_delivery_seconds"`
	// LastDeliverySeconds is how long after the end of the load the last
	// covered transfer was delivered (-1: never); WaitedSeconds how long
	// the bench waited for it.
	LastDeliverySeconds float64 `json:"last_delivery_seconds"`
	WaitedSeconds       float64 `json:"waited_seconds"`

	// Windows are the acknowledged write rates during the stall, after it,
	// and after the backlog was delivered; RatioStallToAfter is the first
	// over the second (1: the stall changed nothing).
	Windows           []WriteWindow `json:"windows"`
	RatioStallToAfter float64       `json:"ratio_stall_to_after,omitempty"`
}

// webhookRun is -webhook-stall: a receiver, its subscription, and the
// sampled count of acknowledged transfers.
type webhookRun struct {
	cfg   *Config
	hooks ledgerv1.WebhookServiceClient
	recv  *receiver
	sub   *ledgerv1.Subscription
	// acked counts the workers' CREATED transfers.
	acked atomic.Int64

	start, loadEnd time.Time
	stopSampling   func()
	// samples is written by the sampler until stopSampling returns.
	samples []ackSample
}

// startWebhook starts the receiver and subscribes it to the ledger from
// the head.
//
// Errors: the listener's; CreateSubscription's.
func startWebhook(ctx context.Context, cc *grpc.ClientConn, cfg *Config) (*webhookRun, error) {
	recv, err := newReceiver(cfg.WebhookStall, cfg.Now)
	if err != nil {
		return nil, err
	}
	h := &webhookRun{cfg: cfg, hooks: ledgerv1.NewWebhookServiceClient(cc), recv: recv}
	cctx, cancel := context.WithTimeout(ctx, webhookCallTimeout)
	resp, err := h.hooks.CreateSubscription(cctx, &ledgerv1.CreateSubscriptionRequest{Ledger: cfg.Ledger, Url: recv.url,
		AccountPattern: cfg.WebhookAccounts})
	cancel()
	if err != nil {
		recv.close()
		return nil, fmt.Errorf("webhook subscription: %w", err)
	}
	h.sub = resp.GetSubscription()
	recv.setSecret(resp.GetSecret())
	fmt.Fprintf(cfg.Progress, "webhooks: subscription %s to %s from position %d, account pattern %q; "+
		"refused for %s from the start of the load\n", h.sub.GetId(), recv.url, h.sub.GetDeliveredPosition(), cfg.WebhookAccounts, cfg.WebhookStall)
	return h, nil
}

// covers says whether the subscription covers a transfer between debit
// and credit, as ledgerd's filter does.
func (h *webhookRun) covers(debit, credit string) bool {
	p := h.cfg.WebhookAccounts
	return p == "" || domain.MatchAccountPattern(p, debit) || domain.MatchAccountPattern(p, credit)
}

// begin starts the stall and the sampling, at the start of the load.
func (h *webhookRun) begin() {
	h.start = h.cfg.Now()
	h.recv.stallFrom(h.start)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	h.samples = append(h.samples[:0], ackSample{At: h.start, Acked: h.acked.Load()})
	wg.Go(func() {
		t := time.NewTicker(ackSampleEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if len(h.samples) < ackSamplesMax-1 {
					h.samples = append(h.samples, ackSample{At: h.cfg.Now(), Acked: h.acked.Load()})
				}
			}
		}
	})
	h.stopSampling = func() { cancel(); wg.Wait() }
}

// end stops the sampling at the end of the load, with a last sample.
func (h *webhookRun) end() {
	h.stopSampling()
	h.loadEnd = h.cfg.Now()
	h.samples = append(h.samples, ackSample{At: h.loadEnd, Acked: h.acked.Load()})
}

// close deletes the subscription, so that ledgerd stops sending to a
// receiver that is gone, and stops the receiver.
func (h *webhookRun) close() {
	ctx, cancel := context.WithTimeout(context.Background(), webhookCallTimeout)
	defer cancel()
	if _, err := h.hooks.DeleteSubscription(ctx, &ledgerv1.DeleteSubscriptionRequest{Ledger: h.cfg.Ledger, Id: h.sub.GetId()}); err != nil {
		fmt.Fprintf(h.cfg.Progress, "webhooks: subscription %s not deleted: %v\n", h.sub.GetId(), err)
	}
	h.recv.close()
}

// verifyWebhook waits, bounded by -webhook-wait, until the receiver has the
// last covered transfer, then checks the deliveries and computes the write
// rates around the stall.
func (r *Report) verifyWebhook(ctx context.Context, h *webhookRun, workers []*worker) {
	from := h.sub.GetDeliveredPosition()
	var covered []coveredTransfer
	for _, w := range workers {
		for _, t := range w.covered {
			if t.Position > from {
				covered = append(covered, t)
			}
		}
	}
	slices.SortFunc(covered, func(a, b coveredTransfer) int { return cmpUint64(a.Position, b.Position) })
	expected := make([]uint64, len(covered))
	for i, t := range covered {
		expected[i] = t.Position
	}
	stallEnd := h.start.Add(h.cfg.WebhookStall)
	wr := &WebhookReport{Subscription: h.sub.GetId(), AccountPattern: h.cfg.WebhookAccounts, FromPosition: from,
		StallSeconds: h.cfg.WebhookStall.Seconds(), DrainSeconds: -1, FirstDeliverySeconds: -1, LastDeliverySeconds: -1}
	r.Webhook = wr

	waitStart := h.cfg.Now()
	if len(expected) > 0 {
		fmt.Fprintf(h.cfg.Progress, "webhooks: waiting up to %s for %d deliveries\n", h.cfg.WebhookWait, len(expected))
		h.recv.waitFor(ctx, expected[len(expected)-1], h.cfg.WebhookWait, h.cfg.Progress)
	}
	wr.WaitedSeconds = h.cfg.Now().Sub(waitStart).Seconds()
	got := h.recv.snapshot()
	wr.Attempts, wr.Refused, wr.Hung, wr.BadSignatures, wr.Overflow = got.attempts, got.refused, got.hung, got.badSignatures, got.overflow
	wr.Late = got.late
	wr.AttemptedInStall = !got.firstAttempt.IsZero() && got.firstAttempt.Before(stallEnd)
	wr.Deliveries = checkDeliveries(h.cfg.Ledger, h.sub.GetId(), expected, got.accepted)
	if took, backlog, ok := wr.Deliveries.drain(covered, stallEnd); ok {
		wr.Backlog, wr.DrainSeconds = backlog, took.Seconds()
	} else {
		wr.Backlog = backlog
	}
	for _, d := range got.accepted {
		if !d.At.Before(stallEnd) {
			wr.FirstDeliverySeconds = d.At.Sub(stallEnd).Seconds()
			break
		}
	}
	if n := len(expected); n > 0 {
		if at, ok := wr.Deliveries.firstAt[expected[n-1]]; ok {
			wr.LastDeliverySeconds = max(at.Sub(h.loadEnd), 0).Seconds()
		}
	}
	wr.Windows, wr.RatioStallToAfter = writeWindows(h.samples, h.start, stallEnd, h.loadEnd, wr.DrainSeconds)

	r.check("webhook load outlasted the stall", h.loadEnd.After(stallEnd),
		fmt.Sprintf("load %.1f s, stall %.1f s", h.loadEnd.Sub(h.start).Seconds(), wr.StallSeconds))
	r.check("webhook signatures verified", wr.BadSignatures == 0,
		fmt.Sprintf("%d of %d requests refused for their signature or body", wr.BadSignatures, wr.Attempts))
	d := wr.Deliveries
	detail := fmt.Sprintf("%d covered, %d delivered, %d 2xx answers; missing %d, unexpected %d, duplicates %d, out of order %d, bad ids %d; "+
		"%d retried right after a 2xx the sender missed",
		d.Expected, d.Delivered, d.Accepted, d.Missing, d.Unexpected, d.Duplicates, d.OutOfOrder, d.BadIDs, d.Redelivered)
	if got.serveErr != "" {
		detail += ", the receiver stopped: " + got.serveErr
	}
	if wr.Overflow > 0 {
		detail += fmt.Sprintf(", %d answers over the bound not kept", wr.Overflow)
	}
	if d.Expected == 0 {
		detail += ": the subscription covers no transfer of the load (see -webhook-accounts)"
	}
	r.check("webhook every event once, in order", d.OK() && wr.Overflow == 0 && got.serveErr == "", detail)
	drained := fmt.Sprintf("%d deliveries never all made (waited %.1f s)", wr.Backlog, wr.WaitedSeconds)
	if wr.DrainSeconds >= 0 {
		drained = fmt.Sprintf("%d deliveries of the stall delivered %.1f s after it ended", wr.Backlog, wr.DrainSeconds)
	}
	r.check("webhook backlog delivered", wr.DrainSeconds >= 0, drained)
}

// writeWindows is the acknowledged rate during the stall, after it, and
// after the backlog was delivered (drain seconds after the stall; < 0:
// never), and the ratio of the first two.
func writeWindows(samples []ackSample, start, stallEnd, loadEnd time.Time, drainSeconds float64) ([]WriteWindow, float64) {
	var ws []WriteWindow
	during, ok := window("during the stall", samples, start, start, minTime(stallEnd, loadEnd))
	if ok {
		ws = append(ws, during)
	}
	after, okAfter := window("after the stall", samples, start, stallEnd, loadEnd)
	if okAfter {
		ws = append(ws, after)
	}
	if drainSeconds >= 0 {
		drained := stallEnd.Add(time.Duration(drainSeconds * float64(time.Second)))
		if w, ok := window("after the backlog was delivered", samples, start, drained, loadEnd); ok {
			ws = append(ws, w)
		}
	}
	var ratio float64
	if ok && okAfter && after.PerSecond > 0 {
		ratio = during.PerSecond / after.PerSecond
	}
	return ws, ratio
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func cmpUint64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// receiver is the webhook endpoint of -webhook-stall, on loopback: for
// stall from stallFrom it answers 503 (first half) and then holds each
// request until its sender gives up (second half: a timeout rather than a
// refusal); then it verifies each delivery's signature with
// client.VerifyWebhook and answers 204, recording its ids and position.
type receiver struct {
	url   string
	srv   *http.Server
	stall time.Duration
	now   func() time.Time
	// done ends the held requests when the receiver closes.
	done chan struct{}

	mu     sync.Mutex
	secret string
	from   time.Time // zero: not stalling yet
	got    received
	// highest is the highest position answered 2xx.
	highest uint64
}

// received is what the receiver got.
type received struct {
	attempts, refused, hung, badSignatures, overflow, late int64
	accepted                                               []Delivery
	// firstAttempt is when the first request came (zero: none).
	firstAttempt time.Time
	// serveErr is why the receiver stopped serving early ("": it did not).
	serveErr string
}

// newReceiver listens on a free loopback port and serves.
//
// Errors: the listener's.
func newReceiver(stall time.Duration, now func() time.Time) (*receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("webhook receiver: %w", err)
	}
	r := &receiver{url: "http://" + ln.Addr().String() + "/hook", stall: stall, now: now, done: make(chan struct{})}
	r.srv = &http.Server{Handler: http.HandlerFunc(r.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := r.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			r.mu.Lock()
			r.got.serveErr = err.Error()
			r.mu.Unlock()
		}
	}()
	return r, nil
}

func (r *receiver) setSecret(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.secret = s
}

func (r *receiver) stallFrom(t time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.from = t
}

func (r *receiver) close() {
	close(r.done)
	r.srv.Close()
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, webhookBodyMax))
	now := r.now()
	r.mu.Lock()
	r.got.attempts++
	if r.got.firstAttempt.IsZero() {
		r.got.firstAttempt = now
	}
	secret, from := r.secret, r.from
	stalling := !from.IsZero() && now.Before(from.Add(r.stall))
	hold := stalling && !now.Before(from.Add(r.stall/2))
	switch {
	case hold:
		r.got.hung++
	case stalling:
		r.got.refused++
	}
	r.mu.Unlock()
	if hold {
		t := time.NewTimer(from.Add(r.stall).Sub(now))
		defer t.Stop()
		select {
		case <-req.Context().Done():
		case <-r.done:
		case <-t.C:
		}
	}
	if stalling {
		http.Error(w, "stalled by ledgerbench", http.StatusServiceUnavailable)
		return
	}
	if err == nil {
		err = client.VerifyWebhook(secret, req.Header.Get(client.WebhookSignatureHeader), body, webhookSignatureTolerance)
	}
	var b struct {
		DeliveryID string `json:"delivery_id"`
		Position   uint64 `json:"position"`
	}
	if err == nil {
		err = json.Unmarshal(body, &b)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.got.badSignatures++
		http.Error(w, "bad signature or body", http.StatusUnauthorized)
		return
	}
	if req.Context().Err() != nil {
		// The sender gave up (its attempt timed out) before the answer: it
		// will retry this delivery, rightly; not a 2xx it saw.
		r.got.late++
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if len(r.got.accepted) >= webhookDeliveriesMax {
		r.got.overflow++
	} else {
		r.got.accepted = append(r.got.accepted, Delivery{HeaderID: req.Header.Get(client.WebhookDeliveryIDHeader),
			BodyID: b.DeliveryID, Position: b.Position, At: r.now()})
	}
	r.highest = max(r.highest, b.Position)
	w.WriteHeader(http.StatusNoContent)
}

// waitFor waits until a delivery of position last was answered 2xx (the
// dispatcher goes in position order: nothing before it is still to come),
// for at most wait or until ctx ends, telling progress every progressEvery.
func (r *receiver) waitFor(ctx context.Context, last uint64, wait time.Duration, progress io.Writer) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	tick := time.NewTicker(webhookPollEvery)
	defer tick.Stop()
	lastTold := time.Now()
	for {
		r.mu.Lock()
		highest, n := r.highest, len(r.got.accepted)
		r.mu.Unlock()
		if highest >= last {
			return
		}
		if time.Since(lastTold) >= progressEvery {
			lastTold = time.Now()
			fmt.Fprintf(progress, "webhooks: %d deliveries, at position %d of %d\n", n, highest, last)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// snapshot copies what the receiver got so far.
func (r *receiver) snapshot() received {
	r.mu.Lock()
	defer r.mu.Unlock()
	got := r.got
	got.accepted = slices.Clone(r.got.accepted)
	return got
}
