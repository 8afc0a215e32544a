package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ledgerd/ledger/domain"
	"github.com/ledgerd/ledger/eventstore"
)

// Body is a delivery's JSON body. Event is the event's payload as in the
// log (its canonical JSON).
type Body struct {
	DeliveryID string          `json:"delivery_id"`
	Ledger     string          `json:"ledger"`
	Position   uint64          `json:"position"`
	Type       string          `json:"type"`
	RecordedAt time.Time       `json:"recorded_at"`
	Event      json.RawMessage `json:"event"`
}

// wants says whether the subscription delivers rec: its type is one of
// the subscription's (or it names none), and an account it touches matches
// the pattern (or there is none). Types are compared as strings, so a type
// this build does not know is delivered like any other.
func wants(s *Subscription, rec *eventstore.Record) bool {
	if len(s.EventTypes) > 0 && !slices.Contains(s.EventTypes, rec.Type) {
		return false
	}
	if s.AccountPattern == "" {
		return true
	}
	return slices.ContainsFunc(accountsOf(rec), func(id string) bool { return domain.MatchAccountPattern(s.AccountPattern, id) })
}

// accountsOf lists the accounts rec touches: those its postings move, or
// the account an account event is about. An event type this build does not
// decode is read for top-level "account" and "accounts" fields.
func accountsOf(rec *eventstore.Record) []string {
	e, err := domain.UnmarshalEvent(rec.Type, rec.SchemaVersion, rec.Payload)
	if err != nil {
		var generic struct {
			Account  string   `json:"account"`
			Accounts []string `json:"accounts"`
		}
		if json.Unmarshal(rec.Payload, &generic) != nil {
			return nil
		}
		if generic.Account != "" {
			generic.Accounts = append(generic.Accounts, generic.Account)
		}
		return generic.Accounts
	}
	switch e := e.(type) {
	case domain.AccountOpened:
		return []string{e.ID}
	case domain.AccountBoundsChanged:
		return []string{e.ID}
	case domain.AccountMetadataSet:
		return []string{e.ID}
	case domain.AccountClosed:
		return []string{e.ID}
	case domain.AccountFrozen:
		return []string{e.ID}
	case domain.AccountUnfrozen:
		return []string{e.ID}
	case domain.StatementImported:
		return []string{e.Account}
	case domain.MatchingRulesSet:
		return []string{e.Account}
	case domain.MatchedManually:
		return []string{e.Account}
	case domain.Unmatched:
		return []string{e.Account}
	case domain.AlertRaised:
		return []string{e.Account} // the account the alert is about
	}
	var ids []string
	for _, m := range domain.Movements(e) {
		ids = append(ids, m.Account)
	}
	return ids
}

// encodeBody is rec's delivery body for subscription id.
func encodeBody(rec *eventstore.Record, id string) ([]byte, error) {
	return json.Marshal(Body{DeliveryID: DeliveryID(rec.Ledger, rec.Position, id), Ledger: rec.Ledger,
		Position: rec.Position, Type: rec.Type, RecordedAt: rec.RecordedAt, Event: rec.Payload})
}

// backoff is the delay after the n-th failed attempt (n ≥ 1): a random
// duration up to min(max, min·2^(n-1)), never under min ("full jitter":
// endpoints failing together are not all retried in step).
func backoff(n int, lo, hi time.Duration) time.Duration {
	// Doubled until it reaches hi, not shifted: lo<<(n-1) overflows for a
	// lo over 4 s by the 32nd attempt, and the delay fell back to lo.
	ceiling := lo
	for i := 1; i < n && ceiling < hi; i++ {
		ceiling *= 2
	}
	ceiling = min(ceiling, hi)
	if ceiling <= lo {
		return lo
	}
	return lo + rand.N(ceiling-lo)
}

// deliver delivers rec until a 2xx answers or it is given up (dead), each
// attempt in the delivery log. A delivery resumed finished (resumed) is
// done: the caller moves the cursor past it. It returns only ctx's error,
// errMoved (a replay or a deletion seen between attempts: the replay takes
// over at once instead of after this delivery, up to its maximum age) or
// the database's: an endpoint's failures are the delivery's state, not
// errors.
func (w *worker) deliver(ctx context.Context, c *claimed, rec *eventstore.Record) error {
	opts := &w.d.opts
	d := Delivery{SubscriptionID: c.ID, Ledger: c.Ledger, Position: rec.Position, EventType: rec.Type, Status: StatusPending}
	if w.resume {
		w.resume = false
		finished, err := w.d.store.resumed(ctx, &d, c.generation)
		if err != nil || finished {
			return err
		}
	}
	body, err := encodeBody(rec, c.ID)
	if err != nil {
		return fmt.Errorf("delivery %s: %w", d.ID(), err)
	}
	if len(body) > opts.PayloadMax {
		now := time.Now()
		d.Status, d.FirstAttemptAt, d.LastAttemptAt, d.NextAttemptAt = StatusDead, now, now, time.Time{}
		d.Error = fmt.Sprintf("payload of %d bytes is over the limit of %d", len(body), opts.PayloadMax)
		return w.d.store.record(ctx, &d, c.generation)
	}
	ep := w.ep // held since serve loaded the subscription
	// tried says this call made an attempt: a delivery resumed past its
	// maximum age (ledgerd was down longer than it) gets one more before
	// it is a dead letter, rather than none.
	tried := false
	for {
		now := time.Now()
		if tried && now.Sub(d.FirstAttemptAt) >= opts.MaxAge {
			return w.giveUp(ctx, c, &d)
		}
		probe, wait := ep.admit(now, opts.BreakerCooldown)
		if wait > 0 {
			w.setState(ctx, CircuitOpen, w.fault)
			if tried {
				wait = min(wait, d.FirstAttemptAt.Add(opts.MaxAge).Sub(now))
			}
			if err := w.pause(ctx, c, max(wait, time.Millisecond)); err != nil {
				return err
			}
			continue
		}
		if probe {
			w.setState(ctx, CircuitHalfOpen, w.fault)
		}
		a, err := w.attempt(ctx, ep, c, &d, body)
		if err != nil {
			ep.abandon(probe)
			return err
		}
		tried = true
		ep.done(!a.hostDown(), probe, time.Now(), opts.BreakerFailures)
		w.setState(ctx, ep.state(time.Now(), opts.BreakerCooldown), w.fault)
		if d.FirstAttemptAt.IsZero() {
			d.FirstAttemptAt = now
		}
		d.Attempts++
		d.ResponseCode, d.LatencyMS, d.Error, d.LastAttemptAt = a.code, int(a.latency.Milliseconds()), a.errorText(), now
		if a.ok() {
			d.Status, d.NextAttemptAt = StatusDelivered, time.Time{}
			return w.d.store.record(ctx, &d, c.generation)
		}
		delay := backoff(d.Attempts, opts.BackoffMin, opts.BackoffMax)
		d.NextAttemptAt = time.Now().Add(delay)
		if d.NextAttemptAt.Sub(d.FirstAttemptAt) >= opts.MaxAge {
			return w.giveUp(ctx, c, &d)
		}
		if err := w.d.store.record(ctx, &d, c.generation); err != nil {
			return err
		}
		if err := w.pause(ctx, c, delay); err != nil {
			return err
		}
	}
}

// pause waits d between two attempts, looking every Poll for a replay or a
// deletion of the subscription, as a worker waiting for events does. The
// worker's source is closed first, and the records in hand copied out of
// its frames: while the endpoint fails, what the source read ahead (up to
// 64 frames, each of up to 8,192 events) would be held for nothing, by
// every subscription whose endpoint is down. The next read starts the
// source again at the cursor.
//
// Errors: errMoved; ctx's; a database error.
func (w *worker) pause(ctx context.Context, c *claimed, d time.Duration) error {
	if w.src != nil {
		w.src.Close()
	}
	if w.batch != nil && !w.detached {
		w.batch, w.detached = detach(w.batch), true
	}
	for d > 0 {
		step := min(d, w.d.opts.Poll)
		if err := sleep(ctx, step); err != nil {
			return err
		}
		if err := w.d.store.current(ctx, c, w.d.opts.Owner); err != nil {
			return err
		}
		d -= step
	}
	return nil
}

// attempt makes one POST within the endpoint's limits.
//
// Errors: ctx's, when it ended (the attempt is not counted).
func (w *worker) attempt(ctx context.Context, ep *endpoint, c *claimed, d *Delivery, body []byte) (attempt, error) {
	release, err := ep.pace(ctx)
	if err != nil {
		return attempt{}, err
	}
	defer release()
	a := post(ctx, w.d.client, c.URL, d.ID(), Sign(c.secret, time.Now(), body), body)
	if ctx.Err() != nil {
		return a, ctx.Err()
	}
	return a, nil
}

// giveUp makes d a dead letter: the subscription goes on with the next
// event; a replay delivers it again.
func (w *worker) giveUp(ctx context.Context, c *claimed, d *Delivery) error {
	d.Status, d.NextAttemptAt = StatusDead, time.Time{}
	w.logger.Warn("webhook delivery given up after its maximum age: a dead letter", "delivery", d.ID(),
		"attempts", d.Attempts, "err", d.Error)
	return w.d.store.record(ctx, d, c.generation)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// resumed reads d's row, if any, when a dispatcher (re)starts at d: a
// pending one's attempts fill d, whose maximum age counts from the first
// attempt, whoever made it. finished says the row is delivered or dead
// under the subscription's generation: its dispatcher stopped between
// recording the outcome and moving the cursor past it (record and advance
// are statements of their own; a replay in between fails the advance),
// and delivering it again from scratch would hold a dead letter up for
// another maximum age. A finished row of an older generation is one a
// replay from a position moved the cursor back over: delivered again.
//
// Errors: a database error, wrapped.
func (s *Store) resumed(ctx context.Context, d *Delivery, generation int64) (finished bool, err error) {
	var status Status
	var attempts int
	var first *time.Time
	var written int64
	err = s.pool.QueryRow(ctx, `SELECT status, attempts, first_attempt_at, generation FROM webhook_deliveries
		WHERE subscription_id = $1 AND position = $2`, d.SubscriptionID, int64(d.Position)).
		Scan(&status, &attempts, &first, &written)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("delivery %s: %w", d.ID(), err)
	}
	if status != StatusPending {
		return written == generation, nil
	}
	d.Attempts = attempts
	if first != nil {
		d.FirstAttemptAt = *first
	}
	return false, nil
}

// inLog says whether the log holds the event at pos with hash.
//
// Errors: a database error, wrapped.
func (s *Store) inLog(ctx context.Context, ledger string, pos uint64, hash eventstore.Hash) (bool, error) {
	var ok bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM events WHERE ledger = $1 AND position = $2 AND hash = $3)`,
		ledger, int64(pos), hash[:]).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("event %d of %s in the log: %w", pos, ledger, err)
	}
	return ok, nil
}
